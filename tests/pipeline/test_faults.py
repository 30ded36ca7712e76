"""Fault injection: the real app against the simulated LLM on loopback, with 30% transport faults.

Every request succeeds or fails cleanly (502/503/504 problem+json) inside its deadline; nothing
hangs; retries are bounded and counted; a run of failures trips the breaker, which closes again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from service.core.config import Settings
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from service.testing.sim_llm import SimServer

# 30% of calls fail, spread over every transport fault the simulator knows.
FAULTS = {
    "429_retry_after": 0.05, "429": 0.05, "500": 0.04, "503": 0.04, "reset": 0.04,
    "hang": 0.03, "truncated_body": 0.02, "non_json": 0.02, "truncated_content": 0.01,
}
REQUESTS = 40
CONCURRENCY = 8
DEADLINE_S = 6.0


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def llm_calls() -> float:
    return metric("citesum_llm_calls_total", outcome="ok") + metric("citesum_llm_calls_total", outcome="error")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=7, hang_s=3.0, retry_after_s=0.2) as server:
        yield server


def settings_for(sim: SimServer, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "OPENAI_API_KEY": "sim",
        "OPENAI_BASE_URL": sim.base_url,
        "model": "sim-llm",
        "cache_enabled": False,
        "llm_timeout_s": 1.0,  # below the simulator's hang
        "llm_max_attempts": 3,
        "llm_backoff_initial_s": 0.05,
        "llm_backoff_max_s": 0.2,
        "llm_retry_deadline_s": 4.0,
        "request_deadline_s": DEADLINE_S,
        "breaker_failure_threshold": 3,
        "breaker_cooldown_s": 1.0,
    }
    return Settings(**{**values, **changes})


async def app_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, LLMClient]]:
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://citesum.test", timeout=30
    ) as client:
        yield client, llm
    await llm.aclose()


def assert_clean(response: httpx.Response, allowed: set[int]) -> None:
    assert response.status_code in allowed, response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == response.status_code and body["detail"] and "Traceback" not in response.text


async def test_thirty_percent_upstream_faults_fail_cleanly_within_the_deadline(sim: SimServer, seed_text: str) -> None:
    sim.configure(transport_rates=FAULTS)
    settings = settings_for(sim)
    gate = asyncio.Semaphore(CONCURRENCY)
    before = {"retries": metric("citesum_llm_retries_total"), "calls": llm_calls()}

    async def one(client: httpx.AsyncClient, i: int) -> tuple[httpx.Response, float]:
        async with gate:
            started = time.monotonic()
            response = await client.post("/v1/summaries", json={"text": seed_text, "max_sentences": 3 + i % 3})
            return response, time.monotonic() - started

    async for client, _llm in app_client(settings):
        async with asyncio.timeout(90):  # nothing hangs: the whole run has a hard stop
            results = await asyncio.gather(*(one(client, i) for i in range(REQUESTS)))

    statuses = [r.status_code for r, _ in results]
    for response, elapsed in results:
        assert_clean(response, {200, 502, 503, 504})
        assert elapsed < DEADLINE_S + 1.0, f"{response.status_code} after {elapsed:.1f} s"
    assert statuses.count(200) >= REQUESTS // 2, statuses
    faults = [c["transport_fault"] for c in sim.calls() if c["transport_fault"]]
    # The mix really was injected (hangs are logged by the simulator only when they end, later).
    assert len(faults) >= 5 and len(set(faults)) >= 3, faults

    # Bounded: each request makes at most attempts x (re-asks + 1) calls (one chunk each here).
    calls = llm_calls() - before["calls"]
    per_request = settings.llm_max_attempts * (settings.llm_reask_attempts + 1)
    assert REQUESTS <= calls <= REQUESTS * per_request
    # Counted: the metric saw at least the retries the successful responses report.
    retries = metric("citesum_llm_retries_total") - before["retries"]
    reported = sum(r.json()["usage"]["retries"] for r, _ in results if r.status_code == 200)
    assert retries >= max(1, reported)


async def test_a_run_of_failures_trips_the_breaker_which_closes_on_its_own(sim: SimServer, seed_text: str) -> None:
    settings = settings_for(sim, llm_max_attempts=2)
    async for client, llm in app_client(settings):
        async with asyncio.timeout(60):
            sim.configure(transport_rates={"503": 1.0})
            failed = [await client.post("/v1/summaries", json={"text": seed_text}) for _ in range(3)]
            assert llm.breaker.state == "open"
            calls_when_opened = len(sim.calls())
            fast = await client.post("/v1/summaries", json={"text": seed_text})
            assert len(sim.calls()) == calls_when_opened  # failed fast, the model was not called

            sim.configure(transport_rates={})  # the upstream recovers
            await asyncio.sleep(settings.breaker_cooldown_s)
            recovered = await client.post("/v1/summaries", json={"text": seed_text})

    for response in failed:
        assert_clean(response, {503})
        assert response.json()["type"] == "urn:citesum:problem:llm-unavailable"
    assert_clean(fast, {503})
    assert fast.json()["type"] == "urn:citesum:problem:llm-circuit-open" and int(fast.headers["retry-after"]) >= 1
    assert recovered.status_code == 200, recovered.text
    assert llm.breaker.state == "closed" and metric("citesum_llm_breaker_state") == 0
    assert metric("citesum_llm_breaker_transitions_total", to="open") >= 1
    assert metric("citesum_llm_breaker_transitions_total", to="closed") >= 1
