"""Fuzz the whole HTTP API from its own OpenAPI schema (schemathesis): no 5xx, every 4xx problem+json.

Bounded and repeatable: a fixed example count per operation and hypothesis' derandomized search.
Runs on the embedded default (no LLM). The embedded job worker is off, so accepted jobs only queue
(no callbacks to made-up hosts), and any generated `url` / `callback_url` is pointed at a closed
loopback port, which the service refuses before any connection: the fuzzer never leaves 127.0.0.1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from service.core.config import Settings
from service.interfaces.api import create_app

# Removed when the interpreter exits (TemporaryDirectory's finalizer). Built at import: schemathesis'
# lazy fixture loader does not work with this pytest version.
_STATE = tempfile.TemporaryDirectory(prefix="citesum-fuzz-")
APP = create_app(
    Settings(
        job_db_path=str(Path(_STATE.name) / "jobs.sqlite3"),
        embedded_worker=False,
        max_body_bytes=200_000,
        request_deadline_s=20,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
LOOPBACK_URL = "http://127.0.0.1:9/fuzz"


def _keep_on_loopback(body: Any) -> None:
    if isinstance(body, dict):
        for field in ("url", "callback_url"):
            if isinstance(body.get(field), str):
                body[field] = LOOPBACK_URL


@schema.parametrize()
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_5xx_and_errors_are_problem_json(case: schemathesis.Case) -> None:
    _keep_on_loopback(case.body)
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), (
            f"{case.method} {case.path} -> {response.status_code} as {content_type}: {response.text[:300]}"
        )
