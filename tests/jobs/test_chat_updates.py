"""A chat summary written in place: early sentences, updates at most every interval, one final message.

Slash commands: the response_url is a fake Slack (pytest-httpx callback) that keeps the channel as Slack
shows it: a post adds a message, `replace_original` replaces the last one, `delete_original` removes it.
Mentions and DMs: a fake Web API keeps the thread: chat.postMessage adds a reply and answers its `ts`,
chat.update edits the reply with that `ts` (or answers `message_not_found`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
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
from service.jobs.callbacks import MESSAGE_TS, RESPONSE_URL_POSTS
from service.jobs.job import CHAT_OWNER, Job, new_job_id
from service.jobs.runner import JobRunner, Outcome
from service.jobs.store_sqlite import SQLiteJobStore
from service.pipeline.streaming import StreamEvent
from tests.jobs.test_jobs import request_of, wait_finished
from tests.jobs_fakes import canned_response

RESPONSE_URL = "http://127.0.0.1:9/response"
SLACK_API = re.compile(r"https://slack\.com/api/chat\.(postMessage|update)")
THREAD = {"channel": "C1", "thread_ts": "1700000000.000100"}


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


class FakeSlackAPI:
    """Slack's Web API for the thread: what a reader would see there, and every call in order."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}  # ts → the reply as shown, oldest first
        self.calls: list[tuple[str, float, dict[str, Any]]] = []  # (method, time, body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method, body = request.url.path.rsplit("/", 1)[-1], json.loads(request.content)
        assert request.headers["Authorization"] == "Bearer xoxb-test"
        self.calls.append((method, time.monotonic(), body))
        if method == "chat.postMessage":
            ts = f"1700000100.{len(self.calls):06d}"
            self.messages[ts] = body
            return httpx.Response(200, json={"ok": True, "channel": body["channel"], "ts": ts})
        if body["ts"] not in self.messages:
            return httpx.Response(200, json={"ok": False, "error": "message_not_found"})
        self.messages[body["ts"]] = {**self.messages[body["ts"]], "text": body["text"], "blocks": body["blocks"]}
        return httpx.Response(200, json={"ok": True, "channel": body["channel"], "ts": body["ts"]})

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.calls]


class SentenceBySentence:
    """A summarizer that reports a verified sentence every `gap_s`, then answers (or fails, or hangs)."""

    def __init__(
        self, sentences: int = 5, gap_s: float = 0.3, error: Exception | None = None, hang: bool = False
    ) -> None:
        self.sentences, self.gap_s, self.error, self.hang = sentences, gap_s, error, hang
        self.finished_at = 0.0

    async def __call__(self, request: SummaryRequest, *, settings: Settings, events=None, **_: Any):
        for n in range(1, self.sentences + 1):
            await asyncio.sleep(self.gap_s)
            if events is not None:
                events(StreamEvent("sentence", {"text": f"Sentence {n}.", "verdict": "supported", "citations": []}))
        if self.hang:  # a worker that is about to die: it never answers
            await asyncio.Event().wait()
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
        slack_bot_token="xoxb-test",
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


async def run_mention_job(settings: Settings, summarizer: Any, api: FakeSlackAPI, httpx_mock: HTTPXMock) -> Job:
    """A mention's job (as slack.py submits it): its reply goes to the thread with chat.postMessage."""
    httpx_mock.add_callback(api, url=SLACK_API, method="POST", is_reusable=True)
    async with running_backend(settings, summarize=summarizer) as backend:
        job, _ = await backend.submit(request_of(), callback_format="slack_chat", callback_options=dict(THREAD))
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


async def test_a_retried_attempt_updates_the_early_message_in_place(settings: Settings, httpx_mock: HTTPXMock) -> None:
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
    # Attempt 1's early message is kept and the retry's posts replace it: no delete, no second message,
    # and the five posts a response_url takes are never exceeded (the delete used to cost one).
    assert "replace_original" not in bodies[0] and all(body.get("replace_original") for body in bodies[1:])
    assert {"delete_original": True} not in bodies and len(bodies) <= 5
    assert slack.messages == [bodies[-1]] and bodies[-1]["blocks"] and "Sentence" not in bodies[-1]["text"]
    assert done.callback_options[RESPONSE_URL_POSTS] == str(len(bodies))


# --- mentions and DMs: chat.postMessage, then chat.update -----------------------------------------


async def test_a_mention_reply_is_posted_early_then_updated_in_place_then_final(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    api, summarizer = FakeSlackAPI(), SentenceBySentence(sentences=6, gap_s=0.3)
    done = await run_mention_job(settings, summarizer, api, httpx_mock)
    assert done.status == "succeeded" and done.callback_error is None
    methods, times = api.methods(), [at for _, at, _ in api.calls]
    bodies = [body for _, _, body in api.calls]
    # One reply, posted early, then only updates of it: two or more early states, then the final.
    assert methods[0] == "chat.postMessage" and set(methods[1:]) == {"chat.update"} and len(methods) >= 3
    assert times[0] < summarizer.finished_at - 0.5 and "Sentence 1." in bodies[0]["text"]
    assert bodies[0]["channel"] == "C1" and bodies[0]["thread_ts"] == THREAD["thread_ts"]
    assert all(later - earlier >= 0.6 for earlier, later in zip(times[:-2], times[1:-1], strict=True))  # throttled
    (ts,) = api.messages
    assert all(body["ts"] == ts and body["channel"] == "C1" for body in bodies[1:])
    final = api.messages[ts]
    assert final["blocks"] == bodies[-1]["blocks"] and "Sentence" not in final["text"]  # the summary itself
    assert done.callback_options[MESSAGE_TS] == ts  # kept in the job store: a re-run updates this reply


async def test_a_mention_done_at_once_is_posted_once(settings: Settings, httpx_mock: HTTPXMock) -> None:
    api = FakeSlackAPI()
    done = await run_mention_job(settings, SentenceBySentence(sentences=4, gap_s=0.0), api, httpx_mock)
    assert done.status == "succeeded" and api.methods() == ["chat.postMessage"]
    assert done.callback_options[MESSAGE_TS] in api.messages  # recorded, so a re-run would update it


async def test_an_error_after_an_early_reply_replaces_it_with_the_error(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    api = FakeSlackAPI()
    summarizer = SentenceBySentence(sentences=3, gap_s=0.3, error=InvalidInput("the model stopped"))
    done = await run_mention_job(settings, summarizer, api, httpx_mock)
    assert done.status == "failed" and "Sentence 1." in api.calls[0][2]["text"]  # the early reply
    assert api.methods()[0] == "chat.postMessage" and set(api.methods()[1:]) == {"chat.update"}
    [reply] = api.messages.values()
    assert "the model stopped" in reply["text"] and "Sentence" not in reply["text"]


async def test_a_deleted_early_reply_gets_one_new_reply_with_the_summary(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    api = FakeSlackAPI()

    class DeletedByTheUser(SentenceBySentence):
        async def __call__(self, request: SummaryRequest, **kwargs: Any):
            response = await super().__call__(request, **kwargs)
            api.messages.clear()  # someone deleted the early reply before the summary was done
            return response

    done = await run_mention_job(settings, DeletedByTheUser(sentences=3, gap_s=0.3), api, httpx_mock)
    assert done.status == "succeeded" and done.callback_error is None
    # The update of the deleted reply is refused for good: the summary is posted once, as a new reply.
    assert api.methods()[0] == "chat.postMessage" and api.methods()[-2:] == ["chat.update", "chat.postMessage"]
    assert api.methods().count("chat.postMessage") == 2
    [(ts, reply)] = api.messages.items()
    assert reply["blocks"] and "Sentence" not in reply["text"] and done.callback_options[MESSAGE_TS] == ts


async def test_a_rate_limited_early_reply_gives_up_rather_than_hold_back_the_summary(
    settings: Settings, httpx_mock: HTTPXMock
) -> None:
    api, summarizer = FakeSlackAPI(), SentenceBySentence(sentences=3, gap_s=0.3)

    def rate_limited_first(request: httpx.Request) -> httpx.Response:
        if not api.calls:  # Slack's 429 asks for 2 s, longer than an early post may take
            api.calls.append(("429", time.monotonic(), {}))
            return httpx.Response(429, headers={"Retry-After": "2"})
        return api(request)

    httpx_mock.add_callback(rate_limited_first, url=SLACK_API, method="POST", is_reusable=True)
    async with running_backend(settings, summarize=summarizer) as backend:
        job, _ = await backend.submit(request_of(), callback_format="slack_chat", callback_options=dict(THREAD))
        done = await wait_finished(backend, job.id)
    assert done.status == "succeeded" and api.methods() == ["429", "chat.postMessage"]
    (_, final_at, final) = api.calls[-1]
    assert final_at - summarizer.finished_at < 1.0 and "Minsk said on Monday" in final["text"]


async def test_early_replies_off_for_mentions(settings: Settings, httpx_mock: HTTPXMock) -> None:
    api = FakeSlackAPI()
    off = settings.model_copy(update={"chat_update_interval_s": 0.0})
    await run_mention_job(off, SentenceBySentence(sentences=3, gap_s=0.3), api, httpx_mock)
    assert api.methods() == ["chat.postMessage"]


# --- a worker that dies after the early post -------------------------------------------------------


async def _within(timeout_s: float, condition: Any) -> bool:
    """Whether `condition()` came true within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("door", ["slash command", "mention"])
async def test_a_rerun_after_the_worker_died_updates_the_early_message_never_posts_a_second(
    settings: Settings, httpx_mock: HTTPXMock, door: str
) -> None:
    """Attempt 1 posts its early sentences and dies (its task is dropped mid-summary, its lease lapses);
    a restarted worker re-runs the job, which must end as one message with the final summary."""
    slack, api = FakeSlack(), FakeSlackAPI()
    if door == "slash command":
        httpx_mock.add_callback(slack, url=RESPONSE_URL, method="POST", is_reusable=True)
        callback = {"callback_url": RESPONSE_URL, "callback_format": "slack_response_url",
                    "callback_options": {"response_type": "in_channel"}}  # fmt: skip
        posted_key = RESPONSE_URL_POSTS
    else:
        httpx_mock.add_callback(api, url=SLACK_API, method="POST", is_reusable=True)
        callback = {"callback_format": "slack_chat", "callback_options": dict(THREAD)}
        posted_key = MESSAGE_TS
    job = Job(id=new_job_id(), request=request_of().model_dump(mode="json", exclude_none=True), owner=CHAT_OWNER,
              max_attempts=3, **callback)  # fmt: skip

    store = SQLiteJobStore(settings.job_db_path)
    await store.create(job, idempotency_key="slack:event:EvCrash")
    claimed = await store.claim_next("worker-1", lease_s=0.3)
    assert claimed is not None
    first = JobRunner(store=store, cache=None, settings=settings, summarize=SentenceBySentence(2, 0.05, hang=True))
    attempt = asyncio.create_task(first.run_attempt(job.id, claimed.attempts))

    async def early_post_out() -> bool:
        return bool(slack.posts or api.calls)

    async def early_post_recorded() -> bool:
        stored = await store.get(job.id)
        return stored is not None and posted_key in stored.callback_options

    assert await _within(10.0, early_post_out)
    await _within(2.0, early_post_recorded)  # its record follows the post
    attempt.cancel()  # the worker dies: nothing of attempt 1 runs any more
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    await store.close()
    early = [body for _, body in slack.posts] + [body for _, _, body in api.calls]
    assert len(early) == 1 and "Sentence 2." in early[0]["text"]

    await asyncio.sleep(0.35)  # its lease lapses
    restarted = SQLiteJobStore(settings.job_db_path)  # a new worker process on the same job file
    try:
        assert (await restarted.recover_expired())[0] == [job.id]
        claimed = await restarted.claim_next("worker-2", lease_s=10.0)
        assert claimed is not None and claimed.attempts == 2
        rerun = SentenceBySentence(sentences=3, gap_s=0.3)
        second = JobRunner(store=restarted, cache=None, settings=settings, summarize=rerun)
        assert await second.run_attempt(job.id, claimed.attempts) is Outcome.SUCCEEDED
        done = await restarted.get(job.id)
    finally:
        await restarted.close()
    assert done is not None and done.status == "succeeded" and done.callback_error is None
    if door == "slash command":
        bodies = [body for _, body in slack.posts]
        assert "replace_original" not in bodies[0] and all(body.get("replace_original") for body in bodies[1:])
        assert len(bodies) <= 5 and slack.messages == [bodies[-1]]
        shown = slack.messages
    else:
        assert api.methods().count("chat.postMessage") == 1 and api.methods()[0] == "chat.postMessage"
        assert {body["ts"] for _, _, body in api.calls[1:]} == set(api.messages)
        shown = list(api.messages.values())
    # Exactly one message, and it holds the final summary (not the early sentences of either attempt).
    [message] = shown
    assert message["blocks"] and "Sentence" not in message["text"] and "Minsk said on Monday" in message["text"]


class FinishFailsOnce(SQLiteJobStore):
    """A store that fails to record the first outcome (as if the worker died right after the callback)."""

    failed = False

    async def finish(self, job_id: str, attempt: int, **outcome: Any) -> bool:
        if not self.failed:
            self.failed = True
            raise OSError("disk I/O error")
        return await super().finish(job_id, attempt, **outcome)


@pytest.mark.parametrize("door", ["slash command", "mention"])
async def test_a_final_message_sent_again_after_its_record_failed_edits_the_first(
    settings: Settings, httpx_mock: HTTPXMock, door: str
) -> None:
    """The final message is out but the outcome is not recorded, so the attempt runs again and sends
    it again: that second send must land on the first message, not next to it."""
    slack, api = FakeSlack(), FakeSlackAPI()
    if door == "slash command":
        httpx_mock.add_callback(slack, url=RESPONSE_URL, method="POST", is_reusable=True)
        callback = {"callback_url": RESPONSE_URL, "callback_format": "slack_response_url",
                    "callback_options": {"response_type": "in_channel"}}  # fmt: skip
    else:
        httpx_mock.add_callback(api, url=SLACK_API, method="POST", is_reusable=True)
        callback = {"callback_format": "slack_chat", "callback_options": dict(THREAD)}
    job = Job(id=new_job_id(), request=request_of().model_dump(mode="json", exclude_none=True), **callback)
    store = FinishFailsOnce(settings.job_db_path)
    try:
        await store.create(job)
        runner = JobRunner(store=store, cache=None, settings=settings, summarize=SentenceBySentence(2, 0.0))
        outcomes = []
        while (claimed := await store.claim_next("worker", lease_s=10.0)) is not None:
            outcomes.append(await runner.run_attempt(job.id, claimed.attempts))
        done = await store.get(job.id)
    finally:
        await store.close()
    assert outcomes == [Outcome.RETRY, Outcome.SUCCEEDED] and done is not None and done.status == "succeeded"
    if door == "slash command":
        first, second = (body for _, body in slack.posts)
        assert "replace_original" not in first and second["replace_original"] is True
        shown = slack.messages
    else:
        assert api.methods() == ["chat.postMessage", "chat.update"]
        shown = list(api.messages.values())
    [message] = shown
    assert message["blocks"] and "Minsk said on Monday" in message["text"]
