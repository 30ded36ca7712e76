"""Prometheus metrics: the collectors, a pure ASGI middleware that times requests, and GET /metrics.

No FastAPI import here: llm.py and breaker.py record into these collectors.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.schema import SummaryResponse

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
    "MetricsMiddleware",
    "observe_llm_call",
    "record_llm_tokens",
    "record_summary_verdicts",
    "metrics_endpoint",
]

# Buckets cover the embedded default (milliseconds) up to a slow map/combine run (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "citesum_http_requests", "HTTP requests answered, by route template, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "citesum_http_request_duration_seconds", "Time to answer, by route template", ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("citesum_http_requests_in_flight", "HTTP requests being answered now")
LLM_CALLS = Counter("citesum_llm_calls", "HTTP calls to the model server, by outcome", ["outcome"])
LLM_LATENCY = Histogram("citesum_llm_call_duration_seconds", "Time of one call to the model", buckets=_LATENCY_BUCKETS)
LLM_IN_FLIGHT = Gauge("citesum_llm_calls_in_flight", "Calls to the model server in flight now")
LLM_TOKENS = Counter("citesum_llm_tokens", "Tokens the model server reported, by kind", ["kind"])
LLM_RETRIES = Counter("citesum_llm_retries", "Transport retries (429, 5xx, timeouts, connection errors)")
LLM_REASKS = Counter("citesum_llm_reasks", "Re-asks after a reply that was not valid JSON of the asked shape")
BREAKER_STATE = Gauge("citesum_llm_breaker_state", "LLM circuit breaker: 0 closed, 1 half-open, 2 open")
BREAKER_TRANSITIONS = Counter("citesum_llm_breaker_transitions", "LLM circuit breaker state changes", ["to"])
SUMMARY_SENTENCES = Counter(
    "citesum_summary_sentences", "Summary sentences by verdict (dropped = removed by the drop policy)", ["verdict"]
)

async def metrics_endpoint(request: Request) -> Response:
    """Every metric in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


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


def record_llm_tokens(usage: object) -> None:
    """Count the prompt and completion tokens one completion reported (its `usage`, or None)."""
    for kind in ("prompt", "completion"):
        count = getattr(usage, f"{kind}_tokens", 0) or 0
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
