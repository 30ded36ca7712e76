"""The HTTP/1.1 protocol `serve` runs: uvicorn's httptools protocol with bounds on what a client can hold.

uvicorn bounds none of these itself (0.55, httptools): a client could send 100 MB of headers, all
parsed before any app code ran (25 s, +190 MB), or open connections that never finish their
headers and hold them for ever (~20,000 exhausted the file descriptors). `limit_concurrency` does
not help there: it answers 503 only once a request's headers are complete. So, per process:

- headers (request line included) over `http_max_header_bytes` → 431 and the connection is closed;
- headers not complete `http_header_timeout_s` after the connection opened, or after the first
  byte of a keep-alive request → 408 and closed (idle keep-alive stays `http_keep_alive_s`);
- more than `http_max_connections` open connections → a new one gets 503 and is closed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.core.config import get_settings

__all__ = ["BoundedHttpToolsProtocol"]

log = logging.getLogger(__name__)

WARN_EVERY_S = 10.0  # refusals come in floods: one log line per kind per interval


def _problem(status: int, reason: bytes, slug: str, title: str, detail: str) -> bytes:
    body = json.dumps(
        {"type": "urn:citesum:problem:" + slug, "title": title, "status": status, "detail": detail}
    ).encode()
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (status, reason, len(body)) + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header size cap, a header read timeout and a connection cap."""

    _last_warning: dict[str, float] = {}

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()  # the worker's environment, as for the app itself
        self.max_header_bytes = settings.http_max_header_bytes
        self.header_timeout_s = settings.http_header_timeout_s
        self.max_connections = settings.http_max_connections
        self._accepted = False
        self._reading_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    # --- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._warn("connections", "refused a connection: %d open (CITESUM_HTTP_MAX_CONNECTIONS)", len(self.connections))
            transport.write(
                _problem(503, b"Service Unavailable", "overloaded", "Service overloaded",
                         f"over {self.max_connections} open connections; retry later")
            )  # fmt: skip
            transport.close()
            return
        self._accepted = True
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._accepted:
            return
        self._disarm_header_timer()
        super().connection_lost(exc)

    # --- header phase --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._accepted or self.transport.is_closing():
            return
        if self._reading_headers:
            if self._header_timer is None:  # first byte of a keep-alive request
                self._arm_header_timer()
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, checked after: a chunk that completes the headers passes, so a
        # parser holds at most the cap plus one read of unfinished headers.
        if self._reading_headers and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._warn("headers", "refused request headers over %d bytes (CITESUM_HTTP_MAX_HEADER_BYTES)",
                       self.max_header_bytes)  # fmt: skip
            self._refuse(431, b"Request Header Fields Too Large", "headers-too-large", "Request headers too large",
                         f"the request line and headers are over the {self.max_header_bytes:,}-byte limit")  # fmt: skip

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True  # the next bytes on this connection start a new request

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._reading_headers and not self.transport.is_closing():
            self._warn("timeout", "closed a connection whose headers took over %g s (CITESUM_HTTP_HEADER_TIMEOUT_S)",
                       self.header_timeout_s)  # fmt: skip
            self._refuse(408, b"Request Timeout", "request-timeout", "Request timeout",
                         f"the request headers did not arrive within {self.header_timeout_s:g} s")  # fmt: skip

    def _refuse(self, status: int, reason: bytes, slug: str, title: str, detail: str) -> None:
        self._disarm_header_timer()
        self.transport.write(_problem(status, reason, slug, title, detail))
        self.transport.close()

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warning[kind] = now
            log.warning(message, *args)
