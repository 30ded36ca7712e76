"""Post messages to chat: a slash command's `response_url`, Slack's `chat.postMessage`, incoming webhooks.

Retries: one tenacity policy per send owns transport failures (connection errors, timeouts, 408, 429,
5xx), with exponential backoff and jitter, `Retry-After` honoured, bounded by `slack_delivery_attempts`
and a deadline (for a `response_url`, the time it stays valid: Slack allows 30 minutes and 5 uses).
Other 4xx answers and Slack's `{"ok": false}` are final. If Slack refuses the blocks themselves, the
plain `text` is sent once instead, so the user still gets the summary.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_exponential_jitter

from service.core.config import Settings

__all__ = [
    "DeliveryError",
    "MessageNotUpdated",
    "TargetNotAllowed",
    "check_target",
    "delete_response_url_message",
    "parse_target",
    "post_chat_message",
    "post_incoming_webhook",
    "post_to_response_url",
    "update_chat_message",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 429}
LOOPBACK_NAMES = {"localhost"}


class DeliveryError(Exception):
    """A message could not be delivered; `attempts` says how hard we tried."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after


class TargetNotAllowed(DeliveryError):
    """The URL's host is not on the allow-list (or its scheme is not https), so nothing was sent."""


class MessageNotUpdated(DeliveryError):
    """chat.update refused for good (the message was deleted, can no longer be edited, …): post anew instead."""


class _Retryable(DeliveryError):
    """A transient answer (408, 429, 5xx) worth another attempt."""


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(url: str) -> httpx.URL:
    """The URL exactly as the HTTP client will send it, or TargetNotAllowed.

    Checks must read the URL the way httpx does: `urlsplit` silently drops tabs and newlines
    ("https://ho\toks.slack.com/" passes as hooks.slack.com), while httpx refuses them with
    InvalidURL, which once escaped delivery and left a job running for ever.
    """
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise TargetNotAllowed(f"not a usable URL: {exc}") from exc


def check_target(url: str, allowed_hosts: list[str]) -> str:
    """Return the URL if its host is allowed (exact, case-insensitive) and it is https (http only on loopback)."""
    parts = parse_target(url)
    host = parts.host.lower()
    if not host or host not in {allowed.lower() for allowed in allowed_hosts}:
        raise TargetNotAllowed(f"host {host or '(none)'!r} is not in CITESUM_SLACK_RESPONSE_HOSTS")
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(host)):
        raise TargetNotAllowed(f"scheme {parts.scheme!r} refused: only https (http on loopback)")
    return url


def _wait(settings: Settings):
    initial = settings.slack_delivery_backoff_initial_s
    backoff = wait_exponential_jitter(multiplier=initial, jitter=initial, max=settings.slack_delivery_backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return min(float(asked), settings.slack_delivery_backoff_max_s) if asked is not None else backoff(state)

    return wait


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.TransportError)


def _raise_for_answer(response: httpx.Response) -> None:
    if response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
        raise _Retryable(
            f"HTTP {response.status_code}", status=response.status_code, retry_after=_retry_after(response)
        )
    if response.status_code >= 400:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}", status=response.status_code)
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            data = response.json()
        except ValueError:
            return
        if isinstance(data, dict) and data.get("ok") is False:
            error = str(data.get("error", "unknown_error"))
            if error == "ratelimited":
                raise _Retryable(error, status=response.status_code, retry_after=_retry_after(response))
            raise DeliveryError(error, status=response.status_code)


def _retry_after(response: httpx.Response) -> float | None:
    """Slack sends Retry-After in whole seconds; anything unparsable means "use our backoff"."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


async def _post(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    settings: Settings,
    headers: dict[str, str] | None = None,
    deadline_s: float | None = None,
    label: str,
) -> httpx.Response:
    deadline = min(deadline_s, settings.slack_delivery_deadline_s) if deadline_s else settings.slack_delivery_deadline_s
    attempts = 0
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.slack_delivery_attempts) | stop_before_delay(max(deadline, 0.0)),
        wait=_wait(settings),
        retry=retry_if_exception(_retryable),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "%s: attempt %d failed (%s); retrying", label, state.attempt_number, state.outcome.exception()
        ),
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                response = await client.post(url, json=payload, headers=headers)
                _raise_for_answer(response)
                return response
    except DeliveryError as exc:
        exc.attempts = attempts
        raise
    except httpx.TransportError as exc:
        raise DeliveryError(f"{label}: {type(exc).__name__}: {exc}", attempts=attempts) from exc
    raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or re-raises


def _text_only(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key != "blocks"}


async def _post_with_text_fallback(
    client: httpx.AsyncClient, url: str, message: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    try:
        return await _post(client, url, message, **kwargs)
    except DeliveryError as exc:
        refused_blocks = "blocks" in message and (exc.status == 400 or "invalid_blocks" in str(exc))
        if not refused_blocks:
            raise
        log.warning("%s: blocks refused (%s); sending the plain text instead", kwargs.get("label"), exc)
        return await _post(client, url, _text_only(message), **kwargs)


async def post_to_response_url(
    client: httpx.AsyncClient,
    response_url: str,
    message: dict[str, Any],
    *,
    settings: Settings,
    response_type: str = "ephemeral",
    deadline_s: float | None = None,
    replace_original: bool = False,
) -> httpx.Response:
    """Post a message to a slash command's response_url (allow-listed host), retrying while it stays valid.

    With `replace_original`, the message replaces the one last posted there (Slack's in-place update).
    """
    check_target(response_url, settings.slack_response_hosts)
    payload = {"response_type": response_type, **_text_only(message), "blocks": message.get("blocks", [])}
    if not payload["blocks"]:
        payload.pop("blocks")
    if replace_original:
        payload["replace_original"] = True
    return await _post_with_text_fallback(
        client, response_url, payload, settings=settings, deadline_s=deadline_s, label="response_url"
    )


async def delete_response_url_message(
    client: httpx.AsyncClient, response_url: str, *, settings: Settings, deadline_s: float | None = None
) -> httpx.Response:
    """Delete the message last posted to a response_url (`delete_original`), e.g. early sentences before an error."""
    check_target(response_url, settings.slack_response_hosts)
    return await _post(
        client, response_url, {"delete_original": True}, settings=settings, deadline_s=deadline_s, label="response_url"
    )


async def post_chat_message(
    client: httpx.AsyncClient,
    message: dict[str, Any],
    *,
    settings: Settings,
    channel: str,
    thread_ts: str | None = None,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Post a message with chat.postMessage (bot token), as a thread reply when `thread_ts` is given.

    `deadline_s` bounds the retries (an early post gives up soon; the final one keeps the default).
    """
    if settings.slack_bot_token is None:
        raise DeliveryError("SLACK_BOT_TOKEN is not set; cannot reply with chat.postMessage")
    payload: dict[str, Any] = {"channel": channel, **_text_only(message), "unfurl_links": False}
    if message.get("blocks"):
        payload["blocks"] = message["blocks"]
    if thread_ts:
        payload["thread_ts"] = thread_ts
    payload.pop("response_type", None)
    response = await _post_with_text_fallback(
        client,
        settings.slack_api_base_url.rstrip("/") + "/chat.postMessage",
        payload,
        settings=settings,
        headers={"Authorization": f"Bearer {settings.slack_bot_token.get_secret_value()}"},
        deadline_s=deadline_s,
        label="chat.postMessage",
    )
    return response.json()


async def update_chat_message(
    client: httpx.AsyncClient,
    message: dict[str, Any],
    *,
    settings: Settings,
    channel: str,
    ts: str,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Replace the text and blocks of a message posted earlier (chat.update, bot token).

    Raises MessageNotUpdated when Slack refuses for good (`message_not_found`, `cant_update_message`,
    `edit_window_closed`, another 4xx): the caller may post a new message instead. Transient failures
    that outlast the retries raise a plain DeliveryError: the update may have landed, so posting anew
    could show the summary twice.
    """
    if settings.slack_bot_token is None:
        raise DeliveryError("SLACK_BOT_TOKEN is not set; cannot update with chat.update")
    # Blocks left out of chat.update are kept: the text-only fallback must clear them with [].
    payload: dict[str, Any] = {"channel": channel, "ts": ts, "text": message.get("text", ""), "blocks": []}
    if message.get("blocks"):
        payload["blocks"] = message["blocks"]
    kwargs: dict[str, Any] = {
        "settings": settings,
        "headers": {"Authorization": f"Bearer {settings.slack_bot_token.get_secret_value()}"},
        "deadline_s": deadline_s,
        "label": "chat.update",
    }
    url = settings.slack_api_base_url.rstrip("/") + "/chat.update"
    try:
        try:
            response = await _post(client, url, payload, **kwargs)
        except DeliveryError as exc:
            if not (payload["blocks"] and (exc.status == 400 or "invalid_blocks" in str(exc))):
                raise
            log.warning("chat.update: blocks refused (%s); sending the plain text instead", exc)
            response = await _post(client, url, {**payload, "blocks": []}, **kwargs)
    except _Retryable:
        raise
    except DeliveryError as exc:
        if isinstance(exc.__cause__, httpx.TransportError):
            raise
        raise MessageNotUpdated(str(exc), status=exc.status, attempts=exc.attempts) from exc
    return response.json()


async def post_incoming_webhook(
    client: httpx.AsyncClient, message: dict[str, Any], *, settings: Settings, url: str | None = None
) -> httpx.Response:
    """Post a message to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat take the same JSON)."""
    target = url or settings.incoming_webhook_url
    if not target:
        raise DeliveryError("no incoming webhook URL configured (CITESUM_INCOMING_WEBHOOK_URL)")
    if parse_target(target).scheme not in ("https", "http"):
        raise TargetNotAllowed("incoming webhook URL must be http(s)")
    payload = {key: value for key, value in message.items() if key != "response_type"}
    return await _post_with_text_fallback(client, target, payload, settings=settings, label="incoming webhook")
