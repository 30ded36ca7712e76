"""Log output: one JSON object per line (or plain text), carrying the current request id."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from service.core.redact import redact_text

__all__ = ["REQUEST_ID", "JsonFormatter", "TextFormatter", "configure_logging"]

# Set by middleware.RequestIdMiddleware for the life of one HTTP exchange; tasks it starts inherit it.
REQUEST_ID: ContextVar[str | None] = ContextVar("citesum_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _redact_record(record: logging.LogRecord) -> None:
    """Rewrite the record's message without URL credentials or capability-URL paths (service/core/redact.py)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it later, as it would have
        return
    redacted = redact_text(message)
    if redacted != message:
        record.msg, record.args = redacted, None


def _stamp_request_id(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a LogRecord factory so every record remembers the request id current when it was made,
    and carries no secret URL (whichever logger made it: ours, httpx's, uvicorn's, a test's caplog)."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        _redact_record(record)
        return record

    make_record.stamps_request_id = True  # type: ignore[attr-defined]
    return make_record


# At creation, not at formatting: handlers may format later, outside the request's context.
if not getattr(logging.getLogRecordFactory(), "stamps_request_id", False):
    logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))  # exception messages quote URLs
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT lines; tracebacks redacted like the message."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatException(ei))


def configure_logging(log_format: Literal["json", "text"], level: str = "INFO") -> None:
    """Send every logger (uvicorn's too) through one root handler in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx and httpcore log every request's full URL at INFO/DEBUG: response_urls and webhook URLs
    # are capabilities, and our own lines already say what was sent where (redacted).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, unstructured copy.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
