"""The chat routes: signed Slack requests in, an instant ack, the summary at the response_url or in a thread."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from pytest_httpx import HTTPXMock
from slack_sdk.signature import SignatureVerifier

from service.api import create_app
from service.config import Settings
from service.errors import LLMUnavailable
from service.problems import install_problem_handlers
from service.schema import SummaryRequest, SummaryResponse
from service.signature import Clock
from service.slack import (
    BackgroundWork,
    MemoryDedupeStore,
    SlackRuntime,
    get_slack_runtime,
    get_slack_summarizer,
    parse_text,
    router,
)
from tests.test_render_slack import assert_valid_block_kit, make_response

SECRET = "test-signing-secret"
NOW = 1_700_000_000
RESPONSE_URL = "https://hooks.slack.com/commands/T1/123/abc"
POST_MESSAGE_URL = "https://slack.com/api/chat.postMessage"
ARTICLE_URL = "https://news.example.com/belarus"


class FixedClock(Clock):
    def now(self) -> float:
        return NOW


class FakeSummarizer:
    """Records calls; can wait on a gate (a slow LLM) or raise (a failing one)."""

    def __init__(self, response: SummaryResponse | None = None, error: Exception | None = None) -> None:
        self.response = response or make_response(
            [
                ("Putin has three options.", [("s2", "Putin has three options in Belarus.")], "supported", None),
                ("Annexation is one.", [("s2", "Putin has three options in Belarus."), ("s7", "One is annexation.")],
                 "supported", None),
            ],
            dropped=1,
            source_url=ARTICLE_URL,
        )  # fmt: skip
        self.error = error
        self.gate: asyncio.Event | None = None
        self.calls: list[SummaryRequest] = []
        self.started = asyncio.Event()
        self.finished = False

    async def __call__(self, request: SummaryRequest) -> SummaryResponse:
        self.calls.append(request)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.finished = True
        if self.error is not None:
            raise self.error
        return self.response


def make_settings(**changes: Any) -> Settings:
    """Test settings: signed Slack, a bot token, instant retries, a second allowed host (Mattermost)."""
    values: dict[str, Any] = {
        "slack_signing_secret": SECRET,
        "slack_bot_token": "xoxb-test",
        "slack_delivery_attempts": 3,
        "slack_delivery_backoff_initial_s": 0.0,
        "slack_delivery_backoff_max_s": 0.0,
        "slack_response_hosts": ["hooks.slack.com", "mm.example.org"],
    }
    return Settings(**{**values, **changes})


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def summarizer() -> FakeSummarizer:
    return FakeSummarizer()


@pytest.fixture
def runtime(settings: Settings) -> SlackRuntime:
    return SlackRuntime(
        work=BackgroundWork(settings.slack_max_concurrency, settings.slack_max_pending),
        seen=MemoryDedupeStore(settings.slack_dedupe_ttl_s),
        clock=FixedClock(),
    )


def make_app(settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(router)
    app.dependency_overrides[get_slack_summarizer] = lambda: summarizer
    app.dependency_overrides[get_slack_runtime] = lambda: runtime
    return app


@pytest.fixture
async def client(
    settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(settings, summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
    await runtime.work.drain(timeout=5)


def sign(body: bytes, *, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def command_body(text: str, **fields: str) -> bytes:
    form = {
        "token": "legacy", "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/summarize",
        "text": text, "response_url": RESPONSE_URL, "trigger_id": "123.456.abc",
    }  # fmt: skip
    form.update(fields)
    return urlencode(form).encode()


async def post_command(client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = sign(body) if headers is None else headers
    return await client.post(
        "/slack/commands", content=body, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}
    )


async def post_event(client: httpx.AsyncClient, payload: dict[str, Any], **extra: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        "/slack/events", content=body, headers={**sign(body), "Content-Type": "application/json", **extra}
    )


def mention(text: str, event_id: str = "Ev1", **event: Any) -> dict[str, Any]:
    base = {"type": "app_mention", "user": "U1", "text": text, "ts": "1700000000.000100", "channel": "C1"}
    return {"type": "event_callback", "event_id": event_id, "team_id": "T1", "event": {**base, **event}}


def posted(httpx_mock: HTTPXMock, url: str) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in httpx_mock.get_requests(url=url)]


# --- slash commands --------------------------------------------------------------------------


async def test_signed_command_is_acked_and_summary_arrives_at_response_url(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    response = await post_command(client, command_body(f"<{ARTICLE_URL}>"))
    assert response.status_code == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral" and "Summarizing" in ack["text"]
    await runtime.work.drain(timeout=5)

    assert [str(call.url) for call in summarizer.calls] == [ARTICLE_URL]
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert message["response_type"] == "in_channel"
    assert_valid_block_kit(message)
    text = json.dumps(message["blocks"])
    assert "Putin has three options. [1]" in text and "Annexation is one. [1] [2]" in text
    assert "One is annexation." in text and ARTICLE_URL in text
    assert "1 unsupported sentence dropped" in text


async def test_ack_returns_before_a_slow_summary_is_done(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    summarizer.gate = asyncio.Event()
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    response = await post_command(client, command_body(ARTICLE_URL))
    assert response.status_code == 200 and "Summarizing" in response.json()["text"]
    await asyncio.wait_for(summarizer.started.wait(), timeout=5)
    assert not summarizer.finished and httpx_mock.get_requests() == []
    assert runtime.work.pending == 1

    summarizer.gate.set()
    await runtime.work.drain(timeout=5)
    assert summarizer.finished and len(posted(httpx_mock, RESPONSE_URL)) == 1


async def test_a_failing_summary_reaches_the_user_as_an_ephemeral_message(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    summarizer.error = LLMUnavailable("the language model is unavailable after 4 attempts; try again later")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    await post_command(client, command_body("--public " + ARTICLE_URL))
    await runtime.work.drain(timeout=5)
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert message["response_type"] == "ephemeral"  # an error is never posted to the channel
    assert "couldn't summarize" in message["text"] and "unavailable after 4 attempts" in message["text"]


async def test_an_unexpected_crash_still_tells_the_user(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    summarizer.error = RuntimeError("boom")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    await post_command(client, command_body(ARTICLE_URL))
    await runtime.work.drain(timeout=5)
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert "Something went wrong" in message["text"] and "boom" not in json.dumps(message)
    assert "request id" in json.dumps(message["blocks"])


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda body: {}, "missing"),
        (lambda body: sign(body, secret="wrong-secret"), "signature mismatch"),
        (lambda body: sign(body, timestamp=NOW - 301), "stale"),
        (lambda body: sign(body + b"&text=other"), "signature mismatch"),
        (lambda body: {**sign(body), "X-Slack-Request-Timestamp": "not-a-number"}, "malformed"),
    ],
    ids=["unsigned", "forged", "stale", "changed-body", "junk-timestamp"],
)
async def test_unsigned_forged_or_stale_commands_get_401_and_no_work(
    client: httpx.AsyncClient,
    summarizer: FakeSummarizer,
    runtime: SlackRuntime,
    caplog: pytest.LogCaptureFixture,
    make_headers: Any,
    reason: str,
) -> None:
    body = command_body(ARTICLE_URL)
    with caplog.at_level(logging.WARNING, logger="service.slack"):
        response = await post_command(client, body, make_headers(body))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401 and reason in problem["detail"] and problem["request_id"]
    assert any("refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    assert runtime.work.pending == 0 and summarizer.calls == []


async def test_no_signing_secret_refuses_everything(summarizer: FakeSummarizer, runtime: SlackRuntime) -> None:
    app = make_app(Settings(), summarizer, runtime)  # SLACK_SIGNING_SECRET unset
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        body = command_body(ARTICLE_URL)
        response = await post_command(client, body)
        assert response.status_code == 401 and "SLACK_SIGNING_SECRET" in response.json()["detail"]
        event = await post_event(client, {"type": "url_verification", "challenge": "abc"})
        assert event.status_code == 401
    assert summarizer.calls == []


async def test_a_replayed_or_retried_command_runs_once(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    body = command_body(ARTICLE_URL)
    first = await post_command(client, body)
    replay = await post_command(client, body, {**sign(body), "X-Slack-Retry-Num": "1"})
    assert first.status_code == replay.status_code == 200
    assert "Already working" in replay.json()["text"]
    await runtime.work.drain(timeout=5)
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, RESPONSE_URL)) == 1

    httpx_mock.add_response(url=RESPONSE_URL, text="ok")  # a new invocation (new trigger_id) runs again
    await post_command(client, command_body(ARTICLE_URL, trigger_id="789.000.def"))
    await runtime.work.drain(timeout=5)
    assert len(summarizer.calls) == 2


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", "--public", "--loud https://x.example"])
async def test_help_and_empty_text_get_help(client: httpx.AsyncClient, summarizer: FakeSummarizer, text: str) -> None:
    response = await post_command(client, command_body(text))
    assert response.status_code == 200
    message = response.json()
    assert message["response_type"] == "ephemeral" and "/summarize" in message["text"]
    assert summarizer.calls == []
    if text.startswith("--loud"):
        assert "Unknown option --loud" in message["text"]


@pytest.mark.parametrize(
    ("flag", "default", "expected"),
    [("", "in_channel", "in_channel"), ("--private ", "in_channel", "ephemeral"), ("--public ", "ephemeral", "in_channel"),
     ("", "ephemeral", "ephemeral")],
)  # fmt: skip
async def test_visibility_setting_and_flags(
    httpx_mock: HTTPXMock, settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime,
    flag: str, default: str, expected: str,
) -> None:  # fmt: skip
    settings = make_settings(slack_response_type=default)
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    app = make_app(settings, summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        await post_command(client, command_body(flag + ARTICLE_URL))
    await runtime.work.drain(timeout=5)
    assert posted(httpx_mock, RESPONSE_URL)[0]["response_type"] == expected


async def test_policy_flag_and_pasted_text_reach_the_pipeline(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    article = "Minsk &amp; Moscow signed a treaty in 1999. " * 10
    await post_command(client, command_body("--flag " + article))
    await runtime.work.drain(timeout=5)
    (call,) = summarizer.calls
    assert call.policy == "flag" and call.url is None and call.text.startswith("Minsk & Moscow signed")


async def test_response_url_outside_the_allow_list_is_refused(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    response = await post_command(client, command_body(ARTICLE_URL, response_url="https://evil.example.com/steal"))
    assert response.status_code == 200 and "can't reply" in response.json()["text"]
    assert summarizer.calls == [] and httpx_mock.get_requests() == []


async def test_an_invalid_link_gets_help_not_an_error(client: httpx.AsyncClient, summarizer: FakeSummarizer) -> None:
    response = await post_command(client, command_body("https://"))
    assert response.status_code == 200 and summarizer.calls == []


async def test_too_much_pending_work_is_refused_politely(
    httpx_mock: HTTPXMock, settings: Settings, summarizer: FakeSummarizer
) -> None:
    runtime = SlackRuntime(work=BackgroundWork(1, 1), seen=MemoryDedupeStore(900), clock=FixedClock())
    summarizer.gate = asyncio.Event()
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    app = make_app(settings, summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        await post_command(client, command_body(ARTICLE_URL))
        busy = await post_command(client, command_body(ARTICLE_URL, trigger_id="second"))
    assert "Too many summaries" in busy.json()["text"]
    summarizer.gate.set()
    await runtime.work.drain(timeout=5)
    assert len(summarizer.calls) == 1


async def test_public_summaries_are_mirrored_to_the_incoming_webhook(
    httpx_mock: HTTPXMock, settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    settings = make_settings(incoming_webhook_url="https://mm.example.org/hooks/abc")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok", is_reusable=True)
    httpx_mock.add_response(url="https://mm.example.org/hooks/abc", text="ok")
    app = make_app(settings, summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        await post_command(client, command_body("--public " + ARTICLE_URL))
        await post_command(client, command_body("--private " + ARTICLE_URL, trigger_id="private-one"))
    await runtime.work.drain(timeout=5)
    (mirrored,) = posted(httpx_mock, "https://mm.example.org/hooks/abc")  # the private one is not copied
    assert "response_type" not in mirrored and "Putin has three options" in mirrored["text"]


# --- Mattermost ------------------------------------------------------------------------------


async def test_mattermost_command_with_token(
    httpx_mock: HTTPXMock, settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    settings = make_settings(mattermost_token="mm-token", slack_signing_secret=None)
    mm_url = "https://mm.example.org/hooks/commands/xyz"
    httpx_mock.add_response(url=mm_url, text="ok")
    app = make_app(settings, summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        form = {"token": "mm-token", "text": ARTICLE_URL, "response_url": mm_url, "trigger_id": "t1"}
        ok = await client.post("/mattermost/commands", data=form)
        wrong = await client.post("/mattermost/commands", data={**form, "token": "nope", "trigger_id": "t2"})
        header = await client.post(
            "/mattermost/commands",
            data={**form, "token": "", "trigger_id": "t3"},
            headers={"Authorization": "Token nope"},
        )
        slack = await post_command(client, command_body(ARTICLE_URL))  # the Slack door stays shut
    assert ok.status_code == 200 and "Summarizing" in ok.json()["text"]
    assert wrong.status_code == header.status_code == slack.status_code == 401
    await runtime.work.drain(timeout=5)
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, mm_url)) == 1


async def test_mattermost_without_a_configured_token_refuses(client: httpx.AsyncClient) -> None:
    response = await client.post("/mattermost/commands", data={"token": "", "text": "help"})
    assert response.status_code == 401 and "CITESUM_MATTERMOST_TOKEN" in response.json()["detail"]


# --- Events API ------------------------------------------------------------------------------


async def test_url_verification_challenge(client: httpx.AsyncClient) -> None:
    response = await post_event(
        client,
        {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
    )
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_unsigned_event_is_refused(client: httpx.AsyncClient, summarizer: FakeSummarizer) -> None:
    body = json.dumps(mention(f"<@UBOT> {ARTICLE_URL}")).encode()
    response = await client.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and summarizer.calls == []


async def test_mention_with_a_link_gets_a_thread_reply(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True, "ts": "1700000001.000200"})
    response = await post_event(client, mention(f"<@UBOT> summarize <{ARTICLE_URL}|news.example.com>"))
    assert response.status_code == 200
    await runtime.work.drain(timeout=5)
    assert [str(call.url) for call in summarizer.calls] == [ARTICLE_URL]
    (reply,) = posted(httpx_mock, POST_MESSAGE_URL)
    assert reply["channel"] == "C1" and reply["thread_ts"] == "1700000000.000100"
    assert_valid_block_kit(reply)
    assert "Putin has three options. [1]" in json.dumps(reply["blocks"])
    assert httpx_mock.get_request(url=POST_MESSAGE_URL).headers["Authorization"] == "Bearer xoxb-test"


async def test_a_mention_inside_a_thread_replies_in_that_thread(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    await post_event(client, mention(f"<@UBOT> {ARTICLE_URL}", thread_ts="1699999999.000001"))
    await runtime.work.drain(timeout=5)
    assert posted(httpx_mock, POST_MESSAGE_URL)[0]["thread_ts"] == "1699999999.000001"


async def test_direct_message_gets_a_reply_and_failures_are_reported(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    summarizer.error = LLMUnavailable("the language model is unavailable")
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    payload = mention(ARTICLE_URL, event_id="Ev2", type="message", channel_type="im", channel="D1")
    await post_event(client, payload)
    await runtime.work.drain(timeout=5)
    (reply,) = posted(httpx_mock, POST_MESSAGE_URL)
    assert reply["channel"] == "D1" and "unavailable" in reply["text"]


async def test_empty_mention_gets_help_in_the_thread(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    await post_event(client, mention("<@UBOT>"))
    await runtime.work.drain(timeout=5)
    assert summarizer.calls == [] and "--public" in posted(httpx_mock, POST_MESSAGE_URL)[0]["text"]


async def test_a_retried_event_is_acked_and_processed_once(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    payload = mention(f"<@UBOT> {ARTICLE_URL}", event_id="EvRetry")
    first = await post_event(client, payload)
    retry = await post_event(client, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status_code == retry.status_code == 200 and retry.json()["duplicate"] is True
    await runtime.work.drain(timeout=5)
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, POST_MESSAGE_URL)) == 1


@pytest.mark.parametrize(
    "event",
    [
        {"bot_id": "B1"},  # our own reply coming back: answering would loop
        {"subtype": "message_changed"},
        {"type": "message", "channel_type": "channel"},  # plain channel chatter
        {"type": "reaction_added"},
    ],
)
async def test_other_events_are_acked_and_ignored(
    client: httpx.AsyncClient, summarizer: FakeSummarizer, runtime: SlackRuntime, event: dict[str, str]
) -> None:
    response = await post_event(client, mention(ARTICLE_URL, event_id="Ev-" + "-".join(event.values()), **event))
    assert response.status_code == 200 and "ignored" in response.json()
    assert runtime.work.pending == 0 and summarizer.calls == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"", b"\xff\xfe"])
async def test_junk_event_bodies_never_500(client: httpx.AsyncClient, body: bytes) -> None:
    try:
        headers = sign(body)
    except UnicodeDecodeError:  # slack_sdk cannot sign non-UTF-8; Slack never sends it
        headers = {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0=" + "0" * 64}
    response = await client.post("/slack/events", content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code in (400, 401)
    assert response.headers["content-type"] == "application/problem+json"


async def test_events_without_a_bot_token_are_acked_but_skipped(
    settings: Settings, summarizer: FakeSummarizer, runtime: SlackRuntime
) -> None:
    app = make_app(make_settings(slack_bot_token=None), summarizer, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        response = await post_event(client, mention(f"<@UBOT> {ARTICLE_URL}"))
    assert response.status_code == 200 and summarizer.calls == []


# --- pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url", "text", "visibility", "policy", "wants_help"),
    [
        ("<https://a.example/x?y=1&amp;z=2>", "https://a.example/x?y=1&z=2", None, None, None, False),
        ("<https://a.example/x|a.example/x>", "https://a.example/x", None, None, None, False),
        ("--private --flag https://a.example/x.", "https://a.example/x", None, "ephemeral", "flag", False),
        ("<@U123> please summarize https://a.example/x", "https://a.example/x", None, None, None, False),
        ("--public", None, None, "in_channel", None, True),
        ("help", None, None, None, None, True),
        ("", None, None, None, None, True),
        (
            "Some article text &lt;quoted&gt; " * 20,
            None,
            ("Some article text <quoted> " * 20).strip(),
            None,
            None,
            False,
        ),
    ],
)
def test_parse_text(
    raw: str, url: str | None, text: str | None, visibility: str | None, policy: str | None, wants_help: bool
) -> None:
    parsed = parse_text(raw)
    assert (parsed.url, parsed.text, parsed.visibility, parsed.policy, parsed.wants_help) == (
        url, text, visibility, policy, wants_help,
    )  # fmt: skip


async def test_dedupe_store_forgets_after_the_ttl() -> None:
    now = [0.0]
    store = MemoryDedupeStore(ttl_s=300, clock=lambda: now[0], max_keys=2)
    assert await store.first_seen("a") and not await store.first_seen("a")
    now[0] = 301
    assert await store.first_seen("a")
    assert await store.first_seen("b") and await store.first_seen("c")
    assert await store.first_seen("a")  # the size cap forgot the oldest


async def test_background_work_is_bounded_and_tracked() -> None:
    work = BackgroundWork(concurrency=2, max_pending=10)
    gate, running, peak = asyncio.Event(), [0], [0]

    async def job() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await gate.wait()
        running[0] -= 1

    for i in range(5):
        assert work.start(job(), request_id=f"r{i}")
    for _ in range(20):
        await asyncio.sleep(0)  # let every task reach the semaphore
    assert peak[0] == 2 and work.pending == 5
    gate.set()
    await work.drain(timeout=5)
    assert work.pending == 0 and peak[0] == 2


# --- end to end: the seed article through /summarize on the embedded default (no LLM) ----------


async def test_seed_article_through_summarize_end_to_end(
    httpx_mock: HTTPXMock, settings: Settings, runtime: SlackRuntime, seed_text: str
) -> None:
    app = create_app(settings)  # the whole service, no LLM configured: the embedded default
    app.dependency_overrides[get_slack_runtime] = lambda: runtime  # the real summarizer: no override
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        ack = await post_command(client, command_body("--public " + seed_text))
    assert ack.status_code == 200 and "Summarizing the pasted text" in ack.json()["text"]
    assert ack.headers["x-request-id"]  # the app's middleware; the same id is in every log line of the work
    await runtime.work.drain(timeout=60)

    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert message["response_type"] == "in_channel"
    assert_valid_block_kit(message)
    sentences = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and b["text"]["text"][:1] == "*"
                 and b["text"]["text"][1:2].isdigit()]  # fmt: skip
    assert len(sentences) >= 3
    for section in sentences:
        first, *evidence = section.split("\n")
        assert re.fullmatch(r"\*\d+\.\* .+ \[\d+\]( \[\d+\])*", first), first  # numbered citations
        assert evidence and all(re.match(r">\[\d+\] _s\d+_: ", line) for line in evidence)  # evidence by id
    assert "Putin Has No Good Options" in message["blocks"][0]["text"]["text"]
    assert "embedded" in json.dumps(message["blocks"][-1])


async def test_background_work_waits_for_the_ack_to_be_sent() -> None:
    work = BackgroundWork(concurrency=1, max_pending=1)
    acked, ran = asyncio.Event(), []

    async def job() -> None:
        ran.append(True)

    assert work.start(job(), request_id="r1", after=acked)
    for _ in range(20):
        await asyncio.sleep(0)
    assert ran == [] and work.pending == 1
    assert not work.start(job(), request_id="r2")  # max_pending reached: refused, coroutine closed
    acked.set()
    await work.drain(timeout=5)
    assert ran == [True] and work.pending == 0
