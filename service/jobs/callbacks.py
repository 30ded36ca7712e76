"""Deliver a finished job to where its submitter asked: a URL (JSON or Slack-compatible) or Slack itself.

A user-given callback URL is as hostile as a URL to ingest, so it gets URL ingestion's checks
(fetch.check_url up front, fetch.PinnedTransport at connect time) and redirects are never followed.
Slack targets use deliver.py's own rules (allow-listed response_url hosts, the bot token). Sending
and its retries are deliver.py's (one tenacity policy, `Retry-After` honoured).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from service.core.config import Settings
from service.core.errors import InvalidInput, SummaryError
from service.core.redact import redact_text, redact_url
from service.core.schema import SummaryResponse
from service.jobs.deliver import (
    DeliveryError,
    MessageNotUpdated,
    check_target,
    delete_response_url_message,
    parse_target,
    post_chat_message,
    post_incoming_webhook,
    post_to_response_url,
    update_chat_message,
)
from service.jobs.job import CallbackFormat, Job
from service.pipeline.fetch import PinnedBackend, PinnedTransport, check_url

# Callback options that record, durably in the job store, what this job already posted, so the next post
# (a later update, the final message, or a re-run after a crash or retry) replaces it rather than adding one.
RESPONSE_URL_POSTS = "response_url_posts"  # messages posted to a slash command's response_url so far
MESSAGE_TS = "message_ts"  # the `ts` of the thread reply posted with chat.postMessage (mentions, DMs)

# Remember changed callback options in the job store (JobStore.set_callback_options, bound to the attempt).
Remember = Callable[[dict[str, str]], Awaitable[Any]]

log = logging.getLogger(__name__)

RESPONSE_URL_VALID_S = 30 * 60  # Slack: a response_url takes 5 posts within 30 minutes of the command


def check_callback_target(url: str | None, callback_format: CallbackFormat, settings: Settings) -> None:
    """Raise URLNotAllowed / InvalidInput unless the job could be delivered there."""
    if callback_format == "slack_chat":
        return  # goes to Slack's API with the bot token, not to a URL of the submitter's
    if not url:
        if callback_format == "slack_response_url":
            raise InvalidInput("a slack_response_url callback needs the response_url")
        return
    if callback_format == "slack_response_url":
        try:
            check_target(url, settings.slack_response_hosts)
        except DeliveryError as exc:
            raise InvalidInput(f"response_url refused: {exc}") from exc
        return
    try:
        parse_target(url)  # as httpx will read it: a URL it cannot send is refused now, not at delivery
    except DeliveryError as exc:
        raise InvalidInput(f"callback_url refused: {exc}") from exc
    check_url(url, allow_private=settings.fetch_allow_private)


def callback_client(settings: Settings) -> httpx.AsyncClient:
    """Like URL ingestion's client: every resolved address is checked at connect time; no redirects."""
    return httpx.AsyncClient(
        transport=PinnedTransport(PinnedBackend(allow_private=settings.fetch_allow_private)),
        timeout=settings.callback_timeout_s,
        follow_redirects=False,
        trust_env=False,
    )


def slack_message(job: Job) -> dict[str, Any]:
    """The finished job as a Slack message: the Block Kit summary, or a clear error."""
    from service.pipeline.render_slack import render_error, render_summary

    if job.result is not None:
        return render_summary(SummaryResponse.model_validate(job.result), source_url=redact_url(job.request.get("url")))
    error = job.error or {}
    if str(error.get("type", "")).endswith(("job-failed", "job-abandoned")) or "detail" not in error:
        # Our own crash: its detail names an exception, which is for the logs, not for the channel.
        reason = "Something went wrong on our side."
    else:
        reason = str(error["detail"])  # one of our errors (fetch refused, model down …): written for people
    return render_error(reason, request_id=job.callback_options.get("request_id"))


def response_url_posts(job: Job) -> int:
    """How many messages this job has posted to its response_url (0 when none or unreadable)."""
    try:
        return max(0, int(job.callback_options.get(RESPONSE_URL_POSTS, "0")))
    except ValueError:
        return 0


async def _deliver(job: Job, settings: Settings, client: httpx.AsyncClient | None, remember: Remember | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if job.callback_format in ("json", "slack"):
            check_callback_target(job.callback_url, job.callback_format, settings)
            if client is None:
                client = await stack.enter_async_context(callback_client(settings))
            payload = job.public() if job.callback_format == "json" else slack_message(job)
            await post_incoming_webhook(client, payload, settings=settings, url=job.callback_url)
            return
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=settings.slack_delivery_timeout_s))
        if job.callback_format == "slack_response_url":
            await _deliver_to_response_url(client, job, settings, remember)
        else:  # slack_chat
            await _deliver_in_thread(client, job, settings, remember)


async def _deliver_to_response_url(
    client: httpx.AsyncClient, job: Job, settings: Settings, remember: Remember | None
) -> None:
    # An error is never posted to the channel; a public summary is also copied to the incoming webhook.
    options = job.callback_options
    response_type = options.get("response_type", "ephemeral") if job.result is not None else "ephemeral"
    message = slack_message(job)
    valid_s = RESPONSE_URL_VALID_S - (time.time() - job.created_at) - 60  # a minute's margin
    posted = response_url_posts(job)  # early sentences (chat_updates.py), by this attempt or an earlier one
    if posted and job.result is None:  # the early sentences go; the error is told privately
        await delete_response_url_message(client, job.callback_url or "", settings=settings)
    await post_to_response_url(
        client,
        job.callback_url or "",
        message,
        settings=settings,
        response_type=response_type,
        deadline_s=max(valid_s, 1.0),
        replace_original=posted > 0 and job.result is not None,
    )
    if job.result is not None:  # a re-run (crash before the job is recorded finished) then replaces it too
        await remember_posted(remember, job, {**options, RESPONSE_URL_POSTS: str(posted + 1)})
    if response_type == "in_channel" and settings.incoming_webhook_url:
        await _mirror(client, job, message, settings)


async def _deliver_in_thread(
    client: httpx.AsyncClient, job: Job, settings: Settings, remember: Remember | None
) -> None:
    options = job.callback_options
    message = slack_message(job)
    if ts := options.get(MESSAGE_TS):  # the early reply (chat_updates.py) becomes the final one
        try:
            await update_chat_message(client, message, settings=settings, channel=options["channel"], ts=ts)
            return
        except MessageNotUpdated as exc:  # deleted meanwhile, too old to edit …: a new reply, once
            log.warning("job %s: chat.update of reply %s refused (%s); posting a new reply", job.id, ts, exc)
    answer = await post_chat_message(
        client, message, settings=settings, channel=options["channel"], thread_ts=options.get("thread_ts")
    )
    if isinstance(answer.get("ts"), str):  # a re-run (crash before the job is recorded finished) updates it
        await remember_posted(remember, job, {**options, MESSAGE_TS: answer["ts"]})


async def remember_posted(remember: Remember | None, job: Job, options: dict[str, str]) -> None:
    """Store what was posted; a failure is logged, not the delivery's (the message is out)."""
    if remember is None:
        return
    try:
        await remember(options)
    except Exception:
        log.exception("job %s: what was posted could not be recorded; a re-run may post again", job.id)


async def send_callback(
    job: Job, *, settings: Settings, client: httpx.AsyncClient | None = None, remember: Remember | None = None
) -> str | None:
    """Deliver the finished job; returns None when delivered (or nothing to do), else why not. Never raises.

    `remember` stores what was posted (the reply's ts, the response_url's post count) in the job, so a
    re-run of the attempt replaces that message instead of posting a second one.
    """
    if not job.callback_url and job.callback_format != "slack_chat":
        return None
    try:
        await _deliver(job, settings, client, remember)
    except (SummaryError, DeliveryError, httpx.HTTPError, KeyError) as exc:  # refused, DNS, HTTP answer
        log.warning("job %s: %s callback not delivered: %s", job.id, job.callback_format, exc)
        return redact_text(str(exc)) or type(exc).__name__  # kept in the job: no capability URL in it
    except Exception as exc:  # anything else (a bug, an odd transport error) must not strand the job
        log.exception("job %s: %s callback not delivered (unexpected error)", job.id, job.callback_format)
        return redact_text(f"{type(exc).__name__}: {exc}")
    request_id = job.callback_options.get("request_id")
    log.info("job %s: %s callback delivered request_id=%s", job.id, job.callback_format, request_id)
    return None


async def _mirror(client: httpx.AsyncClient, job: Job, message: dict[str, Any], settings: Settings) -> None:
    # Best effort: the user already has the summary; a broken mirror is logged, not the job's failure.
    try:
        await post_incoming_webhook(client, message, settings=settings)
    except DeliveryError as exc:
        log.error("job %s: incoming webhook copy not delivered: %s", job.id, exc)
