"""CPU-bound work off the event loop: a worker thread for long texts, inline for short ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["INLINE_MAX_CHARS", "run_cpu_bound"]

T = TypeVar("T")

# Text up to this size is cleaned, segmented and checked in a few milliseconds: on the event loop,
# that costs less than a worker-thread hop (two context switches, more on a busy machine).
INLINE_MAX_CHARS = 20_000


async def run_cpu_bound(chars: int, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a worker thread, so the event loop keeps answering (acks, health checks);
    inline when the text it works on has at most INLINE_MAX_CHARS `chars`, where the hop costs more."""
    if chars <= INLINE_MAX_CHARS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
