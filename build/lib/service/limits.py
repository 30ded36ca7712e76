"""Caps that keep the process bounded: in-flight /v1 requests, in-flight model calls, article tokens.

Past a cap the caller is told at once (503 with Retry-After, or 413); nothing waits in a queue that
can grow without bound. Model calls beyond the cap wait for a slot, but only inside the request's
deadline (summarize_request's asyncio.timeout), so that wait is bounded too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

from service.chunking import estimate_tokens
from service.config import Settings
from service.errors import ArticleTooLong, Overloaded
from service.middleware import send_problem

__all__ = ["InflightLimitMiddleware", "check_article_tokens", "llm_call_slot"]

OVERLOADED_RETRY_AFTER_S = 1


class InflightLimitMiddleware:
    """Answers 503 `overloaded` at once when `max_inflight` requests under `prefix` are already running."""

    def __init__(self, app: ASGIApp, max_inflight: int, prefix: str = "/v1/") -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.prefix = prefix
        self.inflight = 0  # one event loop per app: a plain counter is race-free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            error = Overloaded(
                f"{self.inflight} requests are already in progress (CITESUM_MAX_INFLIGHT_REQUESTS="
                f"{self.max_inflight}); retry after {OVERLOADED_RETRY_AFTER_S} s"
            )
            await send_problem(
                scope, send, error.status, error.title, error.message, slug=error.type_slug,
                headers={"Retry-After": str(OVERLOADED_RETRY_AFTER_S)},
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


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
