"""HTTP doors to the job system: POST /v1/jobs, GET /v1/jobs/{id}, and async mode of POST /v1/summaries.

The router's lifespan opens the job backend (and, in SQLite mode, the in-process worker) on the
app's settings and LLM client, so including the router is all an app needs to do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, HttpUrl

from service.core.config import get_settings
from service.core.errors import InvalidInput
from service.core.schema import SummaryRequest
from service.jobs.backend import JobBackend, running_backend
from service.jobs.job import JobNotFound, PublicCallbackFormat

ASYNC_PREFERENCE = "respond-async"
MAX_IDEMPOTENCY_KEY_CHARS = 255  # a UUID is 36; the same bound as Stripe's keys


class SummaryJobRequest(SummaryRequest):
    """POST /v1/jobs body: a summary request plus where to POST the finished job."""

    callback_url: HttpUrl | None = Field(
        default=None, description="Called once the job finishes (public http(s) hosts only, like `url`)."
    )
    callback_format: PublicCallbackFormat = Field(
        default="json", description="`json`: the job document; `slack`: a Block Kit message (incoming webhook)."
    )


@asynccontextmanager
async def jobs_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the job backend for the app's lifetime (app.state.jobs)."""
    settings = getattr(app.state, "settings", None) or get_settings()
    summarize = getattr(app.state, "job_summarizer", None)  # tests inject a fake here
    async with running_backend(
        settings,
        summarize=summarize,
        llm=getattr(app.state, "llm", None),
        run_worker=settings.embedded_worker,
    ) as backend:
        app.state.jobs = backend
        yield


router = APIRouter(tags=["jobs"], lifespan=jobs_lifespan)


def get_backend(request: Request) -> JobBackend:
    """The app's job backend."""
    return request.app.state.jobs


def wants_async(request: Request, body: SummaryRequest | None = None) -> bool:
    """True for `Prefer: respond-async` (RFC 7240) or a body with `"async": true`."""
    preferences = {p.split("=")[0].strip().lower() for p in request.headers.get("prefer", "").split(",")}
    return ASYNC_PREFERENCE in preferences or bool(getattr(body, "async_", False))


def caller_owner(request: Request) -> str | None:
    """The tenant of this request (set by AccessMiddleware from the API key); None when the service runs open."""
    return getattr(request.state, "owner", None)


def idempotency_key(request: Request) -> str | None:
    """The Idempotency-Key header, if sent; 400 when it is empty or over MAX_IDEMPOTENCY_KEY_CHARS."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip():
        raise InvalidInput("the Idempotency-Key header is empty; send a unique value per request (e.g. a UUID)")
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidInput(
            f"the Idempotency-Key header has {len(key):,} characters; at most {MAX_IDEMPOTENCY_KEY_CHARS} are allowed"
        )
    return key


def _accepted(request: Request, payload: dict[str, Any], created: bool) -> JSONResponse:
    headers = {"Location": payload["url"], "Retry-After": "1"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    if ASYNC_PREFERENCE in request.headers.get("prefer", "").lower():
        headers["Preference-Applied"] = ASYNC_PREFERENCE
    return JSONResponse(payload, status_code=202, headers=headers)


async def accept_async_summary(
    request: Request,
    body: SummaryRequest,
    *,
    callback_url: str | None = None,
    callback_format: PublicCallbackFormat = "json",
) -> JSONResponse:
    """202 + Location of a new job for `body` (the same job again for a repeated Idempotency-Key)."""
    # Only the fields that shape the summary go into the job (not async / callback switches).
    fields = set(SummaryRequest.model_fields) - {"async_", "callback_url", "callback_format"}
    plain = SummaryRequest.model_validate(body.model_dump(include=fields, exclude_none=True))
    callback = callback_url or getattr(body, "callback_url", None)
    job, created = await get_backend(request).submit(
        plain,
        callback_url=str(callback) if callback else None,
        callback_format=getattr(body, "callback_format", callback_format),
        idempotency_key=idempotency_key(request),
        owner=caller_owner(request),
    )
    return _accepted(request, job.public(), created)


@router.post("/v1/jobs", status_code=202, summary="Start a background summary")
async def create_job(request: Request, body: SummaryJobRequest) -> JSONResponse:
    """Accept a summary request as a job: 202 with its URL; poll it, or get a callback when done."""
    return await accept_async_summary(request, body)


@router.get("/v1/jobs/{job_id}", summary="A job's status, progress and result")
async def get_job(request: Request, job_id: str) -> JSONResponse:
    """Status (queued/running/succeeded/failed), attempts, progress (chunks done of total), result or error."""
    job = await get_backend(request).store.get(job_id)
    if job is None or not job.visible_to(caller_owner(request)):  # another tenant's job: as if it did not exist
        raise JobNotFound(f"no job with id {job_id!r}; jobs are kept for a limited time after they finish")
    return JSONResponse(job.public())
