"""POST /v1/summaries as Server-Sent Events (`Accept: text/event-stream`): sentences as they are verified.

Events, each `data` one JSON object:

- `progress`  {"done": chunks summarized, "total": chunks}
- `sentence`  a summary sentence (text, citations, verdict, score, ...), sent once it is verified
              (or flagged, under the flag policy)
- `dropped`   a sentence the verifier refused (text, cited_ids, score, reason)
- `done`      the full JSON response, as the plain endpoint returns it (usage and timings included)
- `error`     a problem+json object; it ends the stream. Sentences sent before it stand.

After `CITESUM_SSE_PING_S` seconds (15) without an event, counted from the request's start, a
`: ping` comment line keeps proxies from closing an idle connection (a slow page fetch or cache
lookup before the first event, a long map phase that sends only progress); SSE clients ignore it.

A request that fails before anything was sent (bad input, an unreachable model after the retries)
gets the plain problem+json answer with its HTTP status instead of a stream, unless the first
event was still not there after one ping interval: the stream is open by then (its first ping),
so the failure is an `error` event. A client that goes away cancels the summary, and with it the
model call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import EventSourceResponse
from fastapi.sse import format_sse_event

from service.core.config import Settings
from service.core.schema import SummaryRequest, SummaryResponse
from service.interfaces.problems import problem_body
from service.jobs.cache import ResultCache, cached_summarize
from service.pipeline.llm import LLMClient
from service.pipeline.streaming import StreamEvent
from service.pipeline.summarize import summarize_request

EVENT_STREAM = "text/event-stream"
EVENT_KINDS = ("progress", "sentence", "dropped", "done", "error")
PING = b": ping\n\n"  # an SSE comment: ignored by clients, but bytes on the wire for proxies

# The 200 answer's second media type, for the OpenAPI document (OpenAPI 3.2's itemSchema for SSE).
SSE_OPENAPI: dict[str, Any] = {
    "description": "With `Accept: text/event-stream`: Server-Sent Events. "
    + " ".join(line.strip() for line in __doc__.splitlines()[3:10] if line.strip()),
    "itemSchema": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(EVENT_KINDS)},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string"},
        },
    },
}

_tasks: set[asyncio.Task[Any]] = set()  # cache writes after the stream ended (kept referenced)


def wants_event_stream(request: Request) -> bool:
    """Whether the client asked for SSE (`Accept: text/event-stream`)."""
    return EVENT_STREAM in request.headers.get("accept", "").lower()


def _store_later(fn: Any, *args: Any) -> None:
    task = asyncio.get_running_loop().create_task(fn(*args))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def stream_summary(
    request: Request,
    summary_request: SummaryRequest,
    *,
    settings: Settings,
    llm: LLMClient | None,
    cache: ResultCache | None,
) -> EventSourceResponse:
    """Run the summary, answering with its events as they come (see the module docstring)."""
    queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
    started = time.perf_counter()
    first_sentence_ms: float | None = None

    def emit(event: StreamEvent) -> None:
        nonlocal first_sentence_ms
        if first_sentence_ms is None and event.kind in ("sentence", "dropped"):
            first_sentence_ms = round((time.perf_counter() - started) * 1000, 3)
        queue.put_nowait(event)

    async def run() -> tuple[SummaryResponse, bool]:
        try:
            return await cached_summarize(
                summary_request,
                settings=settings,
                summarize=summarize_request,
                cache=cache,
                progress=lambda done, total: emit(StreamEvent("progress", {"done": done, "total": total})),
                store_later=_store_later,
                llm=llm,
                events=emit,
            )
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run())
    # One pending get, waited on with a timeout: a ping on each silence, and no event lost to a
    # cancelled get (asyncio.wait, unlike wait_for, leaves the waited task alone). The first event
    # is awaited here for one ping interval: a failure by then is a plain problem+json answer; past
    # it, the stream opens with a ping and keeps pinging until the first event.
    getter: asyncio.Task[StreamEvent | None] = asyncio.ensure_future(queue.get())
    try:
        arrived = (await asyncio.wait({getter}, timeout=settings.sse_ping_s))[0]
    except BaseException:
        getter.cancel()
        task.cancel()
        raise
    if arrived and getter.result() is None:
        task.result()  # failed before anything was sent: raise, for the plain problem+json answer

    async def events() -> AsyncIterator[bytes]:
        number = 0

        def sse(kind: str, data: dict[str, Any] | str) -> bytes:
            nonlocal number
            number += 1
            text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            return format_sse_event(data_str=text, event=kind, id=str(number))

        nonlocal getter
        try:
            if not arrived:  # a silent first interval: the stream opens with a ping
                yield PING
                while not (await asyncio.wait({getter}, timeout=settings.sse_ping_s))[0]:
                    yield PING
            event = getter.result()
            while event is not None:
                yield sse(event.kind, event.data)
                getter = asyncio.ensure_future(queue.get())
                while not (await asyncio.wait({getter}, timeout=settings.sse_ping_s))[0]:
                    yield PING
                event = getter.result()
            try:
                response, hit = task.result()
            except Exception as exc:
                yield sse("error", problem_body(exc, request))
                return
            if hit:  # a stored answer: its sentences all at once
                for sentence in response.summary:
                    yield sse("sentence", sentence.model_dump(mode="json"))
                for dropped in response.dropped:
                    yield sse("dropped", dropped.model_dump(mode="json"))
            elif first_sentence_ms is not None:
                response.timings_ms["first_sentence_ms"] = first_sentence_ms
            yield sse("done", response.model_dump_json())
        finally:
            getter.cancel()
            if not task.done():  # the client went away: stop the summary and its model call
                task.cancel()

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
