"""RFC 9457 problem details: our errors and FastAPI's, as `application/problem+json` responses."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.errors import SummaryError
from service.core.redact import redact_credentials

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:citesum:problem:"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    request: Request | None = None,
    retry_after: float | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response; `request_id` and `instance` come from the request when given."""
    # Details quote what was refused (a URL, a host): never the credentials a caller put in a URL.
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": redact_credentials(detail)}
    headers: dict[str, str] = {}
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_body(exc: Exception, request: Request | None = None) -> dict[str, Any]:
    """The problem+json object for `exc` (what its handler below would answer), e.g. for an SSE `error` event."""
    if isinstance(exc, SummaryError):
        status, title, detail, slug = exc.status, exc.title, exc.message, exc.type_slug
    else:
        log.error("unexpected error", exc_info=exc)
        status, title, slug = 500, "Internal error", "internal"
        detail = "an unexpected error occurred; quote the request id when reporting it"
    return json.loads(problem_response(status, title, detail, slug=slug, request=request).body)


def _validation_detail(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return 400, f"the request body is not valid JSON ({ctx.get('error', 'parse error')})", []
    shown = []
    for e in errors[:20]:
        location = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        shown.append({"field": location, "message": _plain_message(e)})
    summary = "; ".join(f"{s['field']}: {s['message']}" for s in shown[:5])
    return 422, f"the request is invalid: {summary}", shown


def _plain_message(error: dict[str, Any]) -> str:
    """pydantic's message for one field, saying what to send instead where pydantic only names the rule."""
    kind, message, value = error.get("type"), str(error.get("msg", "invalid")), error.get("input")
    if kind == "extra_forbidden":
        return "unknown field; the article goes in `text`, `html` or `url` (one of them)"
    if kind == "url_parsing" and isinstance(value, str) and "://" not in value:
        return f"not a full URL: it needs its scheme, e.g. https://{value.lstrip('/')}"
    if kind == "url_scheme":
        return f"{message} (only http:// and https:// pages are fetched)"
    return message.removeprefix("Value error, ")


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error to problem+json once, here."""

    @app.exception_handler(SummaryError)
    async def _summary_error(request: Request, exc: SummaryError) -> JSONResponse:
        log.info("request failed: %s %s", exc.status, exc.message)
        return problem_response(
            exc.status, exc.title, exc.message, slug=exc.type_slug, request=request, retry_after=exc.retry_after
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail, errors = _validation_detail(exc)
        slug = "invalid-json" if status == 400 else "validation-error"
        title = "Invalid JSON" if status == 400 else "Invalid request"
        return problem_response(
            status, title, detail, slug=slug, request=request, extra={"errors": errors} if errors else None
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 429: "Too many requests"}
        response = problem_response(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            slug=f"http-{exc.status_code}",
            request=request,
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a traceback to the caller: the log has it, the caller gets the request id.
        log.exception("unexpected error")
        return problem_response(
            500,
            "Internal error",
            "an unexpected error occurred; quote the request id when reporting it",
            slug="internal",
            request=request,
        )
