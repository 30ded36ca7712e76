"""Choose and wire the job system from settings: SQLite + in-process worker, or Redis + arq workers.

The API talks only to `JobBackend.submit` and `JobBackend.store`, so both modes share one job API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from service.core.config import Settings
from service.core.schema import SummaryRequest
from service.jobs.cache import RedisResultCache, ResultCache, SQLiteResultCache, Summarizer, as_cache_hit, cache_key
from service.jobs.callbacks import check_callback_target
from service.jobs.embedded_worker import EmbeddedWorker
from service.jobs.job import CallbackFormat, Job, JobStore, new_job_id, request_fingerprint
from service.jobs.runner import JobRunner, load_summarizer
from service.jobs.store_sqlite import SQLiteJobStore

log = logging.getLogger(__name__)


@dataclass
class JobBackend:
    """The job system as the API sees it: the store, the result cache, and how a job reaches a worker."""

    settings: Settings
    store: JobStore
    cache: ResultCache | None
    enqueue: Callable[[str], Awaitable[None]]
    mode: str  # "sqlite" or "redis"
    worker: EmbeddedWorker | None = None
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def submit(
        self,
        request: SummaryRequest,
        *,
        callback_url: str | None = None,
        callback_format: CallbackFormat = "json",
        callback_options: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> tuple[Job, bool]:
        """Accept a request as a job for `owner`; returns (job, created). A repeated Idempotency-Key of the
        same owner returns the first job.

        The callback target is checked now, so a refused URL is a 400 to the caller, not a silent failure later.
        """
        check_callback_target(callback_url, callback_format, self.settings)
        body = request.model_dump(mode="json", exclude_none=True)
        # A request id only labels messages and logs; a retry of the same work arrives with a new one.
        options = {k: v for k, v in (callback_options or {}).items() if k != "request_id"}
        fingerprint = request_fingerprint({"request": body, "callback": [callback_url, callback_format, options]})
        job = Job(
            id=new_job_id(),
            max_attempts=self.settings.job_max_attempts,
            request=body,
            callback_url=callback_url,
            callback_format=callback_format,
            callback_options=callback_options or {},
            owner=owner,
        )
        if self.cache is not None and self.settings.cache_enabled and not (callback_url or callback_options):
            # Already answered before: the job is born finished and no worker is involved.
            job.cache_key = cache_key(request, self.settings)
            stored = await self.cache.get(job.cache_key)
            if stored is not None:
                job.status = "succeeded"
                job.result = as_cache_hit(stored, 0.0).model_dump(mode="json")
        job, created = await self.store.create(job, idempotency_key=idempotency_key, fingerprint=fingerprint)
        if created and not job.finished:
            await self.enqueue(job.id)
        return job, created

    async def close(self) -> None:
        """Close connections in reverse order of opening."""
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()


def prepare_job_file(path: str) -> None:
    """Create the SQLite job file (WAL, schema) once, before `serve` starts its workers.

    The workers then open a file that exists, rather than racing to create it, and a path that
    cannot be written fails here, once, with a plain message, instead of in every worker.
    """
    store = SQLiteJobStore(path)
    cache = SQLiteResultCache(path, ttl_s=60)
    store.db.close()
    cache.db.close()


async def open_backend(settings: Settings, *, summarize: Summarizer | None = None, llm: Any = None) -> JobBackend:
    """The backend for these settings: Redis + arq when REDIS_URL is set, else SQLite."""
    if settings.redis_url:
        from arq import create_pool
        from redis.asyncio import Redis

        from service.jobs.queue_arq import ArqQueue, redis_settings
        from service.jobs.store_redis import RedisJobStore

        redis = Redis.from_url(settings.redis_url)
        queue = ArqQueue(await create_pool(redis_settings(settings)))
        backend = JobBackend(
            settings=settings,
            store=RedisJobStore(redis, retention_s=settings.job_retention_s),
            cache=RedisResultCache(redis, ttl_s=settings.cache_ttl_s),
            enqueue=queue.enqueue,
            mode="redis",
        )
        backend._closers += [redis.aclose, queue.close]
        return backend

    store = SQLiteJobStore(settings.job_db_path)
    cache = SQLiteResultCache(settings.job_db_path, ttl_s=settings.cache_ttl_s)
    worker = EmbeddedWorker(
        store,
        JobRunner(
            store=store,
            cache=cache,
            settings=settings,
            summarize=summarize or load_summarizer(settings.job_summarizer),
            llm=llm,
        ),
        concurrency=settings.job_concurrency,
        lease_s=settings.job_lease_s,
    )

    async def wake(job_id: str) -> None:
        worker.wake()

    backend = JobBackend(settings=settings, store=store, cache=cache, enqueue=wake, mode="sqlite", worker=worker)
    backend._closers += [store.close, cache.close]
    return backend


@contextlib.asynccontextmanager
async def running_backend(
    settings: Settings, *, summarize: Summarizer | None = None, llm: Any = None, run_worker: bool = True
) -> AsyncIterator[JobBackend]:
    """Open the backend and, in SQLite mode, run its worker in this process until the block exits."""
    backend = await open_backend(settings, summarize=summarize, llm=llm)
    stop = asyncio.Event()
    task = None
    if backend.worker is not None and run_worker:
        task = asyncio.create_task(backend.worker.run(stop))
    try:
        yield backend
    finally:
        stop.set()
        if task is not None:
            await task
        await backend.close()
