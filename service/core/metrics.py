"""Prometheus metrics: the collectors, a pure ASGI middleware that times requests, and GET /metrics.

No FastAPI import here: llm.py and breaker.py record into these collectors.

With several worker processes (`serve --workers N`) each collector lives in every worker, so
the supervisor shares them through prometheus_client's multiprocess mode: it points
PROMETHEUS_MULTIPROC_DIR at a directory before the workers start (`shared_metrics_dir`),
each worker then writes its values to files there, GET /metrics merges every worker's files
(whichever worker answers the scrape), and the supervisor marks each worker that exits dead.
One process (tests, the CLI, `--workers 1`) keeps the default in-memory REGISTRY.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.schema import SummaryResponse

__all__ = [
    "BREAKER_STATE",
    "BREAKER_TRANSITIONS",
    "HTTP_IN_FLIGHT",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "LLM_CALLS",
    "LLM_IN_FLIGHT",
    "LLM_LATENCY",
    "LLM_REASKS",
    "LLM_RETRIES",
    "LLM_TOKENS",
    "SUMMARY_SENTENCES",
    "MULTIPROC_DIR_ENV",
    "MetricsMiddleware",
    "mark_worker_dead",
    "metrics_registry",
    "multiprocess_dir",
    "observe_llm_call",
    "record_llm_tokens",
    "record_summary_verdicts",
    "metrics_endpoint",
    "remove_stale_metrics_dirs",
    "shared_metrics_dir",
]

log = logging.getLogger(__name__)

# prometheus_client reads it when first imported in a process: set means every value is a file there.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A supervisor's private directory is `citesum-metrics-<its pid>-<random>` in the temp dir: the pid lets a
# later start tell the directory of a supervisor that was SIGKILLed (nothing removed it) from one in use.
_PRIVATE_DIR_PREFIX = "citesum-metrics-"
_PRIVATE_DIR_NAME = re.compile(re.escape(_PRIVATE_DIR_PREFIX) + r"(\d+)-\w+")
# prometheus_client's files there: `<kind>_<pid of the process that writes it>.db`.
_VALUES_FILE_NAME = re.compile(r"\w+_(\d+)\.db")

# Buckets cover the embedded default (milliseconds) up to a slow map/combine run (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "citesum_http_requests", "HTTP requests answered, by route template, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "citesum_http_request_duration_seconds", "Time to answer, by route template", ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
# Gauges say how to merge the workers' values (ignored with one process); `live*`: a dead worker's value goes.
HTTP_IN_FLIGHT = Gauge(
    "citesum_http_requests_in_flight", "HTTP requests being answered now", multiprocess_mode="livesum"
)
LLM_CALLS = Counter("citesum_llm_calls", "HTTP calls to the model server, by outcome", ["outcome"])
LLM_LATENCY = Histogram("citesum_llm_call_duration_seconds", "Time of one call to the model", buckets=_LATENCY_BUCKETS)
LLM_IN_FLIGHT = Gauge(
    "citesum_llm_calls_in_flight", "Calls to the model server in flight now", multiprocess_mode="livesum"
)
LLM_TOKENS = Counter("citesum_llm_tokens", "Tokens the model server reported, by kind", ["kind"])
LLM_RETRIES = Counter("citesum_llm_retries", "Transport retries (429, 5xx, timeouts, connection errors)")
LLM_REASKS = Counter("citesum_llm_reasks", "Re-asks after a reply that was not valid JSON of the asked shape")
# Each worker has its own breaker. livemax: the worst state among live workers, one series as with one
# process, so an alert on `== 2` ("some worker refuses model calls") reads the same with any worker count
# (liveall would add a pid label that changes on every restart). BREAKER_TRANSITIONS counts them all.
BREAKER_STATE = Gauge(
    "citesum_llm_breaker_state", "LLM circuit breaker: 0 closed, 1 half-open, 2 open",
    multiprocess_mode="livemax",
)
BREAKER_TRANSITIONS = Counter("citesum_llm_breaker_transitions", "LLM circuit breaker state changes", ["to"])
SUMMARY_SENTENCES = Counter(
    "citesum_summary_sentences", "Summary sentences by verdict (dropped = removed by the drop policy)", ["verdict"]
)


def multiprocess_dir() -> str | None:
    """The directory worker processes share metrics through, or None with one process."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def metrics_registry() -> CollectorRegistry:
    """What GET /metrics renders: every worker's files merged in multiprocess mode, else this process's REGISTRY."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    # A fresh registry per scrape, as the prometheus_client docs say: the default one holds this
    # process's collectors only and would count some values twice if merged with the files.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


async def metrics_endpoint(request: Request) -> Response:
    """Every metric in the Prometheus text format (all workers' when several share a directory)."""
    return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """In the supervisor, before workers start: set PROMETHEUS_MULTIPROC_DIR, yield it, tidy up after.

    A directory the user already set is used as it is and kept (wiping it between runs is theirs
    to do); otherwise a fresh private one is made and removed at the end (and, first, those earlier
    supervisors killed with SIGKILL left behind: `remove_stale_metrics_dirs`). The workers inherit the
    variable when they start, before they import prometheus_client. This process imported it
    before a private directory was set, so its collectors stay in memory: harmless, the
    supervisor records nothing and never answers a scrape.
    """
    given = multiprocess_dir()
    if given is not None:
        # It exists: prometheus_client, imported with it set, has already written this process's files there.
        if any(not name.endswith(f"_{os.getpid()}.db") for name in os.listdir(given)):
            log.warning("serve: %s=%s holds another run's metrics; they are counted too", MULTIPROC_DIR_ENV, given)
        try:
            yield given
        finally:
            mark_worker_dead(os.getpid())  # the supervisor's own (idle) gauges
        return
    remove_stale_metrics_dirs()
    path = tempfile.mkdtemp(prefix=f"{_PRIVATE_DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_DIR_ENV] = path
    log.info("serve: workers share metrics through %s", path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_metrics_dirs(base_dir: str | None = None) -> list[str]:
    """Remove the private directories (in `base_dir`, default the temp dir) of supervisors that are gone.

    `shared_metrics_dir` removes its directory on a normal exit; a SIGKILL skips that, so each start
    sweeps up after earlier ones. A directory is removed only when its supervisor and every process
    with values there (its workers, which a SIGKILL of the supervisor can orphan) no longer exist.
    Returns the paths removed.
    """
    base = base_dir if base_dir is not None else tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        owner = _PRIVATE_DIR_NAME.fullmatch(entry.name)
        try:
            # Not a symlink: only a real directory of ours is removed, never what a link points at.
            if owner is None or not entry.is_dir(follow_symlinks=False):
                continue
            writers = {int(m.group(1)) for name in os.listdir(entry.path) if (m := _VALUES_FILE_NAME.fullmatch(name))}
        except OSError:  # gone meanwhile, or not ours to read: leave it
            continue
        if all(_process_is_gone(pid) for pid in {int(owner.group(1)), *writers}):
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                log.info("serve: removed %s, left behind by a supervisor that is gone", entry.path)
                removed.append(entry.path)
    return removed


def _process_is_gone(pid: int) -> bool:
    """True only when no process `pid` exists; one we may not signal (another user's) still exists.

    A reused pid makes a dead supervisor look alive: its directory is then kept, never wrongly removed.
    """
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists is checked
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: it exists; OverflowError: not a pid we wrote, keep it
        return False
    return False


def mark_worker_dead(pid: int) -> None:
    """In the supervisor, once worker `pid` has exited: drop its `live*` gauges (its counters stay counted)."""
    path = multiprocess_dir()
    if path is None:
        return
    try:
        multiprocess.mark_process_dead(pid, path)
    except OSError as exc:  # a stale gauge is not worth stopping the supervisor over
        log.warning("serve: could not drop the metrics of worker %d: %s", pid, exc)


@asynccontextmanager
async def observe_llm_call() -> AsyncIterator[None]:
    """Count, time and gauge one HTTP call to the model server."""
    LLM_IN_FLIGHT.inc()
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        LLM_IN_FLIGHT.dec()
        LLM_LATENCY.observe(time.perf_counter() - started)
        LLM_CALLS.labels(outcome).inc()


def record_llm_tokens(usage: dict[str, int]) -> None:
    """Count the tokens one completion reported, by kind (`{"prompt": n, "completion": m}`)."""
    for kind, count in usage.items():
        if count:
            LLM_TOKENS.labels(kind).inc(count)


def record_summary_verdicts(response: SummaryResponse) -> None:
    """Count one response's sentences by verdict (kept supported, kept unsupported, dropped)."""
    for sentence in response.summary:
        SUMMARY_SENTENCES.labels(sentence.verdict).inc()
    if response.dropped:
        SUMMARY_SENTENCES.labels("dropped").inc(len(response.dropped))


class MetricsMiddleware:
    """Counts and times every HTTP exchange by route template (never the raw path: ids would explode it)."""

    def __init__(self, app: ASGIApp, route_templates: Callable[[], list[str]] | None = None) -> None:
        self.app = app
        # Names the route of requests refused before routing (401/429/503); read on first need.
        self.route_templates = route_templates
        self._compiled: list[tuple[str, re.Pattern[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the caller gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            HTTP_IN_FLIGHT.dec()
            template = getattr(scope.get("route"), "path", None) or self._template(scope)
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(template, method, str(status)).inc()
            HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
        if self._compiled is None:
            try:
                templates = self.route_templates() if self.route_templates else []
            except Exception:  # a label is not worth failing a request over
                templates = []
            self._compiled = [(t, compile_path(t)[0]) for t in templates]
        path = scope.get("path", "")
        return next((t for t, regex in self._compiled if regex.fullmatch(path)), "unmatched")
