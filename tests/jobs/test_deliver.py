"""Delivery to chat: host allow-list, retries on transient failures only, text fallback, chat.postMessage."""

from __future__ import annotations

import json

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.jobs.deliver import (
    DeliveryError,
    MessageNotUpdated,
    TargetNotAllowed,
    check_target,
    post_chat_message,
    post_incoming_webhook,
    post_to_response_url,
    update_chat_message,
)

RESPONSE_URL = "https://hooks.slack.com/commands/T1/123/abc"
MESSAGE = {"text": "fallback", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}


@pytest.fixture
def settings() -> Settings:
    return Settings(
        slack_bot_token="xoxb-test",
        slack_delivery_attempts=3,
        slack_delivery_backoff_initial_s=0.0,
        slack_delivery_backoff_max_s=0.0,
        incoming_webhook_url="https://chat.example.org/hooks/xyz",
    )


def sent_json(request: httpx.Request) -> dict:
    return json.loads(request.content)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/commands/T1/1/x",
        "https://HOOKS.slack.com/commands/T1/1/x",
        "https://hooks.slack.com:443/commands/T1/1/x",
    ],
)
def test_allowed_targets(url: str) -> None:
    assert check_target(url, ["hooks.slack.com"]) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/commands",
        "https://hooks.slack.com.evil.example.com/x",
        "https://hooks.slack.com@evil.example.com/x",
        "https://evil.example.com/?next=hooks.slack.com",
        "http://hooks.slack.com/commands/T1/1/x",  # https only off loopback
        "ftp://hooks.slack.com/x",
        "",
        "not a url",
        "https://[::1/x",
        # urlsplit drops tabs and newlines (so these looked like hooks.slack.com); httpx refuses them
        "https://hooks.slack.com/commands/T1/\t123",
        "https://ho\toks.slack.com/commands/T1/1/x",
        "https://hooks.slack.com\n/commands/T1/1/x",
    ],
)
def test_refused_targets(url: str) -> None:
    with pytest.raises(TargetNotAllowed):
        check_target(url, ["hooks.slack.com"])


def test_http_is_allowed_on_loopback_only_when_listed() -> None:
    assert check_target("http://127.0.0.1:9999/hook", ["127.0.0.1"])
    with pytest.raises(TargetNotAllowed):
        check_target("http://127.0.0.1:9999/hook", ["hooks.slack.com"])


async def test_response_url_post(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with httpx.AsyncClient() as client:
        await post_to_response_url(client, RESPONSE_URL, MESSAGE, settings=settings, response_type="in_channel")
    body = sent_json(httpx_mock.get_request())
    assert body == {"response_type": "in_channel", "text": "fallback", "blocks": MESSAGE["blocks"]}


async def test_refused_host_sends_nothing(httpx_mock: HTTPXMock, settings: Settings) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(TargetNotAllowed):
            await post_to_response_url(client, "https://evil.example.com/x", MESSAGE, settings=settings)
    assert httpx_mock.get_requests() == []


async def test_transient_failures_are_retried(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=RESPONSE_URL)
    httpx_mock.add_response(url=RESPONSE_URL, status_code=429, headers={"Retry-After": "1"})
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with httpx.AsyncClient() as client:
        response = await post_to_response_url(client, RESPONSE_URL, MESSAGE, settings=settings)
    assert response.status_code == 200
    assert len(httpx_mock.get_requests()) == 3


async def test_retries_stop_after_the_attempt_limit(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, status_code=503, is_reusable=True)
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as caught:
            await post_to_response_url(client, RESPONSE_URL, MESSAGE, settings=settings)
    assert caught.value.attempts == 3 and caught.value.status == 503
    assert len(httpx_mock.get_requests()) == 3


async def test_expired_response_url_is_not_retried(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, status_code=404, text="expired_url")
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError, match="expired_url") as caught:
            await post_to_response_url(client, RESPONSE_URL, MESSAGE, settings=settings)
    assert caught.value.attempts == 1


async def test_refused_blocks_fall_back_to_plain_text(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url=RESPONSE_URL, status_code=400, text="invalid_blocks")
    httpx_mock.add_response(url=RESPONSE_URL, text="ok")
    async with httpx.AsyncClient() as client:
        await post_to_response_url(client, RESPONSE_URL, MESSAGE, settings=settings)
    first, second = (sent_json(r) for r in httpx_mock.get_requests())
    assert "blocks" in first and "blocks" not in second and second["text"] == "fallback"


async def test_chat_post_message_thread_reply(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url="https://slack.com/api/chat.postMessage", json={"ok": True, "ts": "2.0"})
    async with httpx.AsyncClient() as client:
        data = await post_chat_message(client, MESSAGE, settings=settings, channel="C1", thread_ts="1.0")
    assert data["ok"] is True
    request = httpx_mock.get_request()
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    body = sent_json(request)
    assert body["channel"] == "C1" and body["thread_ts"] == "1.0" and body["blocks"] == MESSAGE["blocks"]


async def test_chat_post_message_error_is_final(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(
        url="https://slack.com/api/chat.postMessage", json={"ok": False, "error": "channel_not_found"}
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError, match="channel_not_found"):
            await post_chat_message(client, MESSAGE, settings=settings, channel="C1")
    assert len(httpx_mock.get_requests()) == 1


async def test_chat_post_message_needs_a_bot_token(httpx_mock: HTTPXMock) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError, match="SLACK_BOT_TOKEN"):
            await post_chat_message(client, MESSAGE, settings=Settings(), channel="C1")
    assert httpx_mock.get_requests() == []


UPDATE_URL = "https://slack.com/api/chat.update"


async def test_chat_update_replaces_text_and_blocks(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url=UPDATE_URL, json={"ok": True, "channel": "C1", "ts": "2.0"})
    async with httpx.AsyncClient() as client:
        data = await update_chat_message(client, MESSAGE, settings=settings, channel="C1", ts="2.0")
    assert data["ts"] == "2.0"
    request = httpx_mock.get_request()
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    assert sent_json(request) == {"channel": "C1", "ts": "2.0", "text": "fallback", "blocks": MESSAGE["blocks"]}


@pytest.mark.parametrize("error", ["message_not_found", "cant_update_message", "edit_window_closed"])
async def test_chat_update_refused_for_good_says_so(httpx_mock: HTTPXMock, settings: Settings, error: str) -> None:
    httpx_mock.add_response(url=UPDATE_URL, json={"ok": False, "error": error})
    async with httpx.AsyncClient() as client:
        with pytest.raises(MessageNotUpdated, match=error):
            await update_chat_message(client, MESSAGE, settings=settings, channel="C1", ts="2.0")
    assert len(httpx_mock.get_requests()) == 1  # final: not retried


async def test_chat_update_still_failing_after_retries_is_not_a_refusal(
    httpx_mock: HTTPXMock, settings: Settings
) -> None:
    # It may have landed: the caller must not post a second message.
    httpx_mock.add_response(url=UPDATE_URL, status_code=503, is_reusable=True)
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as caught:
            await update_chat_message(client, MESSAGE, settings=settings, channel="C1", ts="2.0")
    assert not isinstance(caught.value, MessageNotUpdated) and len(httpx_mock.get_requests()) == 3


async def test_chat_update_with_refused_blocks_clears_them_and_sends_the_text(
    httpx_mock: HTTPXMock, settings: Settings
) -> None:
    httpx_mock.add_response(url=UPDATE_URL, json={"ok": False, "error": "invalid_blocks"})
    httpx_mock.add_response(url=UPDATE_URL, json={"ok": True, "ts": "2.0"})
    async with httpx.AsyncClient() as client:
        await update_chat_message(client, MESSAGE, settings=settings, channel="C1", ts="2.0")
    first, second = (sent_json(r) for r in httpx_mock.get_requests())
    # chat.update keeps blocks that are left out, so the text-only retry sends an empty list.
    assert first["blocks"] == MESSAGE["blocks"] and second["blocks"] == [] and second["text"] == "fallback"


async def test_incoming_webhook_gets_slack_compatible_json(httpx_mock: HTTPXMock, settings: Settings) -> None:
    httpx_mock.add_response(url="https://chat.example.org/hooks/xyz", text="ok")
    async with httpx.AsyncClient() as client:
        await post_incoming_webhook(client, {"response_type": "in_channel", **MESSAGE}, settings=settings)
    assert sent_json(httpx_mock.get_request()) == MESSAGE


async def test_incoming_webhook_needs_a_url(httpx_mock: HTTPXMock) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError, match="CITESUM_INCOMING_WEBHOOK_URL"):
            await post_incoming_webhook(client, MESSAGE, settings=Settings())
