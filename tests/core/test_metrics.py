"""GET /metrics: requests by route template and status, latency, LLM calls and tokens, verdicts."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from tests.conftest import CHAT_URL, chat_completion, cited


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_requests_are_counted_by_route_template_and_status(seed_text: str) -> None:
    app = create_app(Settings())
    ok = {"route": "/v1/summaries", "method": "POST", "status": "200"}
    invalid = {**ok, "status": "422"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = (sample("citesum_http_requests_total", **ok), sample("citesum_http_requests_total", **invalid),
              sample("citesum_http_requests_total", **unmatched),
              sample("citesum_http_request_duration_seconds_count", route="/v1/summaries", method="POST"),
              sample("citesum_summary_sentences_total", verdict="supported"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "max_sentences": 3})
        await client.post("/v1/summaries", json={})
        await client.get("/no/such/path/12345")
        text = (await client.get("/metrics")).text
    assert response.status_code == 200
    after = (sample("citesum_http_requests_total", **ok), sample("citesum_http_requests_total", **invalid),
             sample("citesum_http_requests_total", **unmatched),
             sample("citesum_http_request_duration_seconds_count", route="/v1/summaries", method="POST"),
             sample("citesum_summary_sentences_total", verdict="supported"))
    supported = sum(s["verdict"] == "supported" for s in response.json()["summary"])
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 2, supported]
    assert "/no/such/path" not in text  # raw paths never become labels
    for name in ("citesum_http_requests_in_flight", "citesum_llm_calls_in_flight", "citesum_llm_breaker_state",
                 "citesum_http_request_duration_seconds_bucket"):
        assert name in text


async def test_llm_calls_tokens_retries_and_reasks_are_counted(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    httpx_mock.add_response(url=CHAT_URL, status_code=500, json={"error": {"message": "x"}})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion("not json", prompt_tokens=10, completion_tokens=2))
    httpx_mock.add_response(
        url=CHAT_URL, json=chat_completion(cited(("Lukashenko met Putin.", ["s1"])), prompt_tokens=100, completion_tokens=20)
    )
    names = [("citesum_llm_calls_total", {"outcome": "ok"}), ("citesum_llm_calls_total", {"outcome": "error"}),
             ("citesum_llm_tokens_total", {"kind": "prompt"}), ("citesum_llm_tokens_total", {"kind": "completion"}),
             ("citesum_llm_retries_total", {}), ("citesum_llm_reasks_total", {})]
    before = [sample(n, **labels) for n, labels in names]
    llm = LLMClient(llm_settings)
    app = create_app(llm_settings, llm=llm)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/v1/summaries", json={"text": seed_text})
    await llm.aclose()
    assert response.status_code == 200, response.text
    after = [sample(n, **labels) for n, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 110, 22, 1, 1]


async def test_requests_refused_before_routing_still_name_their_route() -> None:
    app = create_app(Settings(api_keys="k"))
    labels = {"route": "/v1/jobs/{job_id}", "method": "GET", "status": "401"}
    before = sample("citesum_http_requests_total", **labels)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert (await client.get("/v1/jobs/abc")).status_code == 401
    assert sample("citesum_http_requests_total", **labels) - before == 1
