"""Structured logs: one JSON object per line, carrying the request id set by the middleware."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from service.core.config import Settings
from service.core.logs import REQUEST_ID, JsonFormatter, configure_logging
from service.interfaces.api import create_app
from tests.process_helpers import free_port, service_env, start_api, start_service, stop, wait_for


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("kaput")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("service.x", logging.WARNING, __file__, 1, message, args, exc_info)


def test_json_formatter_writes_one_object_per_line() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        line = JsonFormatter().format(record("hello %s\nworld", "ünï", exc=True))
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "service.x"
    assert entry["message"] == "hello ünï\nworld" and entry["request_id"] == "req-42"
    assert entry["time"].endswith("+00:00") and "ValueError: kaput" in entry["exc"]
    assert "request_id" not in json.loads(JsonFormatter().format(record("outside a request")))


async def test_log_lines_inside_a_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings())
    with caplog.at_level(logging.INFO, logger="service.interfaces.problems"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            response = await client.post("/v1/summaries", json={"text": "  "}, headers={"x-request-id": "abc-123"})
    assert response.status_code == 400 and response.headers["x-request-id"] == "abc-123"
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "service.interfaces.problems"]
    assert lines and all(line["request_id"] == "abc-123" for line in lines)
    assert REQUEST_ID.get() is None  # reset after the exchange


@pytest.mark.parametrize(("fmt", "is_json"), [("json", True), ("text", False)])
def test_configure_logging_picks_the_format(fmt: str, is_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(fmt, "INFO")  # type: ignore[arg-type]
        logging.getLogger("uvicorn.error").warning("started")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    if is_json:
        assert json.loads(err)["logger"] == "uvicorn.error"
    else:
        assert "WARNING uvicorn.error: started" in err


def test_configure_logging_quiets_httpx_request_lines(capsys: pytest.CaptureFixture[str]) -> None:
    # httpx logs "HTTP Request: POST <full URL>" at INFO: every response_url and webhook URL.
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = (root.handlers[:], root.level, httpx_logger.level)
    try:
        configure_logging("json", "INFO")
        httpx_logger.info("HTTP Request: POST https://hooks.slack.com/services/T/B/SECRET")
        logging.getLogger("service.x").info("delivered to https://u:SECRET@example.com/hook")
        err = capsys.readouterr().err
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        httpx_logger.setLevel(saved[2])
    assert "HTTP Request" not in err and "SECRET" not in err
    assert "https://***@example.com/hook" in err


def test_serve_logs_json_lines_with_request_ids_and_the_open_access_warning(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = service_env({"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"), "CITESUM_LOG_LEVEL": "INFO"})
    process = start_api(port, env, log_path)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 30, "the API to start", watch=process)
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"x-request-id": "trace-me-42"})
        assert response.headers["x-request-id"] == "trace-me-42"
        wait_for(lambda: _json_lines(log_path, "trace-me-42"), 10, "the access log line")
    finally:
        stop(process)
    entries = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert any("no API keys set" in e["message"] and e["level"] == "WARNING" for e in entries)
    access = [e for e in entries if e.get("request_id") == "trace-me-42"]
    assert access and access[0]["logger"] == "uvicorn.access" and "/healthz" in access[0]["message"]


def test_serve_refuses_open_access_on_a_public_interface(tmp_path: Path) -> None:
    env = service_env({"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3")})
    # Refused before anything binds, so no socket is ever opened on 0.0.0.0.
    process = start_service(["serve", "--host", "0.0.0.0", "--port", str(free_port())], env, tmp_path / "log")
    assert process.wait(timeout=60) == 2
    assert "CITESUM_API_KEYS" in (tmp_path / "log").read_text(encoding="utf-8")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _json_lines(path: Path, needle: str) -> bool:
    return path.exists() and needle in path.read_text(encoding="utf-8")
