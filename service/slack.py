"""The chat door: Slack slash commands and Events API (plus Mattermost slash commands) in, summaries out.

Every request is checked before its body is parsed (Slack: signature over the raw bytes; Mattermost:
its token), answered at once, and summarized afterwards in a tracked, concurrency-bounded task whose
result goes to the `response_url` (slash commands) or to a thread reply via `chat.postMessage`
(mentions and direct messages). Slack re-sends slow requests; each command or event runs once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from service.config import Settings, get_settings
from service.deliver import (
    DeliveryError,
    TargetNotAllowed,
    check_target,
    post_chat_message,
    post_incoming_webhook,
    post_to_response_url,
)
from service.errors import SummaryError
from service.problems import problem_response
from service.render_slack import render_error, render_help, render_summary, render_working
from service.schema import PolicyName, SummaryRequest, SummaryResponse
from service.signature import Clock, verify_slack_request

__all__ = [
    "BackgroundWork",
    "DedupeStore",
    "MemoryDedupeStore",
    "ParsedText",
    "SlackRuntime",
    "get_slack_runtime",
    "get_slack_settings",
    "get_slack_summarizer",
    "parse_text",
    "router",
]

log = logging.getLogger(__name__)

ACK_WAIT_S = 3.0  # Slack's own limit for the ack; past it, waiting longer helps no one
RESPONSE_URL_VALID_S = 30 * 60  # Slack: a response_url takes 5 posts within 30 minutes
Summarizer = Callable[[SummaryRequest], Awaitable[SummaryResponse]]


# --- dedupe: a retry or replay of the same command or event runs once -----------------------------


class DedupeStore(Protocol):
    """Remembers ids for a while; a durable store (Redis, SQLite) can stand in for the in-memory one."""

    async def first_seen(self, key: str) -> bool:
        """Record `key`; True the first time it is seen within the TTL, False afterwards."""
        ...


class MemoryDedupeStore:
    """In-process dedupe with a TTL and a size cap (oldest forgotten first)."""

    def __init__(self, ttl_s: float, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_keys, self.clock = ttl_s, max_keys, clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    async def first_seen(self, key: str) -> bool:
        """Record `key`; True the first time it is seen within the TTL."""
        now = self.clock()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)  # insertion order is expiry order: the TTL is fixed
        if key in self._expiry:
            return False
        self._expiry[key] = now + self.ttl_s
        while len(self._expiry) > self.max_keys:
            self._expiry.popitem(last=False)
        return True


# --- background work: tracked, bounded, logged ---------------------------------------------------


class BackgroundWork:
    """Runs work after the ack: at most `concurrency` at once, at most `max_pending` accepted, none lost."""

    def __init__(self, concurrency: int, max_pending: int) -> None:
        self.concurrency, self.max_pending = concurrency, max_pending
        self._semaphore = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones

    @property
    def pending(self) -> int:
        """Tasks accepted and not yet finished."""
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, None], *, request_id: str, after: asyncio.Event | None = None) -> bool:
        """Schedule `work` (once `after` is set, if given); False when too much is already pending."""
        if len(self._tasks) >= self.max_pending:
            work.close()
            log.warning("slack work refused, %d pending request_id=%s", len(self._tasks), request_id)
            return False
        task = asyncio.get_running_loop().create_task(self._run(work, request_id, after), name=f"slack-{request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, work: Coroutine[Any, Any, None], request_id: str, after: asyncio.Event | None) -> None:
        if after is not None:
            # Summarizing can hold the event loop (the embedded default is CPU work); holding it before the
            # ack is written would delay the ack past Slack's 3 s. Wait for it, but not forever.
            try:
                await asyncio.wait_for(after.wait(), ACK_WAIT_S)
            except TimeoutError:
                log.warning(
                    "ack not confirmed sent within %.0f s; starting anyway request_id=%s", ACK_WAIT_S, request_id
                )
        async with self._semaphore:
            started = time.perf_counter()
            try:
                await work
            except asyncio.CancelledError:
                log.warning("slack work cancelled request_id=%s", request_id)
                raise
            except Exception:  # the work reports its own failures; this is the last line of defence
                log.exception("slack work crashed request_id=%s", request_id)
            else:
                log.info("slack work done in %.0f ms request_id=%s", (time.perf_counter() - started) * 1000, request_id)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for every accepted task (those started while waiting too); cancel what is left at `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, still = await asyncio.wait(set(self._tasks), timeout=remaining)
            if still and deadline is not None and time.monotonic() >= deadline:
                for task in still:
                    task.cancel()
                await asyncio.gather(*still, return_exceptions=True)
                return


def _default_client(settings: Settings) -> httpx.AsyncClient:
    # Redirects are not followed: a response_url host is checked once, against the allow-list.
    return httpx.AsyncClient(timeout=settings.slack_delivery_timeout_s, follow_redirects=False)


@dataclass
class SlackRuntime:
    """What the chat routes share across requests: background work, seen ids, and the clocks."""

    work: BackgroundWork
    seen: DedupeStore
    clock: Clock = field(default_factory=Clock)  # wall clock for signature timestamps (slack_sdk's type)
    monotonic: Callable[[], float] = time.monotonic  # for response_url validity
    http_client: Callable[[Settings], httpx.AsyncClient] = _default_client  # tests may pass a MockTransport

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackRuntime:
        """A runtime sized by the settings, with an in-memory dedupe store."""
        return cls(
            work=BackgroundWork(settings.slack_max_concurrency, settings.slack_max_pending),
            seen=MemoryDedupeStore(settings.slack_dedupe_ttl_s),
        )


# --- dependencies (tests swap them through app.dependency_overrides) ------------------------------


def get_slack_settings(request: Request) -> Settings:
    """The app's settings (create_app keeps them on app.state), else the process-wide ones."""
    return getattr(request.app.state, "settings", None) or get_settings()


SettingsDep = Annotated[Settings, Depends(get_slack_settings)]


def get_slack_runtime(request: Request, settings: SettingsDep) -> SlackRuntime:
    """The app's chat runtime, made on first use."""
    runtime = getattr(request.app.state, "slack_runtime", None)
    if runtime is None:
        runtime = request.app.state.slack_runtime = SlackRuntime.from_settings(settings)
    return runtime


def get_slack_summarizer(request: Request, settings: SettingsDep) -> Summarizer:
    """The pipeline's entry point bound to this app's settings and LLM client."""
    from service.summarize import summarize_request  # late: the pipeline need not load for a 401

    llm = getattr(request.app.state, "llm", None)

    async def summarize(summary_request: SummaryRequest) -> SummaryResponse:
        return await summarize_request(summary_request, settings=settings, llm=llm)

    return summarize


RuntimeDep = Annotated[SlackRuntime, Depends(get_slack_runtime)]
SummarizerDep = Annotated[Summarizer, Depends(get_slack_summarizer)]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    runtime = getattr(app.state, "slack_runtime", None)
    if runtime is not None:  # let summaries in flight reach their users before the process goes
        await runtime.work.drain(timeout=20.0)


router = APIRouter(tags=["chat"], lifespan=_lifespan)


# --- reading what the user typed ---------------------------------------------------------------

_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|[^>]*)?>")
_SLACK_MENTION = re.compile(r"<[@#!][^>]*>")
_URL = re.compile(r"https?://[^\s<>\"]+")
_FLAGS: dict[str, tuple[str, str]] = {
    "--public": ("visibility", "in_channel"),
    "--private": ("visibility", "ephemeral"),
    "--drop": ("policy", "drop"),
    "--flag": ("policy", "flag"),
    "--repair": ("policy", "repair"),
}
MAX_INSTRUCTION_CHARS = 120  # "please summarize <url>" is a link request; longer text is an article


@dataclass
class ParsedText:
    """What a slash command or a mention asks for."""

    url: str | None = None
    text: str | None = None
    visibility: str | None = None
    policy: PolicyName | None = None
    wants_help: bool = False
    problem: str | None = None

    def describe(self) -> str:
        """A short description of the target for the acknowledgement."""
        if self.url:
            return f"<{self.url}>"
        return f"the pasted text ({len(self.text or ''):,} characters)"

    def to_request(self) -> SummaryRequest:
        """The pipeline request (raises pydantic's ValidationError on a bad URL)."""
        if self.url:
            return SummaryRequest(url=self.url, policy=self.policy)
        return SummaryRequest(text=self.text, policy=self.policy)


def parse_text(raw: str) -> ParsedText:
    """Flags (`--public`, `--private`, `--drop`, `--flag`, `--repair`), then a link or an article; `help`."""
    text = _SLACK_LINK.sub(lambda m: m.group(1), raw)
    text = _SLACK_MENTION.sub(" ", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
    parsed = ParsedText()
    while text.startswith("--"):
        flag, _, text = text.partition(" ")
        text = text.strip()
        if flag.lower() not in _FLAGS:
            return ParsedText(wants_help=True, problem=f"Unknown option {flag}.")
        name, value = _FLAGS[flag.lower()]
        setattr(parsed, name, value)
    if not text or text.lower() in {"help", "-h", "--help", "?"}:
        parsed.wants_help = True
        return parsed
    urls = _URL.findall(text)
    if urls and len(_URL.sub("", text).strip()) <= MAX_INSTRUCTION_CHARS:
        parsed.url = urls[0].rstrip(".,;:!?)]}'\"")
    else:
        parsed.text = text
    return parsed


# --- the routes ------------------------------------------------------------------------------------


def _request_id(request: Request) -> str:
    request_id = getattr(request.state, "request_id", None)
    if not request_id:  # the app's RequestIdMiddleware normally sets it
        request_id = request.state.request_id = uuid.uuid4().hex
    return request_id


def _refuse(request: Request, reason: str, request_id: str) -> JSONResponse:
    log.warning("chat request refused (%s) path=%s request_id=%s", reason, request.url.path, request_id)
    return problem_response(401, "Unauthorized", reason, slug="chat-signature", request=request)


def _form(body: bytes) -> dict[str, str]:
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _set_after_send(event: asyncio.Event) -> BackgroundTask:
    """A response background task: Starlette runs it once the response has been sent."""

    async def set_event() -> None:  # async, so it runs on the loop (a plain function would go to a thread)
        event.set()

    return BackgroundTask(set_event)


def _ephemeral(message: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"response_type": "ephemeral", **message})


@router.post("/slack/commands", summary="Slack slash command (signed)")
async def slack_command(
    request: Request, settings: SettingsDep, runtime: RuntimeDep, summarize: SummarizerDep
) -> JSONResponse:
    """`/summarize <link or text>`: acknowledged at once; the summary follows on the response_url."""
    request_id = _request_id(request)
    body = await request.body()
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    check = verify_slack_request(body, request.headers, secret, runtime.clock)
    if not check:
        return _refuse(request, check.reason, request_id)
    return await _handle_command(_form(body), "slack", request, settings, runtime, summarize, request_id)


@router.post("/mattermost/commands", summary="Mattermost slash command (token)")
async def mattermost_command(
    request: Request, settings: SettingsDep, runtime: RuntimeDep, summarize: SummarizerDep
) -> JSONResponse:
    """The same command for Mattermost, authenticated by its per-command token."""
    request_id = _request_id(request)
    if settings.mattermost_token is None:
        return _refuse(request, "CITESUM_MATTERMOST_TOKEN is not set", request_id)
    body = await request.body()
    form = _form(body)  # Mattermost puts its token in the form (and in the Authorization header)
    header = request.headers.get("authorization", "")
    offered = header[len("Token ") :] if header.startswith("Token ") else form.get("token", "")
    expected = settings.mattermost_token.get_secret_value()
    if not offered or not hmac.compare_digest(offered.encode(), expected.encode()):
        return _refuse(request, "missing or wrong Mattermost token", request_id)
    return await _handle_command(form, "mattermost", request, settings, runtime, summarize, request_id)


async def _handle_command(
    form: dict[str, str],
    platform: str,
    request: Request,
    settings: Settings,
    runtime: SlackRuntime,
    summarize: Summarizer,
    request_id: str,
) -> JSONResponse:
    command = form.get("command") or "/summarize"
    parsed = parse_text(form.get("text", ""))
    if parsed.wants_help:
        return _ephemeral(render_help(command, problem=parsed.problem))
    response_url = form.get("response_url", "")
    try:
        check_target(response_url, settings.slack_response_hosts)
    except TargetNotAllowed as exc:
        log.warning("%s command refused: response_url %s request_id=%s", platform, exc, request_id)
        return _ephemeral(render_error(f"I can't reply to this workspace ({exc}).", request_id=request_id))
    try:
        summary_request = parsed.to_request()
    except ValidationError as exc:
        problem = exc.errors()[0].get("msg", "invalid input") if exc.errors() else "invalid input"
        return _ephemeral(render_help(command, problem=f"That doesn't look like a link or an article: {problem}."))
    # trigger_id is unique per invocation, so this key is the command's id (Slack sends no other).
    identity = "\x1f".join(
        form.get(k, "") for k in ("team_id", "user_id", "channel_id", "command", "text", "trigger_id")
    )
    key = f"{platform}:command:" + hashlib.sha256(identity.encode()).hexdigest()
    retry = request.headers.get("x-slack-retry-num")
    if not await runtime.seen.first_seen(key):
        log.info("%s command already seen (retry=%s), not run again request_id=%s", platform, retry, request_id)
        return _ephemeral({"text": "Already working on that one."})
    visibility = parsed.visibility or settings.slack_response_type
    job = _summarize_to_response_url(
        summarize, summary_request, response_url, visibility, settings, runtime, request_id, parsed.url
    )
    acked = asyncio.Event()
    if not runtime.work.start(job, request_id=request_id, after=acked):
        return _ephemeral(render_error("Too many summaries in progress; please try again in a minute."))
    log.info(
        "%s command accepted user=%s channel=%s kind=%s visibility=%s retry=%s request_id=%s",
        platform, form.get("user_id"), form.get("channel_id"), "url" if parsed.url else "text",
        visibility, retry, request_id,
    )  # fmt: skip
    return JSONResponse(render_working(parsed.describe()), background=_set_after_send(acked))


async def _summarize_to_response_url(
    summarize: Summarizer,
    summary_request: SummaryRequest,
    response_url: str,
    visibility: str,
    settings: Settings,
    runtime: SlackRuntime,
    request_id: str,
    source_url: str | None,
) -> None:
    issued = runtime.monotonic()
    message, response_type = await _summarize_to_message(summarize, summary_request, source_url, request_id)
    response_type = visibility if response_type is None else response_type
    deadline_s = RESPONSE_URL_VALID_S - (runtime.monotonic() - issued) - 60  # a minute's margin
    async with runtime.http_client(settings) as client:
        try:
            await post_to_response_url(
                client, response_url, message, settings=settings, response_type=response_type, deadline_s=deadline_s
            )
            log.info("summary delivered to response_url (%s) request_id=%s", response_type, request_id)
        except DeliveryError as exc:
            log.error(
                "response_url delivery failed after %d attempt(s): %s request_id=%s", exc.attempts, exc, request_id
            )
            return
        if response_type == "in_channel" and settings.incoming_webhook_url and "blocks" in message:
            await _mirror(client, message, settings, request_id)


async def _summarize_to_message(
    summarize: Summarizer, summary_request: SummaryRequest, source_url: str | None, request_id: str
) -> tuple[dict[str, Any], str | None]:
    """The rendered summary (visibility left to the caller), or an ephemeral error message."""
    try:
        response = await summarize(summary_request)
    except SummaryError as exc:
        log.info("summary failed (%s): %s request_id=%s", exc.status, exc.message, request_id)
        return render_error(exc.message, request_id=request_id), "ephemeral"
    except Exception:
        log.exception("summary crashed request_id=%s", request_id)
        return render_error("Something went wrong on our side.", request_id=request_id), "ephemeral"
    return render_summary(response, source_url=source_url), None


async def _mirror(client: httpx.AsyncClient, message: dict[str, Any], settings: Settings, request_id: str) -> None:
    # Only public summaries are copied to the incoming webhook: a private one must stay private.
    try:
        await post_incoming_webhook(client, message, settings=settings)
        log.info("summary mirrored to the incoming webhook request_id=%s", request_id)
    except DeliveryError as exc:
        log.error("incoming webhook delivery failed: %s request_id=%s", exc, request_id)


@router.post("/slack/events", summary="Slack Events API (signed)")
async def slack_events(
    request: Request, settings: SettingsDep, runtime: RuntimeDep, summarize: SummarizerDep
) -> JSONResponse:
    """url_verification, and app mentions / direct messages answered with a thread reply."""
    request_id = _request_id(request)
    body = await request.body()
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    check = verify_slack_request(body, request.headers, secret, runtime.clock)
    if not check:
        return _refuse(request, check.reason, request_id)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return problem_response(
            400, "Invalid JSON", "the event body is not a JSON object", slug="invalid-json", request=request
        )
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": str(payload.get("challenge", ""))})
    event = payload.get("event")
    if payload.get("type") != "event_callback" or not isinstance(event, dict):
        return JSONResponse({"ok": True, "ignored": "not an event callback"})
    retry = request.headers.get("x-slack-retry-num")
    event_id = str(payload.get("event_id") or "")
    key = f"slack:event:{event_id}" if event_id else "slack:event:" + hashlib.sha256(body).hexdigest()
    if not await runtime.seen.first_seen(key):
        log.info("slack event %s already seen (retry=%s), not run again request_id=%s", event_id, retry, request_id)
        return JSONResponse({"ok": True, "duplicate": True})
    if not _is_for_us(event):
        return JSONResponse({"ok": True, "ignored": str(event.get("type"))})
    if settings.slack_bot_token is None:
        log.warning("slack event %s ignored: SLACK_BOT_TOKEN is not set request_id=%s", event_id, request_id)
        return JSONResponse({"ok": True, "ignored": "no bot token"})
    job = _summarize_to_thread(summarize, str(event.get("text", "")), event, settings, runtime, request_id)
    acked = asyncio.Event()
    if not runtime.work.start(job, request_id=request_id, after=acked):
        # Still acked: an error status would only make Slack re-send into the same overload.
        return JSONResponse({"ok": True, "ignored": "overloaded"})
    log.info("slack event %s (%s) accepted retry=%s request_id=%s", event_id, event.get("type"), retry, request_id)
    return JSONResponse({"ok": True}, background=_set_after_send(acked))


def _is_for_us(event: dict[str, Any]) -> bool:
    # Bot messages (ours included) and edits/joins carry bot_id or a subtype: answering them would loop.
    if event.get("bot_id") or event.get("subtype") or not event.get("user") or not event.get("channel"):
        return False
    if event.get("type") == "app_mention":
        return True
    return event.get("type") == "message" and event.get("channel_type") == "im"


async def _summarize_to_thread(
    summarize: Summarizer,
    raw_text: str,
    event: dict[str, Any],
    settings: Settings,
    runtime: SlackRuntime,
    request_id: str,
) -> None:
    parsed = parse_text(raw_text)
    if parsed.wants_help:
        message = render_help("@citesum", problem=parsed.problem)
    else:
        try:
            summary_request = parsed.to_request()
        except ValidationError:
            message = render_help("@citesum", problem="That doesn't look like a link or an article.")
        else:
            message, _ = await _summarize_to_message(summarize, summary_request, parsed.url, request_id)
    thread_ts = event.get("thread_ts") or event.get("ts")
    async with runtime.http_client(settings) as client:
        try:
            await post_chat_message(
                client, message, settings=settings, channel=str(event["channel"]), thread_ts=thread_ts
            )
            log.info("thread reply posted channel=%s request_id=%s", event["channel"], request_id)
        except DeliveryError as exc:
            log.error("chat.postMessage failed after %d attempt(s): %s request_id=%s", exc.attempts, exc, request_id)
