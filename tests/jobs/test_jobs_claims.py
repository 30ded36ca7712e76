"""Several processes claiming from one SQLite job file: every queued job is claimed exactly once.

This is what lets `serve --workers N` run N embedded workers on one file (and `python -m service
worker` processes beside them): `claim_next` takes the job inside BEGIN IMMEDIATE.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from service.jobs.job import Job, new_job_id
from service.jobs.store_sqlite import SQLiteJobStore

JOBS = 60
PROCESSES = 4


def _claim_until_empty(path: str, owner: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    async def claim() -> list[str]:
        store = SQLiteJobStore(path)
        claimed = []
        try:
            while (job := await store.claim_next(owner, lease_s=30)) is not None:
                claimed.append(job.id)
        finally:
            await store.close()
        return claimed

    start.wait(60)  # every process imported and ready: the claims overlap
    out.put((owner, asyncio.run(claim())))


async def _queue_jobs(path: Path) -> list[str]:
    store = SQLiteJobStore(path)
    ids = []
    for n in range(JOBS):
        job, created = await store.create(Job(id=new_job_id(), request={"text": f"article {n}"}))
        assert created
        ids.append(job.id)
    await store.close()
    return ids


def test_processes_racing_for_jobs_claim_each_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    queued = asyncio.run(_queue_jobs(path))
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=_claim_until_empty, args=(str(path), f"worker-{i}", start, out)) for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = dict(out.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    claimed = [job_id for ids in results.values() for job_id in ids]
    assert len(claimed) == len(set(claimed)) == JOBS  # nobody claimed a job twice, none was left
    assert set(claimed) == set(queued)
    assert sum(1 for ids in results.values() if ids) >= 2  # the race really was run by several processes

    async def check() -> list[Job]:
        store = SQLiteJobStore(path)
        try:
            return [job for job_id in queued if (job := await store.get(job_id)) is not None]
        finally:
            await store.close()

    jobs = asyncio.run(check())
    assert {job.status for job in jobs} == {"running"} and {job.attempts for job in jobs} == {1}
