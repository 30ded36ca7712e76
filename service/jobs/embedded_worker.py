"""The embedded worker: runs queued jobs from the SQLite store inside this process.

Each claimed job is leased to this worker; the lease is renewed while the process lives. When a
process dies, another worker (or this one after a restart) finds the lapsed lease and re-queues the
job with its attempt count kept, or fails it with a reason once it is out of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

from service.jobs.callbacks import send_callback
from service.jobs.job import Job
from service.jobs.runner import JobRunner
from service.jobs.store_sqlite import SQLiteJobStore

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """Claims and runs jobs from a SQLiteJobStore, at most `concurrency` at once."""

    def __init__(
        self,
        store: SQLiteJobStore,
        runner: JobRunner,
        *,
        concurrency: int,
        lease_s: float,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], str] = {}  # running attempt → its job id

    def wake(self) -> None:
        """Look for work now rather than at the next poll (called after a local submit)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, grace_s: float = 10.0) -> None:
        """Work until `stop` is set, then give running jobs `grace_s` to finish."""
        log.info("embedded worker %s: started (concurrency %d)", self.owner, self.concurrency)
        next_upkeep = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_upkeep:
                    await self._upkeep()
                    next_upkeep = time.monotonic() + self.lease_s / 3
                while len(self._tasks) < self.concurrency:
                    job = await self.store.claim_next(self.owner, self.lease_s)
                    if job is None:
                        break
                    task = asyncio.create_task(self._run(job))
                    self._tasks[task] = job.id
                    task.add_done_callback(self._task_done)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await self._wake.wait()
        finally:
            if self._tasks:
                # Unfinished jobs keep their lease and are re-queued when it lapses.
                _, pending = await asyncio.wait(list(self._tasks), timeout=grace_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            log.info("embedded worker %s: stopped", self.owner)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A freed slot is a reason to look for work now: the poll is only for what no local event
        # announces (jobs submitted by other processes, retries coming due, lapsed leases).
        self._tasks.pop(task, None)
        self._wake.set()

    async def _upkeep(self) -> None:
        # Renew the leases of the attempts still running here first, so only dead workers' jobs look
        # abandoned. Only those: a job whose task is gone (it crashed) must lapse and be recovered,
        # not be kept `running` for ever by a live process.
        await self.store.renew_leases(self.owner, self.lease_s, list(self._tasks.values()))
        requeued, failed = await self.store.recover_expired()
        for job_id in requeued:
            log.warning("job %s: its worker stopped mid-run; re-queued", job_id)
        for job in failed:
            log.warning("job %s: its worker stopped on the last attempt; failed", job.id)
            await send_callback(job, settings=self.runner.settings)
        # Finished jobs (and their idempotency keys) are kept for the retention period, then dropped.
        await self.store.purge_finished(self.runner.settings.job_retention_s)

    async def _run(self, job: Job) -> None:
        try:
            await self.runner.run_attempt(job.id, job.attempts)
        except Exception:  # one broken job must not stop the worker; the lease re-queues it
            log.exception("job %s: attempt %d crashed", job.id, job.attempts)
