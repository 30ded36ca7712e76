"""The HTTP API: POST /v1/summaries, health and readiness, errors as problem+json."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import EventSourceResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import ConfigDict, Field

from service import __version__
from service.core.config import Settings, get_settings
from service.core.errors import UnsupportedContent
from service.core.metrics import MetricsMiddleware, metrics_endpoint
from service.core.schema import SummaryRequest, SummaryResponse
from service.interfaces import jobs_api, slack, sse, web
from service.interfaces.auth import AccessMiddleware
from service.interfaces.middleware import BodyLimitMiddleware, InflightLimitMiddleware, RequestIdMiddleware
from service.interfaces.problems import install_problem_handlers
from service.jobs.cache import cached_summarize
from service.pipeline.extractive import MODEL_NAME as EXTRACTIVE_MODEL
from service.pipeline.llm import LLMClient
from service.pipeline.prompts import available_prompts, load_prompt
from service.pipeline.summarize import summarize_request
from service.verifier.verify import warm_up

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"description": text, "content": {"application/problem+json": {}}}
    for status, text in {
        202: "Accepted as a job (async): poll the Location URL",
        400: "Invalid JSON or input (empty text, refused URL)",
        413: "Body or article too long",
        415: "Wrong content type",
        422: "Request fails validation, or the article has no usable text",
        502: "The URL could not be fetched, or the model answered unusably",
        503: "The model is unavailable or the service is overloaded (see Retry-After)",
        504: "The deadline ran out",
    }.items()
}


SUMMARY_REQUEST_FIELDS = frozenset(SummaryRequest.model_fields)

# Young-generation collection threshold while the app runs (Python's default is 700). A request
# keeps its objects for the whole model call (~0.4 s), so with dozens in flight most young objects
# are alive at each collection: they were walked again and again, and pushed on into generation 1,
# whose collections took ~6 ms each. Measured in the 2-worker server, 64 clients, seed article
# (gc.callbacks, 408 requests per server): 0.89 ms of collection per request at 700 (gen0 0.29,
# gen1 0.47, gen2 0.13), 0.28 ms at 10,000 (gen0 only, ~6.5 ms each, as long as a gen1 one was);
# 50,000 cost ~90 ms per collection.
GC_YOUNG_THRESHOLD = 10_000


class SummariesBody(jobs_api.SummaryJobRequest):
    """POST /v1/summaries body: a summary request; `async` (or a `callback_url`) makes it a job."""

    model_config = ConfigDict(populate_by_name=True)

    async_: bool = Field(
        default=False,
        alias="async",
        description="Answer 202 with a job URL instead of waiting (same as `Prefer: respond-async`).",
    )


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hand-off per dependency per request for what is an attribute read.
async def get_app_settings(request: Request) -> Settings:
    """The settings this app was built with."""
    return request.app.state.settings


async def get_llm(request: Request) -> LLMClient | None:
    """The shared LLM client, or None on the embedded default."""
    return request.app.state.llm


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
LLMClientDep = Annotated[LLMClient | None, Depends(get_llm)]


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContent(
            f"send the request body as application/json (got {content_type or 'no content type'})"
        )


def create_app(settings: Settings | None = None, llm: LLMClient | None = None) -> FastAPI:
    """Build the app. With no `llm`, one is made from settings when an LLM is configured."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = None
        warm_up()  # load the verifier's lexicons now, not on the first request
        if app.state.llm is None and settings.llm_configured:
            owned = app.state.llm = LLMClient(settings)
        if app.state.llm is None:
            log.warning(
                "no LLM configured: using the embedded extractive summarizer (provider=embedded); "
                "set OPENAI_API_KEY and/or OPENAI_BASE_URL to use a model"
            )
        # What is loaded by now (modules, lexicons, the client) lives as long as the process. Frozen,
        # the cycle collector stops walking it: a full collection took ~90 ms (161k objects) and
        # landed inside a request now and then (overhead p99 184 ms on the long bench input).
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
        yield
        gc.set_threshold(*thresholds)
        gc.unfreeze()  # an app that stops (tests start many) hands its objects back to the collector
        if owned is not None:
            await owned.aclose()

    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from files shipped in
    # the fastapi-offline package (mounted at /static-offline-docs), not from a CDN: they work offline.
    app = FastAPIOffline(
        title="citesum",
        version=__version__,
        summary="Cited, verified summaries of news articles.",
        description="Every summary sentence cites source sentences by id and offsets, "
        "and is checked against them before it is returned.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.llm = llm
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outermost last: request id → metrics → access (401/429) → in-flight cap (503) → body cap (413).
    app.add_middleware(InflightLimitMiddleware, max_inflight=settings.max_inflight_requests)
    app.add_middleware(AccessMiddleware, settings=settings)
    app.add_middleware(MetricsMiddleware, route_templates=lambda: list(app.openapi()["paths"]))
    app.add_middleware(RequestIdMiddleware)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)

    @app.post(
        "/v1/summaries",
        response_model=SummaryResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {sse.EVENT_STREAM: sse.SSE_OPENAPI}}},
        dependencies=[Depends(require_json)],
        tags=["summaries"],
    )
    async def create_summary(
        request: Request, body: SummariesBody, settings: SettingsDep, llm: LLMClientDep, background: BackgroundTasks
    ) -> SummaryResponse | JSONResponse | EventSourceResponse:
        """Summarize text, HTML or a URL; every sentence cited and verified.

        With `Prefer: respond-async`, `"async": true` or a `callback_url`, answer 202 and run it as a job.
        With `Accept: text/event-stream`, answer Server-Sent Events: each sentence as soon as it is
        verified (`sentence`, `dropped`, `progress`), then `done` with this JSON response, or `error`.
        """
        if body.async_ or body.callback_url is not None or jobs_api.wants_async(request, body):
            return await jobs_api.accept_async_summary(request, body)
        # `body` was validated by these very fields (SummariesBody extends SummaryRequest): copy the
        # values over instead of dumping and re-validating the whole article a second time.
        plain = SummaryRequest.model_construct(
            _fields_set=body.model_fields_set & SUMMARY_REQUEST_FIELDS,
            **{name: getattr(body, name) for name in SUMMARY_REQUEST_FIELDS},
        )
        jobs = getattr(request.app.state, "jobs", None)  # set by the jobs router's lifespan
        if sse.wants_event_stream(request):
            return await sse.stream_summary(
                request, plain, settings=settings, llm=llm, cache=jobs.cache if jobs else None
            )
        response, hit = await cached_summarize(
            plain,
            settings=settings,
            summarize=summarize_request,
            cache=jobs.cache if jobs else None,
            store_later=background.add_task,  # stored once the answer is sent
            llm=llm,
        )
        if hit:
            request.state.cache_hit = True
        return response

    app.include_router(jobs_api.router)
    app.include_router(slack.router)
    app.include_router(web.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request, settings: SettingsDep, llm: LLMClientDep) -> JSONResponse:
        """Readiness: prompts load, the job store (SQLite, or Redis) answers, and a configured model server is reachable with its circuit breaker closed."""
        checks: dict[str, str] = {}
        try:
            for name in available_prompts():
                load_prompt(name)
            checks["prompts"] = "ok"
        except Exception as exc:  # a broken prompt file must show here, not on the first request
            checks["prompts"] = f"error: {exc}"
        jobs = getattr(request.app.state, "jobs", None)  # absent only when the app runs without its lifespan
        if jobs is not None:
            try:  # one read of the store: the SQLite file, or a Redis round trip with REDIS_URL set
                async with asyncio.timeout(2.0):
                    await jobs.store.get("readyz-probe")
                checks["job_store"] = "ok"
            except Exception as exc:  # accepted work must be storable before traffic is sent here
                checks["job_store"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        if llm is not None:  # the breaker's state, or one short GET /models: is the model server there?
            checks["model"] = await llm.probe()
        ready = all(v == "ok" for v in checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "provider": "openai-compatible" if llm is not None else "embedded",
            "model": llm.model if llm is not None else EXTRACTIVE_MODEL,
            "jobs": jobs.mode if jobs is not None else None,
            "checks": checks,
            "pid": os.getpid(),  # which worker process answered (`serve --workers N`)
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app
