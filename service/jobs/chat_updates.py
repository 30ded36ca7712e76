"""A slash command's summary as it is written: the first verified sentences early, then updated in place.

While a slash-command job runs, `ChatUpdates` receives the summary's `sentence` events. The first
one is posted to the command's `response_url` half a second later (a new message, the job's
visibility; a summary complete by then, like the embedded default's, is posted once, whole); later
ones replace that message (`replace_original`) at most every `chat_update_interval_s`, and at most
`chat_update_max_posts` times in all, so that the final message fits in the five posts a Slack
`response_url` takes. The final message then replaces the early one (callbacks.py), or, for an
error, deletes it and is sent privately as before; an attempt that will be retried deletes it
first, since the next attempt posts its own: one message in the end, never two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from service.core.config import Settings
from service.jobs.callbacks import EARLY_POSTS
from service.jobs.deliver import DeliveryError, delete_response_url_message, post_to_response_url
from service.jobs.job import Job
from service.pipeline.render_slack import render_partial
from service.pipeline.streaming import StreamEvent

log = logging.getLogger(__name__)

FIRST_POST_GRACE_S = 0.5  # a summary done this soon after its first sentence gets no early post

__all__ = ["EARLY_POSTS", "ChatUpdates"]


class ChatUpdates:
    """An EventSink that posts and updates a slash command's message as sentences are verified."""

    def __init__(
        self,
        job: Job,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job, self.settings, self.clock = job, settings, clock
        self.client = client
        self.sentences: list[dict[str, Any]] = []
        self.posts = 0  # early posts made
        self._posting: asyncio.Task[None] | None = None
        self._in_flight = False
        self._closing = False
        self._last_post = 0.0
        self._owns_client = client is None

    @classmethod
    def for_job(cls, job: Job, settings: Settings) -> ChatUpdates | None:
        """An updater for a slash-command job when early posts are on, else None."""
        if job.callback_format != "slack_response_url" or not job.callback_url:
            return None
        if settings.chat_update_interval_s <= 0 or settings.chat_update_max_posts <= 0:
            return None
        return cls(job, settings)

    def __call__(self, event: StreamEvent) -> None:
        if event.kind != "sentence":
            return
        self.sentences.append(event.data)
        if self._posting is None or self._posting.done():
            self._posting = asyncio.get_running_loop().create_task(self._post_until_current())

    async def _post_until_current(self) -> None:
        """Post what is verified so far, waiting out the interval; again if more arrived meanwhile."""
        posted = 0
        while posted < len(self.sentences) and self.posts < self.settings.chat_update_max_posts and not self._closing:
            if self.posts:
                await asyncio.sleep(max(0.0, self._last_post + self.settings.chat_update_interval_s - self.clock()))
            else:
                await asyncio.sleep(FIRST_POST_GRACE_S)
            posted = len(self.sentences)
            self._in_flight = True
            try:
                await self._post(self.sentences[:posted])
            finally:
                self._in_flight = False

    async def _post(self, sentences: list[dict[str, Any]]) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.settings.slack_delivery_timeout_s, follow_redirects=False)
        message = render_partial(sentences, source_url=self.job.request.get("url"))
        try:
            await post_to_response_url(
                self.client,
                self.job.callback_url or "",
                message,
                settings=self.settings,
                response_type=self.job.callback_options.get("response_type", "ephemeral"),
                deadline_s=max(self.settings.chat_update_interval_s, 1.0),
                replace_original=self.posts > 0,
            )
        except DeliveryError as exc:  # the final message still comes; an early one is a nicety
            log.warning("job %s: early post not delivered: %s", self.job.id, exc)
            self.posts = self.settings.chat_update_max_posts  # and no more tries: keep the posts for the final
            return
        self.posts += 1
        self._last_post = self.clock()
        log.info("job %s: early post %d (%d sentences)", self.job.id, self.posts, len(sentences))

    async def close(self) -> int:
        """Stop posting (a post under way is finished, a waiting one dropped); the number of early posts made."""
        self._closing = True
        if self._posting is not None and not self._posting.done():
            if self._in_flight:
                await asyncio.shield(self._posting)
            else:
                self._posting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._posting
        if self._owns_client and self.client is not None:
            await self.client.aclose()
            self.client = None
        return self.posts

    async def withdraw(self) -> None:
        """Delete the early message (before a retry of the job, which posts its own); failures are logged."""
        async with httpx.AsyncClient(timeout=self.settings.slack_delivery_timeout_s, follow_redirects=False) as client:
            try:
                await delete_response_url_message(
                    client,
                    self.job.callback_url or "",
                    settings=self.settings,
                    deadline_s=max(self.settings.chat_update_interval_s, 1.0),
                )
            except DeliveryError as exc:
                log.warning("job %s: early post not withdrawn before the retry: %s", self.job.id, exc)
