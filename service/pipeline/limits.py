"""Caps that keep the pipeline bounded: in-flight model calls and article tokens.

Past a cap the caller is told at once (503 with Retry-After, or 413); nothing waits in a queue that
can grow without bound. Model calls beyond the cap wait for a slot, but only inside the request's
deadline (summarize_request's asyncio.timeout), so that wait is bounded too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.core.config import Settings
from service.core.errors import ArticleTooLong
from service.pipeline.chunking import estimate_tokens

__all__ = ["check_article_tokens", "llm_call_slot"]

# One semaphore per event loop: asyncio primitives belong to the loop they first wait on, and
# tests (and the CLI) run several loops in one process over its life.
_LLM_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def llm_call_slot(settings: Settings) -> AsyncIterator[None]:
    """Hold one of the process's CITESUM_MAX_INFLIGHT_LLM_CALLS slots for one call to the model."""
    loop = asyncio.get_running_loop()
    slots = _LLM_SLOTS.get(loop)
    if slots is None:
        slots = _LLM_SLOTS[loop] = asyncio.Semaphore(settings.max_inflight_llm_calls)
    async with slots:
        yield


def check_article_tokens(text: str, settings: Settings) -> None:
    """Raise ArticleTooLong (413) when the article's estimated tokens exceed CITESUM_MAX_ARTICLE_TOKENS."""
    tokens = estimate_tokens(text)
    if tokens > settings.max_article_tokens:
        raise ArticleTooLong(
            f"the article is about {tokens:,} tokens; the limit is {settings.max_article_tokens:,}"
            " (CITESUM_MAX_ARTICLE_TOKENS)",
            tokens=tokens,
            limit=settings.max_article_tokens,
        )
