"""Redis mode's queue: arq carries job ids from the API to `python -m service worker` processes.

Why arq: asyncio-native like the service, Redis only, small and readable, and "pessimistic": a job
stays in the queue until a worker finishes it, so the job of a SIGKILLed worker is run again by
another worker once the dead one's in-progress key expires (job timeout + 10 s), with `job_try`
counting attempts. We give arq one try more than CITESUM_JOB_MAX_ATTEMPTS so that the extra try is
ours to turn into a `failed` job with a reason, instead of arq dropping it silently.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry, func
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis

from service.core.config import Settings
from service.jobs.cache import RedisResultCache, Summarizer
from service.jobs.runner import JobRunner, Outcome, load_summarizer, retry_delay_s
from service.jobs.store_redis import RedisJobStore

log = logging.getLogger(__name__)

FUNCTION_NAME = "summarize_job"
QUEUE_NAME = "citesum:queue"
# arq's own timeout stays behind ours (job_runner's asyncio.timeout), so ours records the failure.
ARQ_TIMEOUT_MARGIN_S = 2.0


async def summarize_job(ctx: dict[str, Any], job_id: str) -> str:
    """The arq task: run attempt `job_try` of the job; a transient failure is retried by arq."""
    runner: JobRunner = ctx["runner"]
    attempt = int(ctx["job_try"])
    try:
        outcome = await runner.run_attempt(job_id, attempt)
    except Exception:
        # Not even the outcome could be recorded (the store is down?): without a retry arq would drop
        # the task and the job would show `running` for ever. The next try records it, or gives up
        # with job-abandoned once the attempts are used up.
        log.exception("job %s: attempt %d crashed; retrying", job_id, attempt)
        outcome = Outcome.RETRY
    if outcome is Outcome.RETRY:
        raise Retry(defer=retry_delay_s(attempt, runner.settings.job_retry_backoff_s))
    return outcome.value


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from REDIS_URL."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return RedisSettings.from_dsn(settings.redis_url)


def worker_settings(settings: Settings, *, summarize: Summarizer | None = None, llm: Any = None) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`: our one task, attempt limits, timeouts, start-up wiring."""

    async def startup(ctx: dict[str, Any]) -> None:
        redis = Redis.from_url(settings.redis_url)  # type: ignore[arg-type]
        client = llm
        if client is None and settings.llm_configured:
            from service.pipeline.llm import LLMClient

            client = ctx["owned_llm"] = LLMClient(settings)
        ctx["redis"] = redis
        ctx["runner"] = JobRunner(
            store=RedisJobStore(redis, retention_s=settings.job_retention_s),
            cache=RedisResultCache(redis, ttl_s=settings.cache_ttl_s) if settings.cache_enabled else None,
            settings=settings,
            summarize=summarize or load_summarizer(settings.job_summarizer),
            llm=client,
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "owned_llm" in ctx:
            await ctx["owned_llm"].aclose()
        if "redis" in ctx:
            await ctx["redis"].aclose()

    return {
        "functions": [
            func(
                summarize_job,
                name=FUNCTION_NAME,
                max_tries=settings.job_max_attempts + 1,
                timeout=settings.job_timeout_s + ARQ_TIMEOUT_MARGIN_S,
            )
        ],
        "redis_settings": redis_settings(settings),
        "queue_name": QUEUE_NAME,
        "max_jobs": settings.job_concurrency,
        "job_timeout": settings.job_timeout_s + ARQ_TIMEOUT_MARGIN_S,
        "keep_result": 0,  # outcomes live in our job store, not in arq's result keys
        "poll_delay": 0.2,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "health_check_interval": 10,
    }


class ArqQueue:
    """Hands job ids to the workers."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def enqueue(self, job_id: str) -> None:
        """Queue the job; arq ignores a second enqueue of the same id while the first is pending."""
        await self.pool.enqueue_job(FUNCTION_NAME, job_id, _job_id=job_id, _queue_name=QUEUE_NAME)

    async def close(self) -> None:
        await self.pool.aclose()
