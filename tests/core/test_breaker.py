"""The circuit breaker: opens after N upstream failures, fails fast, probes once, closes on success."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.breaker import CircuitBreaker
from service.core.config import Settings
from service.core.errors import CircuitOpen, LLMBadOutput, LLMTimeout, LLMUnavailable
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from tests.conftest import CHAT_URL, chat_completion, cited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def call(breaker: CircuitBreaker, error: BaseException | None = None) -> None:
    async with breaker.guard():
        if error is not None:
            raise error


async def fail(breaker: CircuitBreaker, times: int, error: type[Exception] = LLMUnavailable) -> None:
    for _ in range(times):
        with pytest.raises(error):
            await call(breaker, error("down"))


async def test_opens_after_the_threshold_and_fails_fast_with_the_remaining_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)
    await fail(breaker, 2)
    assert breaker.state == "closed"
    await fail(breaker, 1, LLMTimeout)
    assert breaker.state == "open"
    clock.now += 10
    with pytest.raises(CircuitOpen) as info:
        await call(breaker)
    assert info.value.status == 503 and info.value.retry_after == pytest.approx(20)


async def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=Clock())
    await fail(breaker, 1)
    await call(breaker)
    await fail(breaker, 1)
    assert breaker.state == "closed"


async def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    await fail(breaker, 1)
    clock.now += 5
    probe_inside = asyncio.Event()
    release = asyncio.Event()

    async def probe() -> None:
        async with breaker.guard():
            probe_inside.set()
            await release.wait()

    task = asyncio.create_task(probe())
    await probe_inside.wait()
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpen):  # only one probe at a time
        await call(breaker)
    release.set()
    await task
    assert breaker.state == "closed" and breaker.failures == 0
    await call(breaker)


async def test_a_failed_probe_opens_it_again_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5, clock=clock)
    await fail(breaker, 2)
    clock.now += 6
    await fail(breaker, 1)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as info:
        await call(breaker)
    assert info.value.retry_after == pytest.approx(5)


@pytest.mark.parametrize("error", [asyncio.CancelledError(), LLMBadOutput("bad json")])
async def test_cancellation_and_bad_output_do_not_count_and_free_the_probe(error: BaseException) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    await fail(breaker, 1)
    clock.now += 5
    with pytest.raises(type(error)):
        await call(breaker, error)
    assert breaker.state == "half_open" and not breaker.probing
    await call(breaker)
    assert breaker.state == "closed"


async def test_through_the_api_an_open_breaker_is_503_without_calling_the_model(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    settings = llm_settings.model_copy(
        update={"llm_max_attempts": 1, "breaker_failure_threshold": 2, "breaker_cooldown_s": 60}
    )
    httpx_mock.add_response(url=CHAT_URL, status_code=500, json={"error": {"message": "boom"}}, is_reusable=True)
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://citesum.test") as client:
        failures = [await client.post("/v1/summaries", json={"text": seed_text}) for _ in range(2)]
        fast = await client.post("/v1/summaries", json={"text": seed_text})
    await llm.aclose()
    assert [r.status_code for r in failures] == [503, 503]
    assert fast.status_code == 503 and fast.headers["content-type"].startswith("application/problem+json")
    assert fast.json()["type"] == "urn:citesum:problem:llm-circuit-open"
    assert 55 <= int(fast.headers["retry-after"]) <= 60
    assert len(httpx_mock.get_requests()) == 2  # the third request never reached the model


async def test_through_the_client_it_closes_again_after_the_cooldown(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    settings = llm_settings.model_copy(update={"llm_max_attempts": 1, "breaker_failure_threshold": 1})
    llm = LLMClient(settings)
    clock = Clock()
    llm.breaker.clock = clock
    httpx_mock.add_response(url=CHAT_URL, status_code=503, json={"error": {"message": "x"}})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("ok", ["s1"]))))
    messages = [{"role": "user", "content": "[s1] Hello."}]
    with pytest.raises(LLMUnavailable):
        await llm.complete_json(messages, schema_name="cited_summary", schema={})
    with pytest.raises(CircuitOpen):
        await llm.complete_json(messages, schema_name="cited_summary", schema={})
    clock.now += settings.breaker_cooldown_s
    result = await llm.complete_json(messages, schema_name="cited_summary", schema={})
    await llm.aclose()
    assert result.data["sentences"][0]["text"] == "ok" and llm.breaker.state == "closed"
