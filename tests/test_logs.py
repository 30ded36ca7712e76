"""Structured logs: one JSON object per line, carrying the request id set by the middleware."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from service.api import create_app
from service.config import Settings
from service.logs import REQUEST_ID, JsonFormatter, configure_logging


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
    with caplog.at_level(logging.INFO, logger="service.problems"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            response = await client.post("/v1/summaries", json={"text": "  "}, headers={"x-request-id": "abc-123"})
    assert response.status_code == 400 and response.headers["x-request-id"] == "abc-123"
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "service.problems"]
    assert lines and all(line["request_id"] == "abc-123" for line in lines)
    assert REQUEST_ID.get() is None  # reset after the exchange


@pytest.mark.parametrize(("fmt", "is_json"), [("json", True), ("text", False)])
def test_configure_logging_picks_the_format(fmt: str, is_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(fmt, "INFO")  # type: ignore[arg-type]
        logging.getLogger("uvicorn.error").info("started")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    if is_json:
        assert json.loads(err)["logger"] == "uvicorn.error"
    else:
        assert "INFO uvicorn.error: started" in err
