"""The embedded job store and queue: one SQLite file (WAL), shared safely by several processes.

Workers claim a queued job under a lease they renew while it runs. A worker that dies (kill -9,
power loss) stops renewing; once its lease has lapsed, `recover_expired` puts the job back in the
queue, or fails it with a reason when it has used all its attempts.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from service.jobs.job import IdempotencyKeyReused, Job, Progress, abandoned_problem, idempotency_slot

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT,
    callback_url TEXT,
    callback_format TEXT NOT NULL DEFAULT 'json',
    callback_options TEXT NOT NULL DEFAULT '{}',
    callback_error TEXT,
    cache_key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, not_before, created_at);
"""

# Columns added after the first release: (name, definition), added to older files on open.
# Rows stored before `owner` existed read as owner-less (job.py: readable by any caller).
_ADDED_COLUMNS = [("callback_options", "TEXT NOT NULL DEFAULT '{}'"), ("callback_error", "TEXT"), ("owner", "TEXT")]

_COLUMNS = (
    "id, status, attempts, max_attempts, progress_done, progress_total, request, result, error, "
    "callback_url, callback_format, callback_options, callback_error, cache_key, owner, created_at, updated_at"
)


BUSY_TIMEOUT_S = 30.0


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (5, 6)


def _retry_busy(deadline_s: float) -> Retrying:
    """Retry a statement that SQLite refused with BUSY without waiting in its busy handler.

    SQLite skips the busy handler where waiting could deadlock: switching a fresh file to WAL while
    another connection holds a write lock on it (several `serve` workers opening a new job file
    at once) or a read upgraded to a write after another commit (SQLITE_BUSY_SNAPSHOT). Such a
    statement fails at once with "database is locked"; the other holder finishes in milliseconds.
    """
    return Retrying(
        retry=retry_if_exception(_is_busy),
        wait=wait_random_exponential(multiplier=0.005, max=0.2),
        stop=stop_after_delay(deadline_s),
        reraise=True,
    )


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode that waits, rather than fails, while another process writes."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    for attempt in _retry_busy(BUSY_TIMEOUT_S):
        with attempt:
            conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def write_locked(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(conn)` as one write transaction whose lock is taken before anything is read (schema set-up).

    BEGIN IMMEDIATE waits in the busy handler for the write lock, so processes creating the same
    schema at once run one after the other instead of one failing on a read-to-write upgrade.
    """
    for attempt in _retry_busy(BUSY_TIMEOUT_S):
        with attempt:
            value = in_write_transaction(conn, fn)
    return value


def in_write_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(conn)` inside BEGIN IMMEDIATE … COMMIT, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return value


class SQLiteDatabase:
    """One sqlite3 connection used from its own thread, one statement group at a time.

    Its own executor, not the event loop's default one: request handlers run CPU-bound work on the
    default pool, and six large bodies once filled it, so job reads queued behind them (9 s) and
    /readyz said 503. Calls are serialized anyway (one connection), so one thread is enough.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citesum-sqlite")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on this database's thread (sqlite3 blocks), serialized with other calls."""

        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, locked)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE … COMMIT (rolled back on error)."""

        return await self.run(lambda conn: in_write_transaction(conn, fn))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._conn.close()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        status=row["status"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        progress=Progress(done=row["progress_done"], total=row["progress_total"]),
        request=json.loads(row["request"]),
        result=_loads(row["result"]),
        error=_loads(row["error"]),
        callback_url=row["callback_url"],
        callback_format=row["callback_format"],
        callback_options=json.loads(row["callback_options"]),
        callback_error=row["callback_error"],
        cache_key=row["cache_key"],
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    present = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, definition in _ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


class SQLiteJobStore:
    """JobStore on a SQLite file, plus the queue operations of the embedded worker."""

    def __init__(self, path: str | Path) -> None:
        self.db = SQLiteDatabase(path)
        write_locked(self.db._conn, _create_schema)

    async def close(self) -> None:
        self.db.close()

    # --- JobStore ---------------------------------------------------------------------------

    async def create(
        self, job: Job, *, idempotency_key: str | None = None, fingerprint: str | None = None
    ) -> tuple[Job, bool]:
        slot = None if idempotency_key is None else idempotency_slot(job.owner, idempotency_key)

        def tx(conn: sqlite3.Connection) -> tuple[Job, bool]:
            if slot is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS}, fingerprint FROM jobs WHERE idempotency_key = ?", (slot,)
                ).fetchone()
                if row is not None:
                    if fingerprint is not None and row["fingerprint"] != fingerprint:
                        raise IdempotencyKeyReused(
                            "this Idempotency-Key was already used for a different request; "
                            "use a new key for a new request"
                        )
                    return _job_from_row(row), False
            conn.execute(
                "INSERT INTO jobs (id, status, attempts, max_attempts, progress_done, progress_total, request,"
                " result, error, callback_url, callback_format, callback_options, cache_key, owner, created_at,"
                " updated_at, idempotency_key, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    job.status,
                    job.attempts,
                    job.max_attempts,
                    job.progress.done,
                    job.progress.total,
                    json.dumps(job.request),
                    _dumps(job.result),
                    _dumps(job.error),
                    job.callback_url,
                    job.callback_format,
                    json.dumps(job.callback_options),
                    job.cache_key,
                    job.owner,
                    job.created_at,
                    job.updated_at,
                    slot,
                    fingerprint,
                ),
            )
            return job, True

        return await self.db.transaction(tx)

    async def get(self, job_id: str) -> Job | None:
        row = await self.db.run(
            lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return None if row is None else _job_from_row(row)

    async def start_attempt(self, job_id: str, attempt: int) -> Job | None:
        # The claim already made the job running with this attempt; this only confirms nobody newer
        # owns it (kept so the runner works the same on every store).
        def tx(conn: sqlite3.Connection) -> Job | None:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'running', attempts = ?, updated_at = ?"
                " WHERE id = ? AND status IN ('queued', 'running') AND attempts <= ?",
                (attempt, time.time(), job_id, attempt),
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return _job_from_row(row)

        return await self.db.transaction(tx)

    async def set_progress(self, job_id: str, attempt: int, done: int, total: int) -> bool:
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET progress_done = ?, progress_total = ?, updated_at = ?"
                " WHERE id = ? AND attempts = ? AND status = 'running'",
                (done, total, time.time(), job_id, attempt),
            )
        )
        return cursor.rowcount == 1

    async def set_callback_options(self, job_id: str, attempt: int, options: dict[str, str]) -> bool:
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET callback_options = ?, updated_at = ? WHERE id = ? AND attempts = ? AND status = 'running'",
                (json.dumps(options), time.time(), job_id, attempt),
            )
        )
        return cursor.rowcount == 1

    async def finish(
        self,
        job_id: str,
        attempt: int,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        callback_error: str | None = None,
    ) -> bool:
        status = "succeeded" if error is None else "failed"
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, callback_error = ?, updated_at = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND attempts = ? AND status = 'running'",
                (status, _dumps(result), _dumps(error), callback_error, time.time(), job_id, attempt),
            )
        )
        return cursor.rowcount == 1

    # --- queue (embedded worker only) -------------------------------------------------------

    async def claim_next(self, owner: str, lease_s: float) -> Job | None:
        """Take the oldest runnable queued job: running, attempts + 1, leased to `owner`."""

        def next_runnable(conn: sqlite3.Connection, now: float) -> sqlite3.Row | None:
            return conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND not_before <= ? ORDER BY created_at LIMIT 1",
                (now,),
            ).fetchone()

        def tx(conn: sqlite3.Connection) -> Job | None:
            now = time.time()
            row = next_runnable(conn, now)
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_until = ?,"
                " updated_at = ? WHERE id = ?",
                (owner, now + lease_s, now, row["id"]),
            )
            return _job_from_row(conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row["id"],)).fetchone())

        # Most polls find nothing: look first without taking the database's write lock (a WAL read
        # never waits for writers), so idle workers in several processes do not queue on each other.
        # The claim itself re-reads inside BEGIN IMMEDIATE, so two processes never claim one job.
        if await self.db.run(lambda conn: next_runnable(conn, time.time())) is None:
            return None
        return await self.db.transaction(tx)

    async def renew_leases(self, owner: str, lease_s: float, job_ids: list[str]) -> int:
        """Extend the lease of the jobs in `job_ids` that `owner` is running; returns how many."""
        if not job_ids:
            return 0
        marks = ",".join("?" * len(job_ids))
        cursor = await self.db.run(
            lambda conn: conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND status = 'running' AND id IN ({marks})",
                (time.time() + lease_s, owner, *job_ids),
            )
        )
        return cursor.rowcount

    async def retry_later(self, job_id: str, attempt: int, delay_s: float, error: dict[str, Any]) -> bool:
        """Put a job whose attempt failed transiently back in the queue after `delay_s`."""
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET status = 'queued', not_before = ?, error = ?, lease_owner = NULL,"
                " lease_until = NULL, updated_at = ? WHERE id = ? AND attempts = ? AND status = 'running'",
                (time.time() + delay_s, _dumps(error), time.time(), job_id, attempt),
            )
        )
        return cursor.rowcount == 1

    async def recover_expired(self) -> tuple[list[str], list[Job]]:
        """Requeue running jobs whose lease lapsed (their worker died); fail those out of attempts.

        Returns (requeued ids, jobs that just failed) so the caller can send their callbacks.
        """

        def tx(conn: sqlite3.Connection) -> tuple[list[str], list[Job]]:
            now = time.time()
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' AND lease_until < ?", (now,)
            ).fetchall()
            requeued: list[str] = []
            failed: list[Job] = []
            for row in rows:
                job = _job_from_row(row)
                if job.attempts >= job.max_attempts:
                    error = abandoned_problem(job.attempts, job.max_attempts)
                    conn.execute(
                        "UPDATE jobs SET status = 'failed', error = ?, lease_owner = NULL, lease_until = NULL,"
                        " updated_at = ? WHERE id = ?",
                        (json.dumps(error), now, job.id),
                    )
                    failed.append(job.model_copy(update={"status": "failed", "error": error}))
                else:
                    conn.execute(
                        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL,"
                        " updated_at = ? WHERE id = ?",
                        (now, job.id),
                    )
                    requeued.append(job.id)
            return requeued, failed

        return await self.db.transaction(tx)

    async def purge_finished(self, older_than_s: float) -> int:
        """Delete finished jobs last updated more than `older_than_s` ago."""
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed') AND updated_at < ?",
                (time.time() - older_than_s,),
            )
        )
        return cursor.rowcount
