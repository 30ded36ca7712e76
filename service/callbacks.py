"""Tell a job's `callback_url` that the job finished: a plain JSON POST, or a Slack-compatible message.

The callback URL is user-controlled, like a URL to ingest, so it gets the same host checks
(`check_callback_url`) before anything is sent, and redirects are never followed. Sending and its
retries are deliver.py's (one tenacity policy, `Retry-After` honoured).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import httpx

from service.config import Settings
from service.deliver import DeliveryError, post_incoming_webhook
from service.errors import SummaryError
from service.fetch import PinnedBackend, PinnedTransport, check_url
from service.jobs import Job
from service.schema import SummaryResponse

log = logging.getLogger(__name__)


def check_callback_url(url: str, settings: Settings) -> None:
    """Raise URLNotAllowed / InvalidInput unless `url` passes URL ingestion's checks (scheme, literal host)."""
    check_url(url, allow_private=settings.fetch_allow_private)


def callback_client(settings: Settings) -> httpx.AsyncClient:
    """A client that, like URL ingestion's, checks every resolved address at connect time and never redirects."""
    backend = PinnedBackend(allow_private=settings.fetch_allow_private)
    return httpx.AsyncClient(
        transport=PinnedTransport(backend),
        timeout=settings.callback_timeout_s,
        follow_redirects=False,
        trust_env=False,
    )


def callback_payload(job: Job) -> dict[str, Any]:
    """The body to POST: the job document (json), or a Block Kit message with a text fallback (slack)."""
    if job.callback_format == "json":
        return job.public()
    from service.render_slack import render_error, render_summary

    if job.result is not None:
        response = SummaryResponse.model_validate(job.result)
        return render_summary(response, source_url=job.request.get("url"))
    detail = (job.error or {}).get("detail", "the summary failed")
    return render_error(f"Sorry, the summary failed: {detail}")


async def send_callback(job: Job, *, settings: Settings, client: httpx.AsyncClient | None = None) -> str | None:
    """POST the finished job to its callback URL; returns None when delivered, else why not (never raises)."""
    if not job.callback_url:
        return None
    try:
        check_callback_url(job.callback_url, settings)
        payload = callback_payload(job)
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(callback_client(settings))
            await post_incoming_webhook(client, payload, settings=settings, url=job.callback_url)
    except (SummaryError, DeliveryError, httpx.HTTPError) as exc:  # refused address, DNS, HTTP answer
        log.warning("job %s: callback to %s not delivered: %s", job.id, job.callback_url, exc)
        return str(exc) or type(exc).__name__
    return None
