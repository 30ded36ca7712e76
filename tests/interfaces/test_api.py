"""The HTTP contract: response shape, problem+json errors for bad input and upstream trouble."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.interfaces.api import GC_YOUNG_THRESHOLD, create_app
from service.pipeline.llm import LLMClient
from tests.conftest import CHAT_URL, chat_completion

PROBLEM = "application/problem+json"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(max_body_bytes=200_000, max_article_chars=100_000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://citesum.test") as c:
        yield c


async def llm_client(settings: Settings) -> tuple[httpx.AsyncClient, LLMClient]:
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://citesum.test"), llm


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:citesum:")
    assert "Traceback" not in response.text
    return body


async def test_summary_of_the_seed_article(client: httpx.AsyncClient, seed_text: str) -> None:
    response = await client.post("/v1/summaries", json={"text": seed_text, "max_sentences": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"summary", "document", "provider", "model", "prompt_version", "usage", "dropped", "timings_ms"} <= set(body)
    assert 3 <= len(body["summary"]) <= 4
    text = body["document"]["text"]
    assert body["document"]["sentence_count"] > 10
    for sentence in body["summary"]:
        assert sentence["verdict"] == "supported" and 0 <= sentence["score"] <= 1
        for c in sentence["citations"]:
            assert text[c["start"] : c["end"]] == c["quote"]
    assert set(body["usage"]) >= {"llm_calls", "prompt_tokens", "completion_tokens"}
    assert response.headers["x-request-id"]


async def test_include_sentences_returns_every_offset(client: httpx.AsyncClient, seed_text: str) -> None:
    body = (await client.post("/v1/summaries", json={"text": seed_text, "include_sentences": True})).json()
    text = body["document"]["text"]
    assert len(body["document"]["sentences"]) == body["document"]["sentence_count"]
    assert all(text[s["start"] : s["end"]] == s["text"] for s in body["document"]["sentences"])


async def test_html_input(client: httpx.AsyncClient, seed_text: str) -> None:
    paragraphs = "".join(f"<p>{p}</p>" for p in seed_text.split("\n\n")[8:20])
    html = f"<html><head><title>Belarus</title></head><body><nav>Home | World</nav><article>{paragraphs}</article></body></html>"
    response = await client.post("/v1/summaries", json={"html": html})
    assert response.status_code == 200, response.text
    assert "Home | World" not in response.json()["document"]["text"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"text": ""}, 400),
        ({"text": "   \n\t  "}, 400),
        ({}, 422),
        ({"text": "a", "url": "https://example.com/"}, 422),
        ({"text": "Some text here.", "max_sentences": 0}, 422),
        ({"text": "Some text here.", "policy": "ignore"}, 422),
        ({"text": "Some text here.", "surprise": 1}, 422),
        ({"url": "ftp://example.com/x"}, 422),
        ({"text": 12}, 422),
        ({"url": "http://127.0.0.1/admin"}, 400),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, 400),
        ({"text": "word " * 30_000}, 413),
    ],
)
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, payload: dict, status: int) -> None:
    assert_problem(await client.post("/v1/summaries", json=payload), status)


@pytest.mark.parametrize("field", ["text", "html"])
@pytest.mark.parametrize("route", ["/v1/summaries", "/v1/summaries?mode=async", "/v1/jobs"])
async def test_a_lone_surrogate_is_422_on_every_summary_route(
    client: httpx.AsyncClient, seed_text: str, field: str, route: str
) -> None:
    """Issue 19: "\\ud800" is valid JSON, but no UTF-8 encodes it: the cache key's .encode gave a 500."""
    body = json.dumps({field: seed_text[:2000] + " \ud800 tail"})  # ASCII JSON, with the escape "\\ud800"
    response = await client.post(route, content=body.encode(), headers={"content-type": "application/json"})
    problem = assert_problem(response, 422)
    assert "lone UTF-16 surrogate (U+D800)" in json.dumps(problem)


async def test_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/summaries", content=b'{"text": ', headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_problem(response, 400)["detail"]


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/summaries", content=b"text=hello", headers={"content-type": "text/plain"})
    assert "application/json" in assert_problem(response, 415)["detail"]


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/summaries", json={"text": "x" * 300_000})
    problem = assert_problem(response, 413)
    assert "CITESUM_MAX_BODY_BYTES" in problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_oversized_streamed_body_is_413_not_a_parse_error(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap is hit while reading
        for _ in range(10):
            yield b"x" * 65_536

    response = await client.post("/v1/summaries", content=chunks(), headers={"content-type": "application/json"})
    # Before: FastAPI turned the cap's exception into 400 "There was an error parsing the body".
    problem = assert_problem(response, 413)
    assert problem["type"].endswith("body-too-large") and problem["request_id"]


async def test_loopback_url_error_says_how_to_allow_it(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/v1/summaries", json={"url": "http://127.0.0.1:8080/"}), 400)
    assert "127.0.0.1" in body["detail"]


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)
    assert_problem(await client.get("/v1/summaries"), 405)


async def test_health_readiness_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["provider"] == "embedded"
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/summaries" in spec["paths"] and "413" in spec["paths"]["/v1/summaries"]["post"]["responses"]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_llm_down_is_503_with_retry_after(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    for _ in range(llm_settings.llm_max_attempts):
        httpx_mock.add_response(url=CHAT_URL, status_code=429, headers={"retry-after": "0"}, json={"error": {"message": "x"}})
    client, llm = await llm_client(llm_settings)
    async with client:
        body = assert_problem(await client.post("/v1/summaries", json={"text": seed_text}), 503)
    await llm.aclose()
    assert "3 times" in body["detail"]


async def test_llm_garbage_is_502(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    for _ in range(llm_settings.llm_reask_attempts + 1):
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion("<html>oops</html>"))
    client, llm = await llm_client(llm_settings)
    async with client:
        assert_problem(await client.post("/v1/summaries", json={"text": seed_text}), 502)
    await llm.aclose()


async def test_a_judge_that_is_down_leaves_a_200_with_the_embedded_verdicts_and_a_note(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    from tests.conftest import cited

    settings = llm_settings.model_copy(update={"verify_judge_band": 0.5, "cache_enabled": False})  # all unsure
    reply = cited(("Two convoys of unmarked trucks were filmed 400km from the border.", ["s12"]))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply))
    for _ in range(settings.llm_max_attempts):  # the judge's call: 502 after the retries
        httpx_mock.add_response(url=CHAT_URL, status_code=502, json={"error": {"message": "bad gateway"}})
    client, llm = await llm_client(settings)
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"})
    await llm.aclose()
    assert response.status_code == 200, response.text
    body = response.json()
    [sentence] = body["summary"]
    assert not (sentence["reason"] or "").startswith("judge:")
    assert body["notes"] == [
        "the LLM judge could not be used (the model server answered HTTP 502 3 times; giving up);"
        " the embedded checker's verdicts stand"
    ]
    assert body["usage"]["llm_calls"] == 1 + settings.llm_max_attempts


async def test_an_answer_made_without_the_judge_is_not_cached(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str, tmp_path
) -> None:
    from tests.conftest import cited

    settings = llm_settings.model_copy(update={"verify_judge_band": 0.5, "job_db_path": str(tmp_path / "jobs.sqlite3")})
    reply = chat_completion(cited(("Two convoys of unmarked trucks were filmed 400km from the border.", ["s12"])))
    verdict = chat_completion(json.dumps({"verdicts": [{"index": 0, "supported": True, "reason": "in s12"}]}))
    httpx_mock.add_response(url=CHAT_URL, json=reply)
    for _ in range(settings.llm_max_attempts):  # the judge is down for the first request only
        httpx_mock.add_response(url=CHAT_URL, status_code=503, json={"error": {"message": "overloaded"}})
    httpx_mock.add_response(url=CHAT_URL, json=reply)
    httpx_mock.add_response(url=CHAT_URL, json=verdict)
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://citesum.test"
    ) as client:
        first = (await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"})).json()
        second = (await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"})).json()
        third = (await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"})).json()
    await llm.aclose()
    assert first["notes"] and first["notes"][0].startswith("the LLM judge could not be used")
    assert second["usage"]["llm_calls"] == 2 and second["notes"] == []  # asked again, judged this time
    assert third["usage"]["llm_calls"] == 0 and third["summary"] == second["summary"]  # that one was stored


async def test_a_repeated_request_is_served_from_cache_with_zero_llm_calls(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str, tmp_path
) -> None:
    from tests.conftest import cited

    settings = llm_settings.model_copy(update={"job_db_path": str(tmp_path / "jobs.sqlite3")})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("Two convoys of unmarked trucks were filmed.", []))))
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://citesum.test"
    ) as client:
        first = (await client.post("/v1/summaries", json={"text": seed_text})).json()
        second = (await client.post("/v1/summaries", json={"text": seed_text})).json()
    await llm.aclose()
    assert first["usage"]["llm_calls"] == 1 and second["usage"]["llm_calls"] == 0
    assert second["summary"] == first["summary"] and "cache_ms" in second["timings_ms"]
    assert len(httpx_mock.get_requests()) == 1


async def test_readiness_checks_the_job_store(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["job_store"] == "ok" and ready.json()["jobs"] == "sqlite"

        async def unreachable(job_id: str) -> None:
            raise OSError("disk I/O error")

        monkeypatch.setattr(app.state.jobs.store, "get", unreachable)
        down = await c.get("/readyz")
    assert down.status_code == 503 and down.json()["status"] == "not ready"
    assert down.json()["checks"]["job_store"] == "error: OSError: disk I/O error"


async def test_what_startup_loaded_is_frozen_out_of_the_cycle_collector_while_serving(tmp_path) -> None:
    app = create_app(Settings(job_db_path=str(tmp_path / "jobs.sqlite3")))
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        # The modules, lexicons and app loaded by now are out of every collection's walk.
        assert gc.get_freeze_count() > 10_000
        assert all(obj is not app for obj in gc.get_objects())  # the collector's generations skip it
    assert gc.get_freeze_count() == 0  # handed back at shutdown


async def test_young_objects_are_collected_less_often_while_serving(tmp_path) -> None:
    app = create_app(Settings(job_db_path=str(tmp_path / "jobs.sqlite3")))
    before = gc.get_threshold()
    async with app.router.lifespan_context(app):
        # in-flight requests' objects are not walked every 700 allocations; the older generations keep theirs
        assert gc.get_threshold() == (max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
        assert gc.get_threshold()[0] >= 10_000
    assert gc.get_threshold() == before  # restored at shutdown


async def test_readiness_reports_a_model_server_that_cannot_be_reached(
    httpx_mock: HTTPXMock, llm_settings: Settings, tmp_path
) -> None:
    models_url = CHAT_URL.replace("/chat/completions", "/models")
    httpx_mock.add_response(url=models_url, json={"object": "list", "data": [{"id": "gpt-4o-mini"}]})
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=models_url)
    settings = llm_settings.model_copy(update={"job_db_path": str(tmp_path / "jobs.sqlite3")})
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://t"
    ) as c:
        up = await c.get("/readyz")
        down = await c.get("/readyz")
    await llm.aclose()
    assert up.status_code == 200 and up.json()["checks"]["model"] == "ok", up.text
    assert down.status_code == 503 and down.json()["status"] == "not ready"
    assert down.json()["checks"]["model"].startswith("error: unreachable") and "llm.test" in down.json()["checks"]["model"]


async def test_readiness_names_the_embedded_model_as_responses_do(client: httpx.AsyncClient, seed_text: str) -> None:
    ready = (await client.get("/readyz")).json()
    summary = (await client.post("/v1/summaries", json={"text": seed_text})).json()
    assert ready["model"] == summary["model"] == "extractive-centroid-v4"


async def test_an_unreachable_model_server_is_503_with_retry_after(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    for _ in range(llm_settings.llm_max_attempts):
        httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=CHAT_URL)
    client, llm = await llm_client(llm_settings)
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text})
    await llm.aclose()
    assert assert_problem(response, 503)["type"].endswith("llm-unavailable")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_pages_load_nothing_from_other_hosts(client: httpx.AsyncClient, page: str) -> None:
    import re

    html = await client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    assert assets and not [url for url in assets if "//" in url]  # no CDN, no Google fonts: works offline
    for url in assets:
        asset = await client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 0, url
    assert "/openapi.json" in html.text


@pytest.mark.parametrize(
    ("payload", "says", "not_says"),
    [
        ({"article": "Minsk said on Monday..."}, "article: unknown field; the article goes in `text`, `html` or `url`", "Extra inputs"),
        ({}, "body: give exactly one of text, html or url", "Value error"),
        ({"text": "a", "url": "https://example.com/"}, "give exactly one of text, html or url (got 2", "Value error"),
        ({"url": "www.bbc.co.uk/news/world-123"}, "url: not a full URL: it needs its scheme, e.g. https://www.bbc.co.uk/news/world-123", "relative URL"),
        ({"url": "ftp://example.com/story.txt"}, "only http:// and https:// pages are fetched", "Value error"),
    ],
)
async def test_validation_messages_say_what_to_send(client: httpx.AsyncClient, payload: dict, says: str, not_says: str) -> None:
    body = assert_problem(await client.post("/v1/summaries", json=payload), 422)
    assert says in body["detail"] and not_says not in body["detail"]
    assert all(not_says not in error["message"] for error in body["errors"])
