"""A chat summary as it is written: the first verified sentences early, then updated in place.

While a Slack job runs, `ChatUpdates` receives the summary's `sentence` events. The first one is
posted half a second later (a summary complete by then, like the embedded default's, is posted once,
whole); later ones update that message at most every `chat_update_interval_s`:

* a slash command (Slack or Mattermost): posted to the `response_url` with the job's visibility, then
  replaced (`replace_original`), at most `chat_update_max_posts` times, and fewer when an earlier
  attempt already used some of the five posts a `response_url` takes (two stay for the final message);
* a mention or a DM: a thread reply with `chat.postMessage`, then `chat.update` on its `ts`.

What was posted (the reply's `ts`, the response_url's post count) is stored in the job's callback
options (JobStore.set_callback_options) the moment it is out, so the final message (callbacks.py),
a retried attempt and a re-run after a worker died all update that one message: one message in the
end, never two.
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
from service.jobs.callbacks import MESSAGE_TS, RESPONSE_URL_POSTS, Remember, remember_posted, response_url_posts
from service.jobs.deliver import DeliveryError, post_chat_message, post_to_response_url, update_chat_message
from service.jobs.job import Job
from service.pipeline.render_slack import render_partial
from service.pipeline.streaming import StreamEvent

log = logging.getLogger(__name__)

FIRST_POST_GRACE_S = 0.5  # a summary done this soon after its first sentence gets no early post
RESPONSE_URL_USES = 5  # Slack: a response_url takes 5 posts within 30 minutes
KEPT_FOR_FINAL = 2  # an error after early posts takes two: delete_original, then the private message

__all__ = ["ChatUpdates"]


class ChatUpdates:
    """An EventSink that posts and updates a chat message as sentences are verified."""

    def __init__(
        self,
        job: Job,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        remember: Remember | None = None,
    ) -> None:
        self.job, self.settings, self.clock, self.remember = job, settings, clock, remember
        self.client = client
        self.sentences: list[dict[str, Any]] = []
        self.posts = 0  # early posts (or updates) made by this attempt
        self._posting: asyncio.Task[None] | None = None
        self._in_flight = False
        self._closing = False
        self._stopped = False  # a post failed: the final message still comes, no more early ones
        self._last_post = 0.0
        self._owns_client = client is None

    @classmethod
    def for_job(cls, job: Job, settings: Settings, remember: Remember | None = None) -> ChatUpdates | None:
        """An updater for a Slack job (slash command, mention, DM) when early posts are on, else None."""
        if settings.chat_update_interval_s <= 0:
            return None
        if job.callback_format == "slack_response_url" and job.callback_url:
            wanted = settings.chat_update_max_posts > 0
        else:  # mentions and DMs: chat.postMessage, then chat.update, with the bot token
            chat = job.callback_format == "slack_chat" and bool(job.callback_options.get("channel"))
            wanted = chat and settings.slack_bot_token is not None
        return cls(job, settings, remember=remember) if wanted else None

    def _may_post(self) -> bool:
        if self._stopped or self._closing:
            return False
        if self.job.callback_format == "slack_chat":
            return True  # chat.update has no use limit; the interval is the throttle
        left = RESPONSE_URL_USES - KEPT_FOR_FINAL - response_url_posts(self.job)
        return self.posts < self.settings.chat_update_max_posts and left > 0

    def __call__(self, event: StreamEvent) -> None:
        if event.kind != "sentence":
            return
        self.sentences.append(event.data)
        if self._posting is None or self._posting.done():
            self._posting = asyncio.get_running_loop().create_task(self._post_until_current())

    async def _post_until_current(self) -> None:
        """Post what is verified so far, waiting out the interval; again if more arrived meanwhile."""
        posted = 0
        while posted < len(self.sentences) and self._may_post():
            if self.posts:
                await asyncio.sleep(max(0.0, self._last_post + self.settings.chat_update_interval_s - self.clock()))
            else:
                await asyncio.sleep(FIRST_POST_GRACE_S)
            if self._closing:
                return
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
            if self.job.callback_format == "slack_chat":
                await self._post_in_thread(self.client, message)
            else:
                await self._post_to_response_url(self.client, message)
        except DeliveryError as exc:  # the final message still comes; an early one is a nicety
            log.warning("job %s: early post not delivered: %s", self.job.id, exc)
            self._stopped = True
            return
        self.posts += 1
        self._last_post = self.clock()
        log.info("job %s: early post %d (%d sentences)", self.job.id, self.posts, len(sentences))

    def _deadline_s(self) -> float:
        """An early post retries for one interval at most: a late one is stale, and the final waits for it."""
        return max(self.settings.chat_update_interval_s, 1.0)

    async def _post_to_response_url(self, client: httpx.AsyncClient, message: dict[str, Any]) -> None:
        posted = response_url_posts(self.job)
        await post_to_response_url(
            client,
            self.job.callback_url or "",
            message,
            settings=self.settings,
            response_type=self.job.callback_options.get("response_type", "ephemeral"),
            deadline_s=self._deadline_s(),
            replace_original=posted > 0,  # an earlier post of this job, maybe by an attempt that died
        )
        await self._remember({RESPONSE_URL_POSTS: str(posted + 1)})

    async def _post_in_thread(self, client: httpx.AsyncClient, message: dict[str, Any]) -> None:
        options = self.job.callback_options
        if ts := options.get(MESSAGE_TS):  # posted before, by this attempt or one that died
            channel, deadline_s = options["channel"], self._deadline_s()
            await update_chat_message(
                client, message, settings=self.settings, channel=channel, ts=ts, deadline_s=deadline_s
            )
            return
        answer = await post_chat_message(
            client,
            message,
            settings=self.settings,
            channel=options["channel"],
            thread_ts=options.get("thread_ts"),
            deadline_s=self._deadline_s(),
        )
        if not isinstance(answer.get("ts"), str):
            raise DeliveryError("chat.postMessage answered without a ts; the reply cannot be updated")
        await self._remember({MESSAGE_TS: answer["ts"]})

    async def _remember(self, changes: dict[str, str]) -> None:
        """Keep what was posted in the job (here and in the store), so every later post updates it."""
        options = {**self.job.callback_options, **changes}
        self.job = self.job.model_copy(update={"callback_options": options})
        # If the store fails, this attempt still knows; only a re-run after a crash could post a second one.
        await remember_posted(self.remember, self.job, options)

    async def close(self) -> Job:
        """Stop posting (a post under way is finished, a waiting one dropped); the job as posted so far."""
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
        return self.job
