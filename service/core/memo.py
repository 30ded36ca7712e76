"""Memoizing decorators whose memory is bounded when the keys are user text.

`functools.lru_cache(maxsize=N)` bounds the number of entries, not their size: keyed by whole
sentences of hostile articles, 100,000 entries held gigabytes (issue 19). Two bounded shapes:

- `short_key_cache`: lru_cache (C speed) for keys up to `max_key_chars`; longer keys are computed
  every time and never stored (for per-word functions: no real word is that long);
- `sized_cache`: an LRU cache bounded by the summed `size` of its values (cachetools), for values
  that grow with their key, such as a sentence's analysis.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import cachetools

__all__ = ["short_key_cache", "sized_cache"]

R = TypeVar("R")


def short_key_cache(*, maxsize: int, max_key_chars: int) -> Callable[[Callable[[str], R]], Callable[[str], R]]:
    """lru_cache(maxsize) for string keys of at most `max_key_chars`; longer keys bypass the cache."""

    def decorate(func: Callable[[str], R]) -> Callable[[str], R]:
        cached = functools.lru_cache(maxsize=maxsize)(func)

        @functools.wraps(func)
        def wrapper(key: str) -> R:
            return cached(key) if len(key) <= max_key_chars else func(key)

        wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return wrapper

    return decorate


def sized_cache(*, max_size: int, size: Callable[[Any], int]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """An LRU cache holding values whose `size` sums to at most `max_size`; a bigger value is not kept."""

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        cache: cachetools.LRUCache[Any, R] = cachetools.LRUCache(maxsize=max_size, getsizeof=size)
        return cachetools.cached(cache, lock=threading.Lock())(func)  # the wrapper's .cache is `cache`

    return decorate
