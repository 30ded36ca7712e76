"""No secret (OpenAI key, API keys, Slack secrets) in logs, response bodies or the OpenAPI document."""

from __future__ import annotations

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
