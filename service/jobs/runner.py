"""Run one attempt of a job, the same way under every backend: summarize, call back, record once.

Order matters for "nothing lost": the callback is sent before the outcome is recorded, so a worker
killed in between re-runs the attempt (answered from the result cache, no LLM calls) and sends the
callback again: callbacks are at-least-once, the recorded outcome exactly once. Slack callbacks (and
their early posts, chat_updates.py) record what they posted in the job's callback options, so the
re-sent one edits that message instead of adding a second.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import importlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any

from service.core.config import Settings
from service.core.errors import SummaryError
from service.core.schema import SummaryRequest
from service.jobs.cache import ResultCache, Summarizer, cached_summarize
from service.jobs.callbacks import send_callback
from service.jobs.chat_updates import ChatUpdates
from service.jobs.job import Job, JobStore, abandoned_problem, problem_from_exception

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What became of an attempt."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"  # transient failure, attempts left: run it again later
    SKIPPED = "skipped"  # already finished, or a newer attempt owns it


# Settings written before the package was split into wings name the old flat module: keep them working.
_MOVED_MODULES = {"service.summarize": "service.pipeline.summarize"}


def load_summarizer(path: str) -> Summarizer:
    """The summarize function named `module:function` (settings.job_summarizer)."""
    module_name, _, function_name = path.partition(":")
    module_name = _MOVED_MODULES.get(module_name, module_name)
    return getattr(importlib.import_module(module_name), function_name)


def takes_events(summarize: Summarizer) -> bool:
    """Whether the summarizer takes `events` (summarize_request does; a plugged-in one may not)."""
    try:
        parameters = inspect.signature(summarize).parameters
    except (TypeError, ValueError):
        return False
    return "events" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def is_retryable(exc: BaseException) -> bool:
    """Input problems (4xx) fail at once; upstream trouble (5xx) and unexpected errors may pass next time."""
    return not (isinstance(exc, SummaryError) and exc.status < 500)


def retry_delay_s(attempt: int, base_s: float) -> float:
    """Backoff before re-running a failed attempt: base, 2·base, 4·base … capped at 30 s."""
    return min(30.0, base_s * 2 ** (attempt - 1))


class ProgressRecorder:
    """The sync `progress(done, total)` callback: keeps the latest value, one async writer drains it."""

    def __init__(self, store: JobStore, job_id: str, attempt: int) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self._latest: tuple[int, int] | None = None
        self._writer: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        self._latest = (done, total)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._latest is not None:
            done, total = self._latest
            self._latest = None
            await self.store.set_progress(self.job_id, self.attempt, done, total)

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer


@dataclass
class JobRunner:
    """Everything an attempt needs; built once per worker process."""

    store: JobStore
    cache: ResultCache | None
    settings: Settings
    summarize: Summarizer
    llm: Any = None  # LLMClient | None: None means the embedded extractive summarizer

    async def run_attempt(self, job_id: str, attempt: int) -> Outcome:
        """Run attempt number `attempt` of the job and record what happened."""
        current = await self.store.get(job_id)
        if current is None or current.finished:
            return Outcome.SKIPPED
        if attempt > current.max_attempts:
            # The queue handed us one try more than allowed: the previous worker died on the last one.
            error = abandoned_problem(current.attempts, current.max_attempts)
            return await self._finish(current, current.attempts, error=error)
        job = await self.store.start_attempt(job_id, attempt)
        if job is None:
            return Outcome.SKIPPED
        log.info("job %s: attempt %d of %d", job_id, attempt, job.max_attempts)
        progress = ProgressRecorder(self.store, job_id, attempt)
        remember = functools.partial(self.store.set_callback_options, job_id, attempt)
        # Early sentences in chat, when the summarizer reports them (settings.job_summarizer may not).
        updates = ChatUpdates.for_job(job, self.settings, remember) if takes_events(self.summarize) else None
        try:
            request = SummaryRequest.model_validate(job.request)
            async with asyncio.timeout(self.settings.job_timeout_s):
                response, hit = await cached_summarize(
                    request,
                    settings=self.settings,
                    summarize=self.summarize,
                    cache=self.cache,
                    progress=progress,
                    llm=self.llm,
                    **({"events": updates} if updates is not None else {}),
                )
        except Exception as exc:
            await progress.flush()
            if updates is not None:
                job = await updates.close()  # with what it posted: the next message replaces that one
            problem = problem_from_exception(exc, attempts=attempt)
            if is_retryable(exc) and attempt < job.max_attempts:
                # An early message stays: the store remembers it, so the retry updates it in place.
                log.warning("job %s: attempt %d failed (%s); will retry", job_id, attempt, problem["detail"])
                await self.store.retry_later(
                    job_id, attempt, retry_delay_s(attempt, self.settings.job_retry_backoff_s), problem
                )
                return Outcome.RETRY
            log.warning("job %s: failed after %d attempt(s): %s", job_id, attempt, problem["detail"])
            return await self._finish_or_end(job, attempt, error=problem)
        await progress.flush()
        if updates is not None:
            job = await updates.close()
        if hit:
            log.info("job %s: answered from the result cache", job_id)
        return await self._finish_or_end(job, attempt, result=response.model_dump(mode="json"))

    async def _finish_or_end(
        self, job: Job, attempt: int, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> Outcome:
        """`_finish`; if anything in it raises, the attempt still ends (retried or failed), never left running."""
        try:
            return await self._finish(job, attempt, result=result, error=error)
        except Exception as exc:
            log.exception("job %s: attempt %d crashed after summarizing", job.id, attempt)
            problem = problem_from_exception(exc, attempts=attempt)
            if attempt < job.max_attempts:
                delay = retry_delay_s(attempt, self.settings.job_retry_backoff_s)
                if await self.store.retry_later(job.id, attempt, delay, problem):
                    return Outcome.RETRY
                return Outcome.SKIPPED
            recorded = await self.store.finish(job.id, attempt, error=problem, callback_error=problem["detail"])
            return Outcome.FAILED if recorded else Outcome.SKIPPED

    async def _finish(
        self, job: Job, attempt: int, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> Outcome:
        done = job.model_copy(
            update={"status": "failed" if error else "succeeded", "result": result, "error": error, "attempts": attempt}
        )
        remember = functools.partial(self.store.set_callback_options, job.id, attempt)
        callback_error = await send_callback(done, settings=self.settings, remember=remember)
        recorded = await self.store.finish(job.id, attempt, result=result, error=error, callback_error=callback_error)
        if not recorded:
            return Outcome.SKIPPED
        return Outcome.FAILED if error else Outcome.SUCCEEDED
