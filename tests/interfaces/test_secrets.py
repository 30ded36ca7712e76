"""No secret (OpenAI key, API keys, Slack secrets) in logs, response bodies or the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import get_settings
from service.core.logs import JsonFormatter
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from tests.conftest import CHAT_URL, LLM_BASE_URL, chat_completion, cited

SECRETS = {
    "OPENAI_API_KEY": "sk-SECRET-openai-7f3a9",
    "CITESUM_API_KEYS": "citesum-SECRET-key-a1,citesum-SECRET-key-b2",
    "SLACK_SIGNING_SECRET": "slack-SECRET-signing-9c4e",
    "SLACK_BOT_TOKEN": "xoxb-SECRET-bot-5d21",
    "CITESUM_MATTERMOST_TOKEN": "mm-SECRET-token-88aa",
}
VALUES = [v for value in SECRETS.values() for v in value.split(",")]
KEY = VALUES[1]


@pytest.mark.httpx_mock(assert_all_responses_were_requested=False)
async def test_no_secret_leaks_on_success_or_error_paths(
    monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture, seed_text: str
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_BASE_URL", LLM_BASE_URL)
    monkeypatch.setenv("CITESUM_LLM_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CITESUM_LLM_BACKOFF_INITIAL_S", "0")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.llm_configured and settings.api_keys is not None

    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("Lukashenko met Putin.", ["s1"]))))
    httpx_mock.add_response(url=CHAT_URL, status_code=500, json={"error": {"message": "boom"}}, is_reusable=True)
    httpx_mock.add_response(url=f"{LLM_BASE_URL}/models", json={"object": "list", "data": []})  # /readyz's probe
    llm = LLMClient(settings)
    app = create_app(settings, llm=llm)
    auth = {"Authorization": f"Bearer {KEY}"}
    bodies: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://citesum.test") as client:
        exchanges = [
            (await client.post("/v1/summaries", json={"text": seed_text}, headers=auth), 200),
            (await client.post("/v1/summaries", json={"text": seed_text}, headers=auth), 503),
            (await client.post("/v1/summaries", json={"text": seed_text}, headers={"Authorization": "Bearer nope"}), 401),
            (await client.post("/v1/summaries", json={"txt": 1}, headers=auth), 422),
            (await client.post("/v1/summaries", content=b"{", headers={**auth, "content-type": "application/json"}), 400),
            (await client.post("/slack/commands", content=b"text=hi", headers={"content-type": "application/x-www-form-urlencoded"}), 401),
            (await client.get("/readyz"), 200),
            (await client.get("/metrics", headers=auth), 200),
        ]
        openapi = await client.get("/openapi.json")
    await llm.aclose()
    for response, status in exchanges:
        assert response.status_code == status, response.text
        bodies.append(response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items()))
    json_lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "request failed" in caplog.text and any(r.name.startswith("openai") for r in caplog.records)
    for value in VALUES:
        assert value not in caplog.text and value not in json_lines, f"{value} logged"
        assert all(value not in body for body in bodies), f"{value} in a response"
        assert value not in openapi.text, f"{value} in /openapi.json"


# --- secrets inside URLs: capability URLs (webhooks, response_url) and user-given credentials ----------

WEBHOOK = "https://hooks.slack.com/services/T0/B0/webhookSECRETpath"
RESPONSE_URL = "https://hooks.slack.com/commands/T0/99/responseSECRETpath"
URL_PASSWORD = "urlSECRETpassword"


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything captured, as caplog shows it and as the JSON log lines would (tracebacks included)."""
    return caplog.text + "\n".join(JsonFormatter().format(record) for record in caplog.records)


@pytest.mark.httpx_mock(assert_all_responses_were_requested=False)
@pytest.mark.parametrize("outcome", ["delivered", "refused", "unreachable"])
async def test_webhook_and_response_urls_are_not_logged(
    httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    from service.core.config import Settings
    from service.jobs.callbacks import send_callback
    from service.jobs.job import Job, new_job_id

    settings = Settings(
        incoming_webhook_url=WEBHOOK, slack_delivery_attempts=2, slack_delivery_backoff_initial_s=0.0,
        slack_delivery_backoff_max_s=0.0,
    )  # fmt: skip
    for url in (RESPONSE_URL, WEBHOOK):
        if outcome == "delivered":
            httpx_mock.add_response(url=url, method="POST", text="ok")
        elif outcome == "refused":
            httpx_mock.add_response(url=url, method="POST", status_code=404, text="no_service", is_reusable=True)
        else:
            httpx_mock.add_exception(httpx.ConnectError(f"cannot reach {url}"), url=url, is_reusable=True)
    job = Job(
        id=new_job_id(), status="succeeded", request={"text": "x"}, result=None, error={"detail": "boom"},
        callback_url=RESPONSE_URL, callback_format="slack_response_url",
        callback_options={"response_type": "in_channel"},
    )  # fmt: skip
    caplog.set_level(logging.DEBUG)
    # configure_logging (run by other tests in this process) quiets httpx to WARNING; this test wants its
    # request lines, which carry the URLs, so that the redaction is what keeps the secret out.
    caplog.set_level(logging.DEBUG, logger="httpx")
    callback_error = await send_callback(job, settings=settings)
    assert (callback_error is None) == (outcome == "delivered")
    assert any(r.name == "httpx" for r in caplog.records) or outcome == "unreachable"  # httpx did log its lines
    text = logged_text(caplog)
    assert "hooks.slack.com" in text  # where it went is still logged ...
    assert "SECRETpath" not in text and "SECRETpath" not in (callback_error or "")  # ... the capability is not


@pytest.mark.httpx_mock(assert_all_responses_were_requested=False)
async def test_url_credentials_are_hidden_in_logs_problems_and_job_documents(
    tmp_path, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    from service.core.config import Settings
    from tests.jobs.test_jobs import ARTICLE, CountingSummarizer

    caplog.set_level(logging.DEBUG)
    httpx_mock.add_response(method="POST", json={"ok": True})  # the callback receiver
    settings = Settings(job_db_path=str(tmp_path / "jobs.sqlite3"), fetch_allow_private=False)
    app = create_app(settings)
    app.state.job_summarizer = CountingSummarizer()
    bodies = []
    transport = httpx.ASGITransport(app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # Refused URL: the problem detail quotes it.
        refused = await client.post("/v1/summaries", json={"url": f"http://user:{URL_PASSWORD}@127.0.0.1:9/a"})
        assert refused.status_code == 400 and "127.0.0.1" in refused.json()["detail"]
        bodies.append(refused.text)
        # A job whose request and callback carry credentials: its document must not show them.
        created = await client.post(
            "/v1/jobs",
            json={"text": ARTICLE, "callback_url": f"https://hook:{URL_PASSWORD}@8.8.8.8:9/hook"},
        )
        assert created.status_code == 202, created.text
        bodies.append(created.text)
        for _ in range(200):
            document = await client.get(created.headers["location"])
            if document.json()["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.02)
        bodies.append(document.text)
        assert document.json()["callback_url"].startswith("https://***@8.8.8.8")
    [delivered] = httpx_mock.get_requests()
    assert delivered.headers["authorization"].startswith("Basic ")  # the credentials still do their job ...
    bodies.append(delivered.content.decode())  # ... but the job document posted there does not repeat them
    for body in bodies:
        assert URL_PASSWORD not in body
    assert URL_PASSWORD not in logged_text(caplog)


def test_redaction_is_linear_on_hostile_text() -> None:
    import time

    from service.core.redact import redact_text

    samples = ["://" * 50_000, "://" + "a" * 200_000 + "@", "hooks.slack.com/" * 20_000, "@" * 200_000]
    started = time.perf_counter()
    for sample in samples:
        redact_text(sample)
    assert time.perf_counter() - started < 5  # quadratic patterns would take minutes here
