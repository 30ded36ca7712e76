"""The chat routes: signed Slack requests in, an instant ack, the summary as a job, posted to the response_url or thread."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from pytest_httpx import HTTPXMock
from slack_sdk.signature import SignatureVerifier

from service.core.config import Settings
from service.core.errors import LLMUnavailable
from service.core.schema import SummaryRequest, SummaryResponse
from service.interfaces import jobs_api
from service.interfaces.api import create_app
from service.interfaces.problems import install_problem_handlers
from service.interfaces.signature import Clock
from service.interfaces.slack import get_slack_clock, parse_text, router
from service.pipeline.streaming import StreamEvent
from tests.growth import Case, super_linear
from tests.pipeline.test_render_slack import assert_valid_block_kit, make_response

SECRET = "test-signing-secret"
NOW = 1_700_000_000
RESPONSE_URL = "https://hooks.slack.com/commands/T1/123/abc"
POST_MESSAGE_URL = "https://slack.com/api/chat.postMessage"
UPDATE_URL = "https://slack.com/api/chat.update"
ARTICLE_URL = "https://news.example.com/belarus"


class FixedClock(Clock):
    def now(self) -> float:
        return NOW


class FakeSummarizer:
    """The jobs' summarize entry point: records calls; can wait on a gate (a slow LLM) or raise (a failing one)."""

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

    async def __call__(self, request: SummaryRequest, *, settings: Settings, **_: Any) -> SummaryResponse:
        self.calls.append(request)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.finished = True
        if self.error is not None:
            raise self.error
        return self.response


def make_settings(**changes: Any) -> Settings:
    """Test settings: signed Slack, a bot token, instant retries, a second allowed host (Mattermost).

    The result cache is off so that every job's summarizer call shows; the job store is the test's own
    SQLite file (conftest sets CITESUM_JOB_DB_PATH).
    """
    values: dict[str, Any] = {
        "slack_signing_secret": SECRET,
        "slack_bot_token": "xoxb-test",
        "slack_delivery_attempts": 3,
        "slack_delivery_backoff_initial_s": 0.0,
        "slack_delivery_backoff_max_s": 0.0,
        "slack_response_hosts": ["hooks.slack.com", "mm.example.org"],
        "cache_enabled": False,
        "job_retry_backoff_s": 0.0,
    }
    return Settings(**{**values, **changes})


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def summarizer() -> FakeSummarizer:
    return FakeSummarizer()


def make_app(settings: Settings, summarizer: FakeSummarizer, *, jobs: bool = True) -> FastAPI:
    """The chat routes with the job system (SQLite store, in-process worker) running the fake summarizer."""
    app = FastAPI()
    app.state.settings = settings
    app.state.job_summarizer = summarizer
    install_problem_handlers(app)
    if jobs:
        app.include_router(jobs_api.router)
    app.include_router(router)
    app.dependency_overrides[get_slack_clock] = FixedClock
    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (the job backend and worker), and a client for it."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        yield client


@pytest.fixture
def app(settings: Settings, summarizer: FakeSummarizer) -> FastAPI:
    return make_app(settings, summarizer)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as client:
        yield client


async def job_statuses(app: FastAPI) -> list[str]:
    """The status of every job in the app's store, oldest first."""
    store = app.state.jobs.store
    rows = await store.db.run(lambda conn: conn.execute("SELECT status FROM jobs ORDER BY created_at").fetchall())
    return [row["status"] for row in rows]


async def settle(app: FastAPI, timeout_s: float = 10.0) -> list[str]:
    """Wait until every job has finished (its callback is sent before it is recorded finished)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = await job_statuses(app)
        if all(status in ("succeeded", "failed") for status in statuses):
            return statuses
        await asyncio.sleep(0.02)
    raise AssertionError(f"jobs still unfinished: {await job_statuses(app)}")


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
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    response = await post_command(client, command_body(f"<{ARTICLE_URL}>"))
    assert response.status_code == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral" and "Summarizing" in ack["text"]
    assert await settle(app) == ["succeeded"]

    assert [str(call.url) for call in summarizer.calls] == [ARTICLE_URL]
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert message["response_type"] == "in_channel"
    assert_valid_block_kit(message)
    text = json.dumps(message["blocks"])
    assert "Putin has three options. [1]" in text and "Annexation is one. [1] [2]" in text
    assert "One is annexation." in text and ARTICLE_URL in text
    assert "1 unsupported sentence dropped" in text


async def test_ack_returns_before_a_slow_summary_is_done(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    summarizer.gate = asyncio.Event()
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    response = await post_command(client, command_body(ARTICLE_URL))
    assert response.status_code == 200 and "Summarizing" in response.json()["text"]
    await asyncio.wait_for(summarizer.started.wait(), timeout=5)
    assert not summarizer.finished and httpx_mock.get_requests() == []
    assert await job_statuses(app) == ["running"]  # accepted, stored, and being worked on

    summarizer.gate.set()
    await settle(app)
    assert summarizer.finished and len(posted(httpx_mock, RESPONSE_URL)) == 1


async def test_a_failing_summary_reaches_the_user_as_an_ephemeral_message(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    summarizer.error = LLMUnavailable("the language model is unavailable after 4 attempts; try again later")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    await post_command(client, command_body("--public " + ARTICLE_URL))
    assert await settle(app) == ["failed"]
    assert len(summarizer.calls) == 3  # upstream trouble is retried (CITESUM_JOB_MAX_ATTEMPTS), told once
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert message["response_type"] == "ephemeral"  # an error is never posted to the channel
    assert "couldn't summarize" in message["text"] and "unavailable after 4 attempts" in message["text"]
    assert "request id" in json.dumps(message["blocks"])


async def test_an_unexpected_crash_still_tells_the_user(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    summarizer.error = RuntimeError("boom")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    await post_command(client, command_body(ARTICLE_URL))
    await settle(app)
    (message,) = posted(httpx_mock, RESPONSE_URL)
    assert "Something went wrong" in message["text"] and "boom" not in json.dumps(message)
    assert message["response_type"] == "ephemeral"
    assert "request id" in json.dumps(message["blocks"])


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda body: {}, "missing"),
        (lambda body: sign(body, secret="wrong-secret"), "signature mismatch"),
        (lambda body: sign(body, timestamp=NOW - 301), "stale"),
        (lambda body: sign(body + b"&text=other"), "signature mismatch"),
        (lambda body: {**sign(body), "X-Slack-Request-Timestamp": "not-a-number"}, "malformed"),
        # Past Python's int-conversion limit (4,300 digits): int() raises, which was a 500.
        (lambda body: {**sign(body), "X-Slack-Request-Timestamp": "9" * 5000}, "malformed"),
        # A non-ASCII byte: hmac.compare_digest raises TypeError on non-ASCII str, which was a 500.
        (lambda body: {**sign(body), "X-Slack-Signature": sign(body)["X-Slack-Signature"][:-1].encode() + b"\xe9"},
         "malformed"),
    ],
    ids=["unsigned", "forged", "stale", "changed-body", "junk-timestamp", "huge-timestamp", "non-ascii-signature"],
)
async def test_unsigned_forged_or_stale_commands_get_401_and_no_work(
    app: FastAPI,
    client: httpx.AsyncClient,
    summarizer: FakeSummarizer,
    caplog: pytest.LogCaptureFixture,
    make_headers: Any,
    reason: str,
) -> None:
    body = command_body(ARTICLE_URL)
    with caplog.at_level(logging.WARNING, logger="service.interfaces.slack"):
        response = await post_command(client, body, make_headers(body))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401 and reason in problem["detail"] and problem["request_id"]
    assert any("refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    assert await job_statuses(app) == [] and summarizer.calls == []


async def test_no_signing_secret_refuses_everything(summarizer: FakeSummarizer) -> None:
    app = make_app(make_settings(slack_signing_secret=None), summarizer)  # SLACK_SIGNING_SECRET unset
    async with serving(app) as client:
        body = command_body(ARTICLE_URL)
        response = await post_command(client, body)
        assert response.status_code == 401 and "SLACK_SIGNING_SECRET" in response.json()["detail"]
        event = await post_event(client, {"type": "url_verification", "challenge": "abc"})
        assert event.status_code == 401
        assert await job_statuses(app) == []
    assert summarizer.calls == []


async def test_a_replayed_or_retried_command_runs_once(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    body = command_body(ARTICLE_URL)
    first = await post_command(client, body)
    replay = await post_command(client, body, {**sign(body), "X-Slack-Retry-Num": "1"})
    assert first.status_code == replay.status_code == 200
    assert "Already working" in replay.json()["text"]
    assert await settle(app) == ["succeeded"]  # one job for both
    late = await post_command(client, body, {**sign(body), "X-Slack-Retry-Num": "2"})  # after it is done, too
    assert "Already working" in late.json()["text"]
    await settle(app)
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, RESPONSE_URL)) == 1

    httpx_mock.add_response(url=RESPONSE_URL, text="ok")  # a new invocation (new trigger_id) runs again
    await post_command(client, command_body(ARTICLE_URL, trigger_id="789.000.def"))
    assert await settle(app) == ["succeeded", "succeeded"]
    assert len(summarizer.calls) == 2


async def test_a_retry_after_a_restart_maps_to_the_same_job(
    settings: Settings, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    body = command_body(ARTICLE_URL)
    first_app = make_app(settings, summarizer)
    async with serving(first_app) as client:
        assert "Summarizing" in (await post_command(client, body)).json()["text"]
        await settle(first_app)
    # The process is gone; a new one opens the same job store and gets Slack's retry of the same command.
    second_app = make_app(settings, summarizer)
    async with serving(second_app) as client:
        retry = await post_command(client, body, {**sign(body), "X-Slack-Retry-Num": "1"})
        assert await settle(second_app) == ["succeeded"]
    assert retry.status_code == 200 and "Already working" in retry.json()["text"]
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, RESPONSE_URL)) == 1


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", "--public", "--loud https://x.example"])
async def test_help_and_empty_text_get_help(
    app: FastAPI, client: httpx.AsyncClient, summarizer: FakeSummarizer, text: str
) -> None:
    response = await post_command(client, command_body(text))
    assert response.status_code == 200
    message = response.json()
    assert message["response_type"] == "ephemeral" and "/summarize" in message["text"]
    assert summarizer.calls == [] and await job_statuses(app) == []
    if text.startswith("--loud"):
        assert "Unknown option --loud" in message["text"]


@pytest.mark.parametrize(
    ("flag", "default", "expected"),
    [("", "in_channel", "in_channel"), ("--private ", "in_channel", "ephemeral"), ("--public ", "ephemeral", "in_channel"),
     ("", "ephemeral", "ephemeral")],
)  # fmt: skip
async def test_visibility_setting_and_flags(
    httpx_mock: HTTPXMock, summarizer: FakeSummarizer, flag: str, default: str, expected: str
) -> None:
    app = make_app(make_settings(slack_response_type=default), summarizer)
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with serving(app) as client:
        await post_command(client, command_body(flag + ARTICLE_URL))
        await settle(app)
    assert posted(httpx_mock, RESPONSE_URL)[0]["response_type"] == expected


async def test_policy_flag_and_pasted_text_reach_the_pipeline(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    article = "Minsk &amp; Moscow signed a treaty in 1999. " * 10
    await post_command(client, command_body("--flag " + article))
    await settle(app)
    (call,) = summarizer.calls
    assert call.policy == "flag" and call.url is None and call.text.startswith("Minsk & Moscow signed")


@pytest.mark.parametrize(
    "response_url",
    ["https://evil.example.com/steal", RESPONSE_URL.replace("/commands/", "/commands/\t"), "https://ho\toks.slack.com/x"],
    ids=["other-host", "tab-in-path", "tab-in-host"],
)
async def test_response_url_outside_the_allow_list_is_refused(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer, response_url: str
) -> None:
    # A tab passed urlsplit (which drops it) but not httpx: the job ran, delivery raised InvalidURL
    # and the job stayed `running`. Now it is refused up front like any URL httpx cannot send.
    response = await post_command(client, command_body(ARTICLE_URL, response_url=response_url))
    assert response.status_code == 200 and "can't reply" in response.json()["text"]
    assert summarizer.calls == [] and httpx_mock.get_requests() == [] and await job_statuses(app) == []


async def test_an_invalid_link_gets_help_not_an_error(client: httpx.AsyncClient, summarizer: FakeSummarizer) -> None:
    response = await post_command(client, command_body("https://"))
    assert response.status_code == 200 and summarizer.calls == []


async def test_concurrency_is_bounded_and_excess_work_waits_in_the_queue(
    httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    app = make_app(make_settings(job_concurrency=1), summarizer)
    summarizer.gate = asyncio.Event()
    httpx_mock.add_response(url=RESPONSE_URL, text="ok", is_reusable=True)
    async with serving(app) as client:
        first = await post_command(client, command_body(ARTICLE_URL))
        second = await post_command(client, command_body(ARTICLE_URL, trigger_id="second"))
        assert "Summarizing" in first.json()["text"] and "Summarizing" in second.json()["text"]
        await asyncio.wait_for(summarizer.started.wait(), timeout=5)
        assert sorted(await job_statuses(app)) == ["queued", "running"] and len(summarizer.calls) == 1
        summarizer.gate.set()
        assert await settle(app) == ["succeeded", "succeeded"]
    assert len(summarizer.calls) == 2 and len(posted(httpx_mock, RESPONSE_URL)) == 2


async def test_without_the_job_system_the_user_is_told_not_left_waiting(
    httpx_mock: HTTPXMock, settings: Settings, summarizer: FakeSummarizer
) -> None:
    app = make_app(settings, summarizer, jobs=False)  # an app built without the jobs router
    async with serving(app) as client:
        response = await post_command(client, command_body(ARTICLE_URL))
        event = await post_event(client, mention(f"<@UBOT> {ARTICLE_URL}"))
        # Not even help: with nowhere to record it, a retried mention could not be told from a new one.
        help_event = await post_event(client, mention("<@UBOT>", event_id="EvHelp"))
    assert response.status_code == 200 and "unavailable right now" in response.json()["text"]
    assert event.status_code == 200 and event.json()["ignored"] == "job system unavailable"
    assert help_event.json()["ignored"] == "job system unavailable"
    assert summarizer.calls == [] and httpx_mock.get_requests() == []


async def test_public_summaries_are_mirrored_to_the_incoming_webhook(
    httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    app = make_app(make_settings(incoming_webhook_url="https://mm.example.org/hooks/abc"), summarizer)
    httpx_mock.add_response(url=RESPONSE_URL, text="ok", is_reusable=True)
    httpx_mock.add_response(url="https://mm.example.org/hooks/abc", text="ok")
    async with serving(app) as client:
        await post_command(client, command_body("--public " + ARTICLE_URL))
        await post_command(client, command_body("--private " + ARTICLE_URL, trigger_id="private-one"))
        await settle(app)
    (mirrored,) = posted(httpx_mock, "https://mm.example.org/hooks/abc")  # the private one is not copied
    assert "response_type" not in mirrored and "Putin has three options" in mirrored["text"]


# --- Mattermost ------------------------------------------------------------------------------


async def test_mattermost_command_with_token(httpx_mock: HTTPXMock, summarizer: FakeSummarizer) -> None:
    app = make_app(make_settings(mattermost_token="mm-token", slack_signing_secret=None), summarizer)
    mm_url = "https://mm.example.org/hooks/commands/xyz"
    httpx_mock.add_response(url=mm_url, text="ok")
    async with serving(app) as client:
        form = {"token": "mm-token", "text": ARTICLE_URL, "response_url": mm_url, "trigger_id": "t1"}
        ok = await client.post("/mattermost/commands", data=form)
        again = await client.post("/mattermost/commands", data=form)  # a re-sent command: the same job
        wrong = await client.post("/mattermost/commands", data={**form, "token": "nope", "trigger_id": "t2"})
        header = await client.post(
            "/mattermost/commands",
            data={**form, "token": "", "trigger_id": "t3"},
            headers={"Authorization": "Token nope"},
        )
        slack = await post_command(client, command_body(ARTICLE_URL))  # the Slack door stays shut
        assert await settle(app) == ["succeeded"]
    assert ok.status_code == 200 and "Summarizing" in ok.json()["text"]
    assert "Already working" in again.json()["text"]
    assert wrong.status_code == header.status_code == slack.status_code == 401
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


@pytest.mark.parametrize(
    "bad_header",
    [{"X-Slack-Request-Timestamp": "9" * 5000}, {"X-Slack-Signature": b"v0=\xe9"}],
    ids=["huge-timestamp", "non-ascii-signature"],
)
async def test_junk_signature_headers_on_events_get_401(
    client: httpx.AsyncClient, summarizer: FakeSummarizer, bad_header: dict[str, Any]
) -> None:
    body = json.dumps(mention(f"<@UBOT> {ARTICLE_URL}")).encode()
    response = await client.post(
        "/slack/events", content=body, headers={**sign(body), **bad_header, "Content-Type": "application/json"}
    )
    assert response.status_code == 401 and "malformed" in response.json()["detail"]
    assert summarizer.calls == []


async def test_unsigned_event_is_refused(client: httpx.AsyncClient, summarizer: FakeSummarizer) -> None:
    body = json.dumps(mention(f"<@UBOT> {ARTICLE_URL}")).encode()
    response = await client.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and summarizer.calls == []


async def test_mention_with_a_link_gets_a_thread_reply(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True, "ts": "1700000001.000200"})
    response = await post_event(client, mention(f"<@UBOT> summarize <{ARTICLE_URL}|news.example.com>"))
    assert response.status_code == 200
    assert await settle(app) == ["succeeded"]
    assert [str(call.url) for call in summarizer.calls] == [ARTICLE_URL]
    (reply,) = posted(httpx_mock, POST_MESSAGE_URL)
    assert reply["channel"] == "C1" and reply["thread_ts"] == "1700000000.000100"
    assert_valid_block_kit(reply)
    assert "Putin has three options. [1]" in json.dumps(reply["blocks"])
    assert httpx_mock.get_request(url=POST_MESSAGE_URL).headers["Authorization"] == "Bearer xoxb-test"


async def test_a_mention_inside_a_thread_replies_in_that_thread(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    await post_event(client, mention(f"<@UBOT> {ARTICLE_URL}", thread_ts="1699999999.000001"))
    await settle(app)
    assert posted(httpx_mock, POST_MESSAGE_URL)[0]["thread_ts"] == "1699999999.000001"


async def test_direct_message_gets_a_reply_and_failures_are_reported(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    summarizer.error = LLMUnavailable("the language model is unavailable")
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    payload = mention(ARTICLE_URL, event_id="Ev2", type="message", channel_type="im", channel="D1")
    await post_event(client, payload)
    assert await settle(app) == ["failed"]
    (reply,) = posted(httpx_mock, POST_MESSAGE_URL)
    assert reply["channel"] == "D1" and "unavailable" in reply["text"]


async def test_empty_mention_gets_help_in_the_thread(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    await post_event(client, mention("<@UBOT>"))
    # No summary ran: the only job is the finished record of the reply, which dedupes Slack's retries.
    assert summarizer.calls == [] and await job_statuses(app) == ["succeeded"]
    (reply,) = posted(httpx_mock, POST_MESSAGE_URL)
    assert "--public" in reply["text"] and reply["thread_ts"] == "1700000000.000100"


async def test_a_retried_help_mention_is_answered_once(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True}, is_reusable=True)
    payload = mention("<@UBOT> help", event_id="EvHelp")
    first = await post_event(client, payload)
    retry = await post_event(client, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    other = await post_event(client, mention("<@UBOT>", event_id="EvHelp2", ts="1700000009.000900"))
    # One reply for the retried event, and another event still gets its own.
    replies = posted(httpx_mock, POST_MESSAGE_URL)
    assert [reply["thread_ts"] for reply in replies] == ["1700000000.000100", "1700000009.000900"]
    assert first.json() == other.json() == {"ok": True} and retry.json() == {"ok": True, "duplicate": True}


async def test_a_retried_event_is_acked_and_processed_once(
    app: FastAPI, client: httpx.AsyncClient, httpx_mock: HTTPXMock, summarizer: FakeSummarizer
) -> None:
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True})
    payload = mention(f"<@UBOT> {ARTICLE_URL}", event_id="EvRetry")
    first = await post_event(client, payload)
    retry = await post_event(client, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status_code == retry.status_code == 200 and retry.json()["duplicate"] is True
    assert await settle(app) == ["succeeded"]
    assert len(summarizer.calls) == 1 and len(posted(httpx_mock, POST_MESSAGE_URL)) == 1


class StreamingSummarizer(FakeSummarizer):
    """Reports each summary sentence as verified, `gap_s` apart, then answers `tail_s` later (a streamed LLM)."""

    gap_s, tail_s = 0.4, 0.8

    async def __call__(self, request: SummaryRequest, *, settings: Settings, events=None, **kwargs: Any):
        for sentence in self.response.summary:
            await asyncio.sleep(self.gap_s)
            if events is not None:
                events(StreamEvent("sentence", sentence.model_dump(mode="json")))
        await asyncio.sleep(self.tail_s)
        return await super().__call__(request, settings=settings, **kwargs)


@pytest.mark.parametrize("where", ["mention", "dm"])
async def test_a_mention_or_dm_gets_its_first_sentences_early_in_one_reply_updated_to_the_summary(
    httpx_mock: HTTPXMock, where: str
) -> None:
    summarizer = StreamingSummarizer()
    app = make_app(make_settings(chat_update_interval_s=0.6), summarizer)
    reply_ts = "1700000001.000200"
    httpx_mock.add_response(url=POST_MESSAGE_URL, json={"ok": True, "channel": "C1", "ts": reply_ts})
    httpx_mock.add_response(url=UPDATE_URL, json={"ok": True, "channel": "C1", "ts": reply_ts})
    extra = {"type": "message", "channel_type": "im"} if where == "dm" else {}
    payload = mention(f"<@UBOT> {ARTICLE_URL}", event_id="EvEarly", **extra)
    async with serving(app) as client:
        assert (await post_event(client, payload)).json() == {"ok": True}
        assert await settle(app) == ["succeeded"]
        retried = await post_event(client, payload, **{"X-Slack-Retry-Num": "1"})
    assert retried.json() == {"ok": True, "duplicate": True}
    calls = httpx_mock.get_requests()
    assert [str(call.url) for call in calls] == [POST_MESSAGE_URL, UPDATE_URL]  # one reply, then edited in place
    early, final = (json.loads(call.content) for call in calls)
    assert early["channel"] == "C1" and early["thread_ts"] == "1700000000.000100"
    assert "Putin has three options." in early["text"] and "checked against the source so far" in early["text"]
    assert final["channel"] == "C1" and final["ts"] == reply_ts and "thread_ts" not in final
    assert_valid_block_kit(final)
    assert "Putin has three options. [1]" in json.dumps(final["blocks"]) and "so far" not in final["text"]
    assert all(call.headers["Authorization"] == "Bearer xoxb-test" for call in calls)


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
    app: FastAPI, client: httpx.AsyncClient, summarizer: FakeSummarizer, event: dict[str, str]
) -> None:
    response = await post_event(client, mention(ARTICLE_URL, event_id="Ev-" + "-".join(event.values()), **event))
    assert response.status_code == 200 and "ignored" in response.json()
    assert await job_statuses(app) == [] and summarizer.calls == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"", b"\xff\xfe"])
async def test_junk_event_bodies_never_500(client: httpx.AsyncClient, body: bytes) -> None:
    try:
        headers = sign(body)
    except UnicodeDecodeError:  # slack_sdk cannot sign non-UTF-8; Slack never sends it
        headers = {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0=" + "0" * 64}
    response = await client.post("/slack/events", content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code in (400, 401)
    assert response.headers["content-type"] == "application/problem+json"


async def test_events_without_a_bot_token_are_acked_but_skipped(summarizer: FakeSummarizer) -> None:
    app = make_app(make_settings(slack_bot_token=None), summarizer)
    async with serving(app) as client:
        response = await post_event(client, mention(f"<@UBOT> {ARTICLE_URL}"))
        assert await job_statuses(app) == []
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


@pytest.mark.parametrize(
    ("raw", "visibility", "policy", "text"),
    [
        ("--drop   --public \t word more", "in_channel", "drop", "word more"),  # any spaces after a flag
        ("--drop\tx", None, None, None),  # a flag ends at a space: "--drop\tx" is unknown -> help
        ("--repair", None, "repair", None),
    ],
)
def test_parse_text_reads_flags_by_position(raw: str, visibility: str | None, policy: str | None, text: str | None) -> None:
    parsed = parse_text(raw)
    assert (parsed.visibility, parsed.policy, parsed.text) == (visibility, policy, text)


@pytest.mark.parametrize(
    "pump",
    ["<http:a", "<http:a|", "<@", "<#C1|", "<!", "<mailto:a", "--drop ", "--flag --public ", "https://a.example/ ", "&lt;", " "],
)
def test_parse_text_grows_linearly(pump: str) -> None:
    """Issue 19: 40k characters of "<@" took 9 s on the event loop (each "<" rescanned the rest)."""
    small, large = pump * (4_000 // len(pump)) + "x", pump * (32_000 // len(pump)) + "x"
    assert super_linear([Case(pump, parse_text, small, large)]) == []


# --- end to end: the seed article through /summarize on the embedded default (no LLM) ----------


async def test_seed_article_through_summarize_end_to_end(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    app = create_app(settings)  # the whole service, no LLM configured: the embedded default, run as a job
    app.dependency_overrides[get_slack_clock] = FixedClock
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with serving(app) as client:
        ack = await post_command(client, command_body("--public " + seed_text))
        assert ack.status_code == 200 and "Summarizing the pasted text" in ack.json()["text"]
        assert ack.headers["x-request-id"]  # the app's middleware; the job's callback log line carries it
        assert await settle(app, timeout_s=60) == ["succeeded"]

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
