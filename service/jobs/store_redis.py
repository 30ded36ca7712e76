"""The scale-out job store: one Redis hash per job, shared by the API and every worker process.

State changes are small Lua scripts, so "only if still running as attempt N" is checked and
applied atomically even with many workers. Queueing itself is arq's job (service/queue_arq.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from service.jobs.job import IdempotencyKeyReused, Job, Progress, idempotency_slot

PREFIX = "citesum:job:"
IDEMPOTENCY_PREFIX = "citesum:idempotency:"

# KEYS[1] job hash, KEYS[2] idempotency key ("" when none)
# ARGV: fingerprint, ttl, job id, then field/value pairs of the new job.
# Returns the "fingerprint job-id" stored under the key when it already exists, else creates the job.
_CREATE = """
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[3], 'EX', ARGV[2])
end
return false
"""

# ARGV: attempt, now
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'attempts')) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', ARGV[1], 'updated_at', ARGV[2])
return 1
"""

# ARGV: attempt, then field/value pairs to set when the job is running as that attempt
_UPDATE_IF_OWNER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
"""


def _job_fields(job: Job) -> dict[str, str]:
    return {
        "id": job.id,
        "status": job.status,
        "attempts": str(job.attempts),
        "max_attempts": str(job.max_attempts),
        "progress_done": str(job.progress.done),
        "progress_total": str(job.progress.total),
        "request": json.dumps(job.request),
        "result": json.dumps(job.result),
        "error": json.dumps(job.error),
        "callback_url": job.callback_url or "",
        "callback_format": job.callback_format,
        "callback_options": json.dumps(job.callback_options),
        "callback_error": job.callback_error or "",
        "cache_key": job.cache_key or "",
        "owner": job.owner or "",
        "created_at": repr(job.created_at),
        "updated_at": repr(job.updated_at),
    }


def _job_from_fields(raw: dict[bytes, bytes]) -> Job:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    return Job(
        id=f["id"],
        status=f["status"],  # type: ignore[arg-type]
        attempts=int(f["attempts"]),
        max_attempts=int(f["max_attempts"]),
        progress=Progress(done=int(f["progress_done"]), total=int(f["progress_total"])),
        request=json.loads(f["request"]),
        result=json.loads(f["result"]),
        error=json.loads(f["error"]),
        callback_url=f["callback_url"] or None,
        callback_format=f["callback_format"],  # type: ignore[arg-type]
        callback_options=json.loads(f.get("callback_options") or "{}"),
        callback_error=f["callback_error"] or None,
        cache_key=f["cache_key"] or None,
        owner=f.get("owner") or None,  # hashes stored before jobs had owners: owner-less
        created_at=float(f["created_at"]),
        updated_at=float(f["updated_at"]),
    )


class RedisJobStore:
    """JobStore on Redis; jobs and idempotency keys expire after `retention_s`."""

    def __init__(self, redis: Redis, *, retention_s: int = 7 * 86_400) -> None:
        self.redis = redis
        self.retention_s = retention_s
        self._create = redis.register_script(_CREATE)
        self._start = redis.register_script(_START)
        self._update = redis.register_script(_UPDATE_IF_OWNER)

    async def close(self) -> None:
        await self.redis.aclose()

    async def create(
        self, job: Job, *, idempotency_key: str | None = None, fingerprint: str | None = None
    ) -> tuple[Job, bool]:
        idem = "" if idempotency_key is None else IDEMPOTENCY_PREFIX + idempotency_slot(job.owner, idempotency_key)
        flat = [item for pair in _job_fields(job).items() for item in pair]
        existing = await self._create(
            keys=[PREFIX + job.id, idem], args=[fingerprint or "-", self.retention_s, job.id, *flat]
        )
        if existing is None:
            return job, True
        stored_fingerprint, _, job_id = existing.decode().partition(" ")
        if fingerprint is not None and stored_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; use a new key for a new request"
            )
        stored = await self.get(job_id)
        if stored is None:  # expired between the two calls: treat the key as fresh
            await self.redis.delete(idem)
            return await self.create(job, idempotency_key=idempotency_key, fingerprint=fingerprint)
        return stored, False

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(PREFIX + job_id)
        return _job_from_fields(raw) if raw else None

    async def start_attempt(self, job_id: str, attempt: int) -> Job | None:
        if not await self._start(keys=[PREFIX + job_id], args=[attempt, repr(time.time())]):
            return None
        return await self.get(job_id)

    async def set_progress(self, job_id: str, attempt: int, done: int, total: int) -> bool:
        args = [attempt, "progress_done", done, "progress_total", total, "updated_at", repr(time.time())]
        return bool(await self._update(keys=[PREFIX + job_id], args=args))

    async def set_callback_options(self, job_id: str, attempt: int, options: dict[str, str]) -> bool:
        args = [attempt, "callback_options", json.dumps(options), "updated_at", repr(time.time())]
        return bool(await self._update(keys=[PREFIX + job_id], args=args))

    async def finish(
        self,
        job_id: str,
        attempt: int,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        callback_error: str | None = None,
    ) -> bool:
        args = [
            attempt,
            "status",
            "succeeded" if error is None else "failed",
            "result",
            json.dumps(result),
            "error",
            json.dumps(error),
            "callback_error",
            callback_error or "",
            "updated_at",
            repr(time.time()),
        ]
        return bool(await self._update(keys=[PREFIX + job_id], args=args))

    async def retry_later(self, job_id: str, attempt: int, delay_s: float, error: dict[str, Any]) -> bool:
        """Show the job queued again after a transient failure (arq re-runs it after `delay_s`)."""
        args = [attempt, "status", "queued", "error", json.dumps(error), "updated_at", repr(time.time())]
        return bool(await self._update(keys=[PREFIX + job_id], args=args))
