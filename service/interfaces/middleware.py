"""Pure ASGI middleware: a request id on every exchange, caps on request body size and on in-flight requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import Overloaded
from service.core.logs import REQUEST_ID

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestIdMiddleware:
    """Takes a safe incoming X-Request-ID or makes one; stores it in scope state; echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        token = REQUEST_ID.set(request_id)  # for log lines (service/logs.py)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


DRAIN_LIMIT_BYTES = 32 * 1024 * 1024
DRAIN_TIMEOUT_S = 10.0


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 problem+json, by Content-Length or while streaming.

    A client that sends its whole body before reading (Python's urllib, curl without
    `Expect: 100-continue`) is still sending when the 413 is ready; closing then would reset the
    connection and the client would see "broken pipe" instead of the refusal. So the rest of the
    body is read and thrown away first, as mature servers do, within a bound (`drain_bytes`,
    `drain_timeout_s`). A declared body larger than that bound is refused at once.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        drain_bytes: int = DRAIN_LIMIT_BYTES,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.drain_timeout_s = drain_timeout_s

    async def _refuse(self, scope: Scope, send: Send) -> None:
        await send_problem(
            scope, send, 413, "Request body too large",
            f"the request body is over the {self.max_bytes:,}-byte limit (CITESUM_MAX_BODY_BYTES)",
            slug="body-too-large",
        )  # fmt: skip

    async def _drain(self, receive: Receive) -> None:
        """Read and discard what is left of the body, within the drain bounds."""
        drained = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_timeout_s):
                while drained <= self.drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    drained += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # With `Expect: 100-continue` the client waits for us and has sent nothing: answer now.
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            if not waiting and int(declared) <= self.max_bytes + self.drain_bytes:
                await self._drain(receive)
            await self._refuse(scope, send)
            return
        received = 0
        too_large = refused = started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    if message.get("more_body", False):
                        await self._drain(receive)
                    raise _BodyTooLarge
            return message

        async def refusing_send(message: Message) -> None:
            nonlocal refused, started
            if not too_large or started:  # an answer already under way is left alone
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif message["type"] == "http.response.start" and not refused:
                # The app may turn our exception into an answer of its own (FastAPI makes it a 400
                # "error parsing the body"): whatever it says, the client gets the 413.
                refused = True
                await self._refuse(scope, send)
            # …and the rest of the app's own answer is dropped.

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, refusing_send)
        if too_large and not (refused or started):
            await self._refuse(scope, send)


class _BodyTooLarge(Exception):
    pass


def header_value(scope: dict[str, Any], name: bytes) -> str:
    """One request header from an ASGI scope, decoded."""
    return dict(scope["headers"]).get(name, b"").decode("latin-1")


async def send_problem(
    scope: dict[str, Any],
    send: Any,
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer a raw ASGI exchange with problem+json (for pure ASGI middleware, before any route runs)."""
    body: dict[str, Any] = {"type": "urn:citesum:problem:" + slug, "title": title, "status": status, "detail": detail}
    body["instance"] = scope.get("path", "")
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


OVERLOADED_RETRY_AFTER_S = 1


class InflightLimitMiddleware:
    """Answers 503 `overloaded` at once when `max_inflight` requests under `prefix` are already running."""

    def __init__(self, app: ASGIApp, max_inflight: int, prefix: str = "/v1/") -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.prefix = prefix
        self.inflight = 0  # one event loop per app: a plain counter is race-free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            error = Overloaded(
                f"{self.inflight} requests are already in progress (CITESUM_MAX_INFLIGHT_REQUESTS="
                f"{self.max_inflight}); retry after {OVERLOADED_RETRY_AFTER_S} s"
            )
            await send_problem(
                scope, send, error.status, error.title, error.message, slug=error.type_slug,
                headers={"Retry-After": str(OVERLOADED_RETRY_AFTER_S)},
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
