"""Caps and deadlines: in-flight requests (503), in-flight model calls, article tokens (413), 504 + cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from tests.conftest import CHAT_URL, chat_completion, cited

PROBLEM = "application/problem+json"


@asynccontextmanager
async def api(settings: Settings, *, with_llm: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client for an app built from `settings` (with an LLM client pointed at the fake host)."""
    llm = LLMClient(settings) if with_llm else None
    app = create_app(settings, llm=llm)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://citesum.test") as client:
            yield client
    finally:
        if llm is not None:
            await llm.aclose()


def summary_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=chat_completion(cited(("Lukashenko met Putin.", ["s1"]))))


async def test_over_the_inflight_cap_is_503_at_once(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    settings = llm_settings.model_copy(update={"max_inflight_requests": 2})
    release = asyncio.Event()
    entered = 0

    async def held(request: httpx.Request) -> httpx.Response:
        nonlocal entered
        entered += 1
        await release.wait()
        return summary_reply(request)

    httpx_mock.add_callback(held, url=CHAT_URL, is_reusable=True)
    async with api(settings) as client:
        first = [asyncio.create_task(client.post("/v1/summaries", json={"text": seed_text})) for _ in range(2)]
        while entered < 2:
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/summaries", json={"text": seed_text})
        assert (await client.get("/healthz")).status_code == 200  # only /v1/* is capped
        release.set()
        answered = await asyncio.gather(*first)
        after = await client.post("/v1/summaries", json={"text": seed_text})  # the slots came back
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM) and refused.headers["retry-after"] == "1"
    body = refused.json()
    assert body["type"] == "urn:citesum:problem:overloaded" and "CITESUM_MAX_INFLIGHT_REQUESTS" in body["detail"]
    assert body["request_id"] == refused.headers["x-request-id"]
    assert [r.status_code for r in answered] == [200, 200] and after.status_code == 200


async def test_inflight_llm_calls_are_capped_across_requests(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    settings = llm_settings.model_copy(update={"max_inflight_llm_calls": 2})
    in_flight = peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return summary_reply(request)

    httpx_mock.add_callback(slow, url=CHAT_URL, is_reusable=True)
    async with api(settings) as client:
        responses = await asyncio.gather(*(client.post("/v1/summaries", json={"text": seed_text}) for _ in range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert len(httpx_mock.get_requests()) == 6 and peak == 2


async def test_article_over_the_token_cap_is_413(seed_text: str) -> None:
    async with api(Settings(max_article_tokens=500), with_llm=False) as client:
        response = await client.post("/v1/summaries", json={"text": seed_text})
    assert response.status_code == 413 and response.headers["content-type"].startswith(PROBLEM)
    assert "CITESUM_MAX_ARTICLE_TOKENS" in response.json()["detail"]


async def test_deadline_is_504_and_cancels_the_upstream_call(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    holder_settings = llm_settings.model_copy(
        update={"request_deadline_s": 1.0, "llm_timeout_s": 30.0, "max_inflight_llm_calls": 1}
    )
    started: list[asyncio.Task] = []
    cancelled: list[asyncio.Task] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        task = asyncio.current_task()
        assert task is not None
        started.append(task)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(task)
            raise
        return summary_reply(request)

    httpx_mock.add_callback(hang, url=CHAT_URL, is_reusable=True)
    async with api(holder_settings) as holder, api(holder_settings.model_copy(update={"request_deadline_s": 0.3})) as waiter:
        async with asyncio.timeout(10):  # the test itself never hangs
            held = asyncio.create_task(holder.post("/v1/summaries", json={"text": seed_text}))
            while not started:
                await asyncio.sleep(0.01)
            # The one model slot (per process) is taken: waiting for it counts against the deadline.
            waited = await waiter.post("/v1/summaries", json={"text": seed_text})
            assert not cancelled
            timed_out = await held
    for response in (waited, timed_out):
        assert response.status_code == 504 and response.headers["content-type"].startswith(PROBLEM)
        assert "deadline" in response.json()["detail"]
    assert len(started) == 1, "the waiting request must not have reached the model"
    assert cancelled == started and started[0].done()


@pytest.mark.parametrize("limit", [1, 3])
async def test_inflight_cap_setting_is_honoured_exactly(limit: int, seed_text: str) -> None:
    from service.interfaces.middleware import InflightLimitMiddleware

    release = asyncio.Event()

    async def slow_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    capped = InflightLimitMiddleware(slow_app, max_inflight=limit)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(capped), base_url="http://t") as client:
        held = [asyncio.create_task(client.get("/v1/x")) for _ in range(limit)]
        while capped.inflight < limit:
            await asyncio.sleep(0.01)
        over = await client.get("/v1/x")
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [204] * limit
    assert over.status_code == 503 and capped.inflight == 0
