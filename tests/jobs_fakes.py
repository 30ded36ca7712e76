"""Fake summarize entry points for the job tests, selectable in a worker process by import path.

`python -m service worker` runs `CITESUM_JOB_SUMMARIZER` (e.g. `tests.jobs_fakes:slow_summarize`);
these fakes have the entry point's signature, take their pace from JOBS_FAKE_* variables, and
append "start"/"finish" lines to JOBS_FAKE_LOG so a test can count runs across processes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from service.core.config import Settings
from service.core.errors import LLMUnavailable
from service.core.schema import Citation, DocumentInfo, SummaryRequest, SummaryResponse, SummarySentence, Usage


def slow_summarizer_env(runs_log: os.PathLike[str] | str, *, steps: int, step_s: float) -> dict[str, str]:
    """Settings that make a service process run `slow_summarize` at this pace, logging to `runs_log`."""
    return {
        "CITESUM_JOB_SUMMARIZER": "tests.jobs_fakes:slow_summarize",
        "JOBS_FAKE_STEPS": str(steps),
        "JOBS_FAKE_STEP_S": str(step_s),
        "JOBS_FAKE_LOG": str(runs_log),
    }


def canned_response(request: SummaryRequest) -> SummaryResponse:
    """A small, valid response quoting the request's text."""
    text = request.text or "An article."
    return SummaryResponse(
        summary=[
            SummarySentence(
                text=text[:80],
                citations=[Citation(sentence_id="s1", start=0, end=len(text), quote=text)],
                verdict="supported",
                score=1.0,
            )
        ],
        document=DocumentInfo(text=text, sentence_count=1),
        provider="fake",
        model="fake-slow",
        prompt_version="summarize/v1",
        policy=request.policy or "drop",
        usage=Usage(llm_calls=1),
        dropped=[],
        timings_ms={"total_ms": 1.0},
    )


def _log(event: str, request: SummaryRequest) -> None:
    path = os.environ.get("JOBS_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {os.getpid()} {(request.text or '').split(':')[0].split()[0]}\n")


async def slow_summarize(
    request: SummaryRequest,
    *,
    settings: Settings,
    llm: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> SummaryResponse:
    """Takes JOBS_FAKE_STEPS steps of JOBS_FAKE_STEP_S seconds, reporting progress after each."""
    steps = int(os.environ.get("JOBS_FAKE_STEPS", "4"))
    step_s = float(os.environ.get("JOBS_FAKE_STEP_S", "0.25"))
    _log("start", request)
    for done in range(1, steps + 1):
        await asyncio.sleep(step_s)
        if progress is not None:
            progress(done, steps)
    _log("finish", request)
    return canned_response(request)


async def failing_summarize(
    request: SummaryRequest,
    *,
    settings: Settings,
    llm: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> SummaryResponse:
    """Always fails the way an unreachable model does (retryable)."""
    _log("start", request)
    raise LLMUnavailable("the model server refused the connection", attempts=4)
