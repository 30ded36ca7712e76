"""The job model and the store interface every job backend (SQLite, Redis) implements.

A job is one accepted summary request that runs in the background. Its life:

    queued ──claim──▶ running ──▶ succeeded
       ▲                 │   └──▶ failed      (error kept as a problem+json dict)
       └──── retry ──────┘        (worker died or a transient error; `attempts` counts runs)

Every write made while running carries the attempt number that made it, and a store refuses a
write from an older attempt: a worker that was presumed dead but wakes up cannot overwrite the
retry's outcome, so a job completes exactly once.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from service.core.errors import SummaryError
from service.core.redact import redact_credentials, redact_url

JobStatus = Literal["queued", "running", "succeeded", "failed"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})
# How the finished job is delivered: `json` (the job document) and `slack` (an incoming-webhook
# message) to any public URL; `slack_response_url` (a slash command's response_url, allow-listed
# hosts) and `slack_chat` (chat.postMessage with the bot token) for the Slack routes.
CallbackFormat = Literal["json", "slack", "slack_response_url", "slack_chat"]
PublicCallbackFormat = Literal["json", "slack"]

# Tenancy: a job belongs to whoever submitted it, and only they may read it or replay its
# Idempotency-Key. An API caller's owner is "key:" + a hash of its API key (auth.py); jobs from the
# chat doors (Slack, Mattermost) belong to CHAT_OWNER, so no API key can read them or collide with
# their keys. A job with no owner (open mode, no API keys set; or stored before jobs had owners)
# is readable by any caller.
CHAT_OWNER = "chat"
OPEN_NAMESPACE = "open"


class Progress(BaseModel):
    """Chunks summarized so far, out of the total (0 of 0 before the article is chunked)."""

    done: int = 0
    total: int = 0


class Job(BaseModel):
    """One background summary: its request, state, attempt count, progress and outcome."""

    id: str
    status: JobStatus = "queued"
    attempts: int = 0
    max_attempts: int = 3
    progress: Progress = Field(default_factory=Progress)
    request: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    callback_url: str | None = None
    callback_format: CallbackFormat = "json"
    callback_options: dict[str, str] = Field(default_factory=dict)  # response_type, channel, thread_ts; what was posted
    callback_error: str | None = None
    cache_key: str | None = None
    owner: str | None = None  # see CHAT_OWNER above; never shown in the job document
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def visible_to(self, owner: str | None) -> bool:
        """True when a caller with this owner may read the job (its own, or an owner-less one)."""
        return self.owner is None or self.owner == owner

    def public(self, base_path: str = "/v1/jobs") -> dict[str, Any]:
        """The job as GET /v1/jobs/{id} shows it (and a json callback receives it): URL credentials hidden, the article's text or HTML replaced by its length."""
        body = self.model_dump(exclude={"cache_key", "owner"})
        body["callback_url"] = redact_url(body["callback_url"])
        if isinstance(body["request"].get("url"), str):
            body["request"]["url"] = redact_url(body["request"]["url"])
        # The article itself is not echoed on every poll: its length stands in for it (the result,
        # once there, carries the cleaned article that the citations point into).
        for field in ("text", "html"):
            if isinstance(article := body["request"].pop(field, None), str):
                body["request"][f"{field}_chars"] = len(article)
        body["url"] = f"{base_path}/{self.id}"
        return body


def new_job_id() -> str:
    """A fresh, unguessable job id."""
    return uuid.uuid4().hex


def idempotency_slot(owner: str | None, key: str) -> str:
    """Where an Idempotency-Key is stored: inside its owner's namespace, so tenants never share keys."""
    return f"{owner or OPEN_NAMESPACE}|{key}"


def request_fingerprint(request: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell an idempotent retry from a different request."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JobNotFound(SummaryError):
    status, title, type_slug = 404, "Job not found", "job-not-found"


class IdempotencyKeyReused(SummaryError):
    status, title, type_slug = 409, "Idempotency key reused", "idempotency-key-reused"


class JobStore(Protocol):
    """Where jobs live. Implementations: SQLiteJobStore (embedded), RedisJobStore (scale-out)."""

    async def create(
        self, job: Job, *, idempotency_key: str | None = None, fingerprint: str | None = None
    ) -> tuple[Job, bool]:
        """Store a new job, or return the job already stored under `idempotency_key` (created=False).

        The key is looked up in the namespace of `job.owner` only (idempotency_slot). Raises IdempotencyKeyReused when the key was used for a request with another fingerprint.
        """
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        ...

    async def start_attempt(self, job_id: str, attempt: int) -> Job | None:
        """Mark the job running as attempt `attempt`; None when it is finished or a newer attempt owns it."""
        ...

    async def set_progress(self, job_id: str, attempt: int, done: int, total: int) -> bool:
        """Record progress for the current attempt; False (ignored) for a stale attempt."""
        ...

    async def set_callback_options(self, job_id: str, attempt: int, options: dict[str, str]) -> bool:
        """Replace the job's callback options while attempt `attempt` runs (what was already posted, e.g. a
        message's ts), so a later attempt or a restarted worker updates that message; False for a stale attempt."""
        ...

    async def finish(
        self,
        job_id: str,
        attempt: int,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        callback_error: str | None = None,
    ) -> bool:
        """Make the job succeeded (result) or failed (error) once; False when it was already finished
        or another attempt owns it."""
        ...

    async def retry_later(self, job_id: str, attempt: int, delay_s: float, error: dict[str, Any]) -> bool:
        """Show the job queued again after attempt `attempt` failed transiently (runnable after `delay_s`)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# Same prefix as problems.TYPE_PREFIX; spelled out so workers need not import the web layer.
PROBLEM_TYPE_PREFIX = "urn:citesum:problem:"


def abandoned_problem(attempts: int, max_attempts: int) -> dict[str, Any]:
    """The error of a job whose worker died on its last allowed attempt."""
    return {
        "type": PROBLEM_TYPE_PREFIX + "job-abandoned",
        "title": "Summary job failed",
        "status": 500,
        "detail": f"the worker running attempt {attempts} of {max_attempts} stopped before finishing; no attempts left",
        "attempts": attempts,
    }


def problem_from_exception(exc: BaseException, *, attempts: int) -> dict[str, Any]:
    """An RFC 9457 problem dict for a job that ended in `exc` (never a traceback)."""
    if isinstance(exc, SummaryError):
        problem: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + exc.type_slug,
            "title": exc.title,
            "status": exc.status,
            "detail": redact_credentials(exc.message),
        }
    else:
        problem = {
            "type": PROBLEM_TYPE_PREFIX + "job-failed",
            "title": "Summary job failed",
            "status": 500,
            "detail": f"{type(exc).__name__}: {redact_credentials(str(exc))[:300]}",
        }
    problem["attempts"] = attempts
    return problem
