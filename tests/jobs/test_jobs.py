"""Jobs in the embedded (SQLite) mode: store rules, retries, the result cache, the HTTP API, callbacks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.core.errors import InvalidInput
from service.core.schema import SummaryRequest, SummaryResponse
from service.interfaces.jobs_api import router, wants_async
from service.interfaces.problems import install_problem_handlers
from service.jobs.backend import JobBackend, running_backend
from service.jobs.job import IdempotencyKeyReused, Job, new_job_id
from service.jobs.store_sqlite import SQLiteJobStore
from tests.jobs.store_contract import check_idempotency_keys_live_in_their_owners_namespace
from tests.jobs_fakes import canned_response

ARTICLE = "Minsk said on Monday that the talks would resume in March after a pause of two weeks."


class CountingSummarizer:
    """A fake entry point that records every call and can fail a set number of times first."""

    def __init__(self, failures: list[Exception] | None = None, steps: int = 3) -> None:
        self.calls: list[SummaryRequest] = []
        self.failures = list(failures or [])
        self.steps = steps

    async def __call__(self, request: SummaryRequest, *, settings: Settings, llm: Any = None, progress=None):
        self.calls.append(request)
        if self.failures:
            raise self.failures.pop(0)
        for done in range(1, self.steps + 1):
            await asyncio.sleep(0)
            if progress is not None:
                progress(done, self.steps)
        return canned_response(request)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(job_db_path=str(tmp_path / "jobs.sqlite3"), job_retry_backoff_s=0.0, job_lease_s=5.0)


async def wait_finished(backend: JobBackend, job_id: str, timeout_s: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await backend.store.get(job_id)
        assert job is not None
        if job.finished:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def request_of(text: str = ARTICLE, **options: Any) -> SummaryRequest:
    return SummaryRequest(text=text, **options)


# --- the store -------------------------------------------------------------------------------


async def test_idempotency_key_returns_the_same_job(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    first, created = await store.create(
        Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k1", fingerprint="f"
    )
    again, created_again = await store.create(
        Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k1", fingerprint="f"
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    await store.close()


async def test_idempotency_key_reused_for_another_request_is_refused(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.create(Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k1", fingerprint="f1")
    with pytest.raises(IdempotencyKeyReused):
        await store.create(Job(id=new_job_id(), request={"text": "b"}), idempotency_key="k1", fingerprint="f2")
    await store.close()


async def test_a_stale_attempt_cannot_overwrite_a_newer_one(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    job, _ = await store.create(Job(id=new_job_id(), request={"text": "a"}))
    claimed = await store.claim_next("worker-a", lease_s=0.0)
    assert claimed is not None and claimed.attempts == 1
    await store.recover_expired()  # worker-a "died": its lease has lapsed
    second = await store.claim_next("worker-b", lease_s=60)
    assert second is not None and second.attempts == 2
    assert not await store.set_progress(job.id, 1, 1, 2)
    assert not await store.set_callback_options(job.id, 1, {"message_ts": "1.0"})
    assert await store.set_callback_options(job.id, 2, {"channel": "C1", "message_ts": "2.0"})
    assert not await store.finish(job.id, 1, result={"from": "attempt 1"})
    assert await store.finish(job.id, 2, result={"from": "attempt 2"})
    assert not await store.finish(job.id, 2, result={"from": "twice"})
    stored = await store.get(job.id)
    assert stored is not None and stored.status == "succeeded" and stored.result == {"from": "attempt 2"}
    assert stored.callback_options == {"channel": "C1", "message_ts": "2.0"}  # what attempt 2 posted
    assert not await store.set_callback_options(job.id, 2, {})  # finished: nothing to update any more
    await store.close()


async def test_lapsed_leases_requeue_until_attempts_run_out(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    job, _ = await store.create(Job(id=new_job_id(), request={"text": "a"}, max_attempts=2))
    for expected_attempt in (1, 2):
        claimed = await store.claim_next("doomed", lease_s=0.0)
        assert claimed is not None and claimed.attempts == expected_attempt
        requeued, failed = await store.recover_expired()
    assert requeued == [] and [j.id for j in failed] == [job.id]
    stored = await store.get(job.id)
    assert stored is not None and stored.status == "failed" and stored.attempts == 2
    assert stored.error is not None and "attempt 2 of 2 stopped before finishing" in stored.error["detail"]
    assert await store.claim_next("anyone", lease_s=60) is None
    await store.close()


async def test_finished_jobs_are_purged_after_the_retention_period(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    done, _ = await store.create(Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k")
    waiting, _ = await store.create(Job(id=new_job_id(), request={"text": "b"}))
    claimed = await store.claim_next("w", lease_s=60)
    assert claimed is not None and claimed.id == done.id
    assert await store.finish(done.id, 1, result={})
    assert await store.purge_finished(older_than_s=3600) == 0
    assert await store.purge_finished(older_than_s=-1) == 1
    assert await store.get(done.id) is None and await store.get(waiting.id) is not None
    again, created = await store.create(Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k")
    assert created and again.id != done.id  # the key went with its job
    await store.close()


async def test_the_store_answers_while_the_default_thread_pool_is_full(tmp_path: Path) -> None:
    """Work that fills the event loop's default executor (CPU-bound request handling) must not stall job reads."""
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    job, _ = await store.create(Job(id=new_job_id(), request={"text": "a"}))
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(pool)
    release = threading.Event()
    hogs = [loop.run_in_executor(None, release.wait, 30) for _ in range(6)]
    try:
        async with asyncio.timeout(5):
            assert (await store.get(job.id)) is not None
            assert (await store.claim_next("w", lease_s=5)) is not None
    finally:
        release.set()
        await asyncio.gather(*hogs)
        await store.close()


def test_an_older_job_file_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
            " max_attempts INTEGER NOT NULL, progress_done INTEGER NOT NULL DEFAULT 0,"
            " progress_total INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, result TEXT, error TEXT,"
            " callback_url TEXT, callback_format TEXT NOT NULL DEFAULT 'json', cache_key TEXT,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL, not_before REAL NOT NULL DEFAULT 0,"
            " lease_owner TEXT, lease_until REAL, idempotency_key TEXT UNIQUE, fingerprint TEXT)"
        )
        conn.execute(
            "INSERT INTO jobs (id, status, max_attempts, request, created_at, updated_at)"
            " VALUES ('old', 'queued', 3, '{}', 0, 0)"
        )

    async def read() -> Job | None:
        store = SQLiteJobStore(path)
        try:
            return await store.get("old")
        finally:
            await store.close()

    job = asyncio.run(read())
    assert job is not None and job.callback_options == {} and job.callback_error is None
    assert job.owner is None and job.visible_to("key:anyone")  # stored before tenancy: owner-less


async def test_idempotency_keys_live_in_their_owners_namespace(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await check_idempotency_keys_live_in_their_owners_namespace(store)
    await store.close()


# --- running jobs in-process ---------------------------------------------------------------------


async def test_a_job_runs_once_with_progress(settings: Settings) -> None:
    fake = CountingSummarizer(steps=3)
    async with running_backend(settings, summarize=fake) as backend:
        job, created = await backend.submit(request_of())
        assert created and job.status == "queued"
        done = await wait_finished(backend, job.id)
    assert done.status == "succeeded" and done.attempts == 1
    assert done.progress.model_dump() == {"done": 3, "total": 3}
    assert SummaryResponse.model_validate(done.result).summary[0].citations[0].sentence_id == "s1"
    assert len(fake.calls) == 1


async def test_a_job_that_always_fails_ends_failed_with_a_reason(settings: Settings) -> None:
    from service.core.errors import LLMUnavailable

    fake = CountingSummarizer(failures=[LLMUnavailable("the model server refused the connection")] * 5)
    async with running_backend(settings, summarize=fake) as backend:
        job, _ = await backend.submit(request_of())
        done = await wait_finished(backend, job.id)
    assert done.status == "failed"
    assert done.attempts == settings.job_max_attempts == len(fake.calls) == 3
    assert done.error is not None
    assert done.error["status"] == 503 and done.error["attempts"] == 3
    assert "refused the connection" in done.error["detail"]


async def test_a_transient_failure_is_retried_then_succeeds(settings: Settings) -> None:
    fake = CountingSummarizer(failures=[RuntimeError("connection reset")])
    async with running_backend(settings, summarize=fake) as backend:
        job, _ = await backend.submit(request_of())
        done = await wait_finished(backend, job.id)
    assert done.status == "succeeded" and done.attempts == 2 and len(fake.calls) == 2


async def test_bad_input_fails_at_once_without_retries(settings: Settings) -> None:
    fake = CountingSummarizer(failures=[InvalidInput("the text is empty")])
    async with running_backend(settings, summarize=fake) as backend:
        job, _ = await backend.submit(request_of())
        done = await wait_finished(backend, job.id)
    assert done.status == "failed" and done.attempts == 1 and len(fake.calls) == 1
    assert done.error is not None and done.error["status"] == 400


async def test_an_identical_request_is_answered_from_the_cache(settings: Settings) -> None:
    fake = CountingSummarizer()
    async with running_backend(settings, summarize=fake) as backend:
        first, _ = await backend.submit(request_of())
        await wait_finished(backend, first.id)
        # Same content with other line breaks and spaces: same key, no second call.
        second, _ = await backend.submit(request_of(ARTICLE.replace(" ", "\n  ", 3)))
    assert second.status == "succeeded" and second.attempts == 0
    assert len(fake.calls) == 1
    assert second.result is not None and second.result["usage"]["llm_calls"] == 0


async def test_a_different_option_is_not_a_cache_hit(settings: Settings) -> None:
    fake = CountingSummarizer()
    async with running_backend(settings, summarize=fake) as backend:
        first, _ = await backend.submit(request_of(max_sentences=3))
        await wait_finished(backend, first.id)
        second, _ = await backend.submit(request_of(max_sentences=4))
        await wait_finished(backend, second.id)
    assert len(fake.calls) == 2


# --- HTTP ------------------------------------------------------------------------------------------


def jobs_app(settings: Settings, summarize: Any) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.state.job_summarizer = summarize
    install_problem_handlers(app)
    app.include_router(router)
    return app


def poll(client: TestClient, url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"{url} did not finish")


def test_post_answers_202_with_the_job_url_and_the_job_completes(settings: Settings) -> None:
    with TestClient(jobs_app(settings, CountingSummarizer())) as client:
        answer = client.post("/v1/jobs", json={"text": ARTICLE, "max_sentences": 2})
        assert answer.status_code == 202
        assert answer.headers["location"] == f"/v1/jobs/{answer.json()['id']}"
        assert answer.json()["status"] == "queued"
        body = poll(client, answer.headers["location"])
    assert body["status"] == "succeeded" and body["attempts"] == 1
    assert body["progress"] == {"done": 3, "total": 3}
    assert body["result"]["summary"][0]["verdict"] == "supported"
    # The article is not echoed back on every poll: its length stands in for it.
    assert body["request"] == {"text_chars": len(ARTICLE), "max_sentences": 2, "include_sentences": False}


def test_polling_a_job_does_not_send_the_article_back_each_time(settings: Settings) -> None:
    article = " ".join([ARTICLE] * 400)  # ~36,000 characters
    with TestClient(jobs_app(settings, CountingSummarizer())) as client:
        answer = client.post("/v1/jobs", json={"html": f"<p>{article}</p>"})
        queued = client.get(answer.headers["location"])
    assert answer.status_code == 202 and queued.status_code == 200
    assert len(answer.content) < 2_000 and len(queued.content) < 2_000, len(queued.content)
    assert queued.json()["request"]["html_chars"] == len(article) + 7


def test_idempotency_key_makes_a_retried_post_return_the_same_job(settings: Settings) -> None:
    fake = CountingSummarizer()
    with TestClient(jobs_app(settings, fake)) as client:
        headers = {"Idempotency-Key": "order-42"}
        first = client.post("/v1/jobs", json={"text": ARTICLE}, headers=headers)
        again = client.post("/v1/jobs", json={"text": ARTICLE}, headers=headers)
        other = client.post("/v1/jobs", json={"text": ARTICLE + " More."}, headers=headers)
        poll(client, first.headers["location"])
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert len(fake.calls) == 1


def test_an_unknown_job_is_a_404_problem(settings: Settings) -> None:
    with TestClient(jobs_app(settings, CountingSummarizer())) as client:
        answer = client.get("/v1/jobs/nope")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert "no job with id 'nope'" in answer.json()["detail"]


def test_a_callback_to_a_private_address_is_refused_up_front(settings: Settings) -> None:
    with TestClient(jobs_app(settings, CountingSummarizer())) as client:
        answer = client.post("/v1/jobs", json={"text": ARTICLE, "callback_url": "http://127.0.0.1:9/hook"})
    assert answer.status_code == 400
    assert answer.json()["type"].endswith("url-not-allowed")


@pytest.mark.parametrize("callback_format", ["json", "slack"])
def test_the_callback_gets_the_finished_job(settings: Settings, httpx_mock: HTTPXMock, callback_format: str) -> None:
    allowed = settings.model_copy(update={"fetch_allow_private": True})  # the test receiver is on loopback
    httpx_mock.add_response(url="http://127.0.0.1:9/hook", method="POST", json={"ok": True})
    with TestClient(jobs_app(allowed, CountingSummarizer())) as client:
        answer = client.post(
            "/v1/jobs",
            json={"text": ARTICLE, "callback_url": "http://127.0.0.1:9/hook", "callback_format": callback_format},
        )
        body = poll(client, answer.headers["location"])
    assert body["status"] == "succeeded" and body["callback_error"] is None
    [sent] = httpx_mock.get_requests()
    payload = json.loads(sent.content)
    if callback_format == "json":
        assert payload["id"] == body["id"] and payload["status"] == "succeeded" and payload["result"]
    else:
        assert payload["text"] and payload["blocks"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Prefer": "respond-async"}, True), ({"Prefer": "wait=10, respond-async"}, True), ({}, False)],
)
def test_wants_async_reads_the_prefer_header(headers: dict[str, str], expected: bool) -> None:
    from starlette.requests import Request

    scope = {"type": "http", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    assert wants_async(Request(scope), request_of()) is expected


async def test_a_slash_command_job_posts_to_its_response_url(settings: Settings, httpx_mock: HTTPXMock) -> None:
    slack = settings.model_copy(update={"slack_response_hosts": ["127.0.0.1"]})
    httpx_mock.add_response(url="http://127.0.0.1:9/response", method="POST", text="ok")
    async with running_backend(slack, summarize=CountingSummarizer()) as backend:
        job, _ = await backend.submit(
            request_of(),
            callback_url="http://127.0.0.1:9/response",
            callback_format="slack_response_url",
            callback_options={"response_type": "in_channel"},
        )
        done = await wait_finished(backend, job.id)
    assert done.status == "succeeded" and done.callback_error is None
    [sent] = httpx_mock.get_requests()
    message = json.loads(sent.content)
    assert message["response_type"] == "in_channel" and message["blocks"] and message["text"]


async def test_a_failed_mention_job_tells_the_thread(settings: Settings, httpx_mock: HTTPXMock) -> None:
    from pydantic import SecretStr

    slack = settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-test")})
    httpx_mock.add_response(
        url=f"{slack.slack_api_base_url.rstrip('/')}/chat.postMessage", method="POST", json={"ok": True, "ts": "2.0"}
    )
    fake = CountingSummarizer(failures=[InvalidInput("no usable article text")])
    async with running_backend(slack, summarize=fake) as backend:
        job, _ = await backend.submit(
            request_of(), callback_format="slack_chat", callback_options={"channel": "C1", "thread_ts": "1.0"}
        )
        done = await wait_finished(backend, job.id)
    assert done.status == "failed" and done.callback_error is None
    [sent] = httpx_mock.get_requests()
    message = json.loads(sent.content)
    assert (message["channel"], message["thread_ts"]) == ("C1", "1.0")
    assert "no usable article text" in message["text"]


async def test_a_response_url_outside_the_allow_list_is_refused(settings: Settings) -> None:
    async with running_backend(settings, summarize=CountingSummarizer()) as backend:
        with pytest.raises(InvalidInput, match="response_url refused"):
            await backend.submit(
                request_of(), callback_url="https://evil.example/x", callback_format="slack_response_url"
            )


async def test_an_unexpected_delivery_error_still_ends_the_job(settings: Settings, httpx_mock: HTTPXMock) -> None:
    allowed = settings.model_copy(update={"fetch_allow_private": True})  # the test receiver is on loopback
    httpx_mock.add_exception(RuntimeError("transport bug"), url="http://127.0.0.1:9/hook")
    async with running_backend(allowed, summarize=CountingSummarizer()) as backend:
        job, _ = await backend.submit(request_of(), callback_url="http://127.0.0.1:9/hook")
        done = await wait_finished(backend, job.id, timeout_s=5)
    assert done.status == "succeeded" and "RuntimeError: transport bug" in (done.callback_error or "")


class FailingFinishStore(SQLiteJobStore):
    """A store whose first `finish` raises, as a bug or an outage between summary and record would."""

    failures = 1

    async def finish(self, job_id: str, attempt: int, **outcome: Any) -> bool:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("store hiccup")
        return await super().finish(job_id, attempt, **outcome)


async def test_a_crash_after_summarizing_ends_the_attempt_and_a_retry_finishes_it(settings: Settings) -> None:
    from service.jobs.runner import JobRunner, Outcome

    store = FailingFinishStore(settings.job_db_path)
    runner = JobRunner(store=store, cache=None, settings=settings, summarize=CountingSummarizer())
    job, _ = await store.create(Job(id=new_job_id(), request={"text": ARTICLE}))
    try:
        claimed = await store.claim_next("w", lease_s=60)
        assert claimed is not None
        assert await runner.run_attempt(job.id, 1) is Outcome.RETRY
        stored = await store.get(job.id)
        assert stored is not None and stored.status == "queued" and "store hiccup" in stored.error["detail"]
        again = await store.claim_next("w", lease_s=60)
        assert again is not None and again.attempts == 2
        assert await runner.run_attempt(job.id, 2) is Outcome.SUCCEEDED
    finally:
        await store.close()


class CrashingRunner:
    """A runner whose first attempt dies with an unexpected error (after the claim, before any record)."""

    def __init__(self, real: Any) -> None:
        self.real, self.settings, self.attempts = real, real.settings, []

    async def run_attempt(self, job_id: str, attempt: int) -> Any:
        self.attempts.append(attempt)
        if attempt == 1:
            raise RuntimeError("worker bug")
        return await self.real.run_attempt(job_id, attempt)


async def test_a_crashed_attempt_is_not_kept_running_by_lease_renewal(settings: Settings) -> None:
    from service.jobs.embedded_worker import EmbeddedWorker
    from service.jobs.runner import JobRunner

    store = SQLiteJobStore(settings.job_db_path)
    runner = CrashingRunner(JobRunner(store=store, cache=None, settings=settings, summarize=CountingSummarizer()))
    worker = EmbeddedWorker(store, runner, concurrency=1, lease_s=0.3, poll_s=0.05)  # type: ignore[arg-type]
    job, _ = await store.create(Job(id=new_job_id(), request={"text": ARTICLE}))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ((stored := await store.get(job.id)) is None or not stored.finished):
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await store.close()
    assert runner.attempts == [1, 2]  # the crashed attempt's lease lapsed and the job ran again
    assert stored is not None and stored.status == "succeeded"


# --- with the real service -----------------------------------------------------------------------


def test_the_seed_article_through_the_real_pipeline_as_a_job(settings: Settings, seed_text: str) -> None:
    from service.interfaces.api import create_app

    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/summaries", json={"text": seed_text}, headers={"Prefer": "respond-async"})
        assert answer.status_code == 202 and answer.headers["preference-applied"] == "respond-async"
        body = poll(client, answer.headers["location"], timeout_s=60)
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"]["done"] == body["progress"]["total"] >= 1
    result = SummaryResponse.model_validate(body["result"])
    assert len(result.summary) >= 3
    for sentence in result.summary:
        for citation in sentence.citations:
            assert result.document.text[citation.start : citation.end] == citation.quote


def test_the_service_imports_without_the_redis_extra() -> None:
    import subprocess
    import sys

    from tests.process_helpers import ROOT

    # `pip install -e .` (no [redis] extra) must still serve the API and the SQLite worker.
    code = "import sys; sys.modules['redis'] = sys.modules['arq'] = None; import service.interfaces.api, service.jobs.worker"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
