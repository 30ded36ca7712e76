"""A slash command's summary written in place: early sentences, updates at most every interval, one final message.

The response_url is a fake Slack (pytest-httpx callback) that keeps the channel as Slack shows it:
a post adds a message, `replace_original` replaces the last one, `delete_original` removes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.core.errors import InvalidInput
from service.core.schema import SummaryRequest
from service.jobs.backend import running_backend
from service.pipeline.streaming import StreamEvent
from tests.jobs.test_jobs import request_of, wait_finished
from tests.jobs_fakes import canned_response

RESPONSE_URL = "http://127.0.0.1:9/response"


class FakeSlack:
    """The channel behind a response_url: what a reader would see, and every post with its time."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.posts: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.posts.append((time.monotonic(), body))
        if body.get("delete_original"):
            self.messages.pop()
        elif body.get("replace_original") and self.messages:
            self.messages[-1] = body
        else:
            self.messages.append(body)
        return httpx.Response(200, text="ok")


class SentenceBySentence:
    """A summarizer that reports a verified sentence every `gap_s`, then answers (or fails)."""

    def __init__(self, sentences: int = 5, gap_s: float = 0.3, error: Exception | None = None) -> None:
        self.sentences, self.gap_s, self.error = sentences, gap_s, error
        self.finished_at = 0.0

    async def __call__(self, request: SummaryRequest, *, settings: Settings, events=None, **_: Any):
        for n in range(1, self.sentences + 1):
            await asyncio.sleep(self.gap_s)
            if events is not None:
                events(StreamEvent("sentence", {"text": f"Sentence {n}.", "verdict": "supported", "citations": []}))
        self.finished_at = time.monotonic()
        if self.error is not None:
            raise self.error
        return canned_response(request)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        job_db_path=str(tmp_path / "jobs.sqlite3"),
        job_retry_backoff_s=0.0,
        slack_response_hosts=["127.0.0.1"],
        slack_delivery_backoff_initial_s=0.0,
        chat_update_interval_s=0.6,
        chat_update_max_posts=2,
    )


async def run_job(settings: Settings, summarizer: Any, slack: FakeSlack, httpx_mock: HTTPXMock, visibility: str):
    httpx_mock.add_callback(slack, url=RESPONSE_URL, method="POST", is_reusable=True)
    async with running_backend(settings, summarize=summarizer) as backend:
        job, _ = await backend.submit(
            request_of(),
            callback_url=RESPONSE_URL,
            callback_format="slack_response_url",
            callback_options={"response_type": visibility},
        )
        return await wait_finished(backend, job.id)


async def test_first_sentences_early_then_updated_in_place_then_one_final_message(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    slack, summarizer = FakeSlack(), SentenceBySentence(sentences=6, gap_s=0.3)
    done = await run_job(settings, summarizer, slack, httpx_mock, "in_channel")
    assert done.status == "succeeded" and done.callback_error is None
    times = [at for at, _ in slack.posts]
    bodies = [body for _, body in slack.posts]
    assert len(bodies) == 3  # two early posts (the cap), then the final
    assert times[0] < summarizer.finished_at - 0.5  # the first sentences were on screen well before the end
    assert "Sentence 1." in bodies[0]["text"] and "replace_original" not in bodies[0]
    assert bodies[1]["replace_original"] is True and times[1] - times[0] >= 0.6  # at most every interval
    assert bodies[2]["replace_original"] is True and bodies[2]["blocks"]  # the final replaces the early one
    assert all(body["response_type"] == "in_channel" for body in bodies)
    assert slack.messages == [bodies[2]]  # one message in the channel: the final summary, never two


async def test_an_error_after_early_posts_removes_them_and_tells_the_user_privately(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    slack = FakeSlack()
    summarizer = SentenceBySentence(sentences=3, gap_s=0.3, error=InvalidInput("the model stopped"))
    done = await run_job(settings, summarizer, slack, httpx_mock, "in_channel")
    assert done.status == "failed"
    bodies = [body for _, body in slack.posts]
    assert bodies[0]["response_type"] == "in_channel" and "Sentence 1." in bodies[0]["text"]
    assert bodies[-2] == {"delete_original": True}
    assert slack.messages == [bodies[-1]] and bodies[-1]["response_type"] == "ephemeral"
    assert "the model stopped" in bodies[-1]["text"]


async def test_a_summary_done_at_once_is_posted_once(settings: Settings, httpx_mock: HTTPXMock) -> None:
    slack = FakeSlack()
    done = await run_job(settings, SentenceBySentence(sentences=4, gap_s=0.0), slack, httpx_mock, "ephemeral")
    assert done.status == "succeeded"
    [(_, body)] = slack.posts
    assert "replace_original" not in body and body["response_type"] == "ephemeral"


async def test_early_posts_off(settings: Settings, httpx_mock: HTTPXMock) -> None:
    slack = FakeSlack()
    off = settings.model_copy(update={"chat_update_interval_s": 0.0})
    await run_job(off, SentenceBySentence(sentences=3, gap_s=0.3), slack, httpx_mock, "in_channel")
    assert len(slack.posts) == 1


async def test_a_retried_attempt_withdraws_its_early_post_so_the_retry_posts_the_only_one(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    from service.core.errors import LLMUnavailable

    class FailsOnceAfterSentences(SentenceBySentence):
        calls = 0

        async def __call__(self, request: SummaryRequest, *, settings: Settings, events=None, **kwargs: Any):
            type(self).calls += 1
            self.error = LLMUnavailable("the stream was cut; not retried") if self.calls == 1 else None
            return await super().__call__(request, settings=settings, events=events, **kwargs)

    slack = FakeSlack()
    done = await run_job(settings, FailsOnceAfterSentences(sentences=4, gap_s=0.3), slack, httpx_mock, "in_channel")
    assert done.status == "succeeded" and done.attempts == 2
    bodies = [body for _, body in slack.posts]
    assert {"delete_original": True} in bodies  # attempt 1's early post withdrawn before the retry
    assert len(slack.messages) == 1 and slack.messages[0] is bodies[-1] and bodies[-1]["replace_original"] is True
