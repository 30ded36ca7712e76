"""SQLite mode across processes: a worker killed with SIGKILL mid-job; after a restart the job completes once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from service.jobs.job import Job, new_job_id
from service.jobs.store_sqlite import SQLiteJobStore
from tests.jobs_fakes import slow_summarizer_env
from tests.process_helpers import run_events, service_env, start_service, stop, wait_for

pytestmark = pytest.mark.slow


def get_job(db: Path, job_id: str) -> Job:
    async def read() -> Job:
        store = SQLiteJobStore(db)
        try:
            job = await store.get(job_id)
        finally:
            await store.close()
        assert job is not None
        return job

    return asyncio.run(read())


def test_a_job_survives_kill_9_of_its_worker_and_completes_once(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    runs = tmp_path / "runs.log"
    env = service_env(
        {
            "CITESUM_JOB_DB_PATH": str(db),
            "CITESUM_JOB_LEASE_S": "1",
            "CITESUM_JOB_CONCURRENCY": "1",
            **slow_summarizer_env(runs, steps=6, step_s=0.4),
        }
    )

    async def submit() -> str:
        store = SQLiteJobStore(db)
        job, _ = await store.create(Job(id=new_job_id(), request={"text": "alpha: the talks resume in March."}))
        await store.close()
        return job.id

    job_id = asyncio.run(submit())

    first = start_service(["worker"], env, tmp_path / "worker1.log")
    try:
        wait_for(lambda: get_job(db, job_id).progress.done >= 2, 20, "the first worker to be mid-job")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = get_job(db, job_id)
    assert killed.status == "running" and killed.attempts == 1
    assert [e for e, _, _ in run_events(runs)] == ["start"]

    second = start_service(["worker"], env, tmp_path / "worker2.log")
    try:
        done = wait_for(lambda: (job := get_job(db, job_id)).finished and job, 30, "the job to finish after restart")
    finally:
        assert stop(second) == 0, (tmp_path / "worker2.log").read_text()

    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert done.progress.done == done.progress.total == 6
    events = run_events(runs)
    assert [e for e, _, _ in events] == ["start", "start", "finish"]
    assert events[0][1] == first.pid and events[1][1] == events[2][1] == second.pid


def test_the_api_with_its_embedded_worker_restarted_mid_job_completes_the_job(tmp_path: Path) -> None:
    import httpx

    from tests.process_helpers import free_port, start_api

    runs = tmp_path / "runs.log"
    env = service_env(
        {
            "CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"),
            "CITESUM_JOB_LEASE_S": "1",
            **slow_summarizer_env(runs, steps=6, step_s=0.4),
        }
    )
    port = free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def job_status(url: str) -> dict | None:
        try:
            return client.get(url).json()
        except httpx.TransportError:
            return None

    first = start_api(port, env, tmp_path / "api1.log")
    try:
        wait_for(lambda: job_status("/healthz"), 30, "the API to start", watch=first)
        answer = client.post(
            "/v1/summaries", json={"text": "beta: the talks resume in March."}, headers={"Prefer": "respond-async"}
        )
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        wait_for(
            lambda: (job_status(location) or {}).get("progress", {}).get("done", 0) >= 2, 20, "the job to be mid-run"
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    second = start_api(port, env, tmp_path / "api2.log")
    try:
        done = wait_for(
            lambda: (j := job_status(location)) and j["status"] in ("succeeded", "failed") and j, 30, "the job"
        )
    finally:
        client.close()
        stop(second)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert [e for e, _, _ in run_events(runs)] == ["start", "start", "finish"]
