"""The chat door: Slack slash commands and Events API (plus Mattermost slash commands) in, summary jobs out.

Every request is checked before its body is parsed (Slack: signature over the raw bytes; Mattermost: its
token) and answered at once. The summary itself is a durable job (service/job_backend.py): its completion
callback posts the Block Kit message to the `response_url` (slash commands) or replies in the thread with
`chat.postMessage` (mentions and direct messages). So a restart between the ack and the post loses nothing,
and a Slack retry or a replay of the same command or event maps to the same job (its idempotency key).
A mention that only gets a help text is recorded under that same key before the reply is posted, so a
retried help mention is not answered twice either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from service.core.config import Settings, get_settings
from service.core.schema import PolicyName, SummaryRequest
from service.interfaces.problems import problem_response
from service.interfaces.signature import Clock, verify_slack_request
from service.jobs.backend import JobBackend
from service.jobs.deliver import DeliveryError, TargetNotAllowed, check_target, post_chat_message
from service.jobs.job import CHAT_OWNER, Job, new_job_id
from service.pipeline.render_slack import render_error, render_help, render_working

__all__ = [
    "ParsedText",
    "get_slack_clock",
    "get_slack_jobs",
    "get_slack_settings",
    "parse_text",
    "router",
]

log = logging.getLogger(__name__)


# --- dependencies (tests swap them through app.dependency_overrides) ------------------------------


def get_slack_settings(request: Request) -> Settings:
    """The app's settings (create_app keeps them on app.state), else the process-wide ones."""
    return getattr(request.app.state, "settings", None) or get_settings()


def get_slack_clock() -> Clock:
    """The wall clock signature timestamps are checked against (slack_sdk's type; tests pin it)."""
    return Clock()


def get_slack_jobs(request: Request) -> JobBackend | None:
    """The app's job backend (opened by the jobs router's lifespan), or None when it is not running."""
    return getattr(request.app.state, "jobs", None)


SettingsDep = Annotated[Settings, Depends(get_slack_settings)]
ClockDep = Annotated[Clock, Depends(get_slack_clock)]
JobsDep = Annotated[JobBackend | None, Depends(get_slack_jobs)]

router = APIRouter(tags=["chat"])


# --- reading what the user typed ---------------------------------------------------------------

# Slack escapes "<" in what the user typed, so none occurs inside a link or mention: stopping at it
# keeps each scan between one "<" and the next (with [^>]*, "<@<@<@..." rescanned to the end from
# every "<": quadratic, 9 s for 40k characters on the event loop).
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|<>\s]+)(?:\|[^<>]*)?>")
_SLACK_MENTION = re.compile(r"<[@#!][^<>]*>")
_SPACES = re.compile(r"\s*")
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
    # Flags are read by position, not by cutting them off the text one by one (which copied the
    # rest of it for each of thousands of "--drop").
    position = 0
    while text.startswith("--", position):
        space = text.find(" ", position)
        flag = text[position:] if space < 0 else text[position:space]
        position = len(text) if space < 0 else _SPACES.match(text, space + 1).end()
        if flag.lower() not in _FLAGS:
            return ParsedText(wants_help=True, problem=f"Unknown option {flag}.")
        name, value = _FLAGS[flag.lower()]
        setattr(parsed, name, value)
    text = text[position:]
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


def _ephemeral(message: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"response_type": "ephemeral", **message})


async def _submit(
    jobs: JobBackend | None, summary_request: SummaryRequest, *, what: str, request_id: str, **job: Any
) -> tuple[str, bool] | None:
    """Submit the summary job; (job id, created), or None (logged) when the job system cannot take it."""
    if jobs is None:  # an app built without the jobs router: nothing durable to hand the work to
        log.error("%s not accepted: the job system is not running request_id=%s", what, request_id)
        return None
    try:
        accepted, created = await jobs.submit(summary_request, owner=CHAT_OWNER, **job)
    except Exception:  # a store that is down must still get the user an answer, never a 500
        log.exception("%s not accepted: job submit failed request_id=%s", what, request_id)
        return None
    return accepted.id, created


async def _record_help_reply(
    jobs: JobBackend | None, options: dict[str, str], *, idempotency_key: str, request_id: str
) -> tuple[str, bool] | None:
    """Record a help reply in the job store under the event's key; as `_submit`: (job id, created), or None."""
    if jobs is None:  # nowhere durable to remember the reply, so a Slack retry could not be told apart
        log.error("slack help reply not sent: the job system is not running request_id=%s", request_id)
        return None
    # Born finished, as a cache hit is, so no worker ever runs it: the job only holds the event's
    # idempotency key, which is what makes a retried or replayed help mention find it and stay quiet.
    marker = Job(
        id=new_job_id(),
        status="succeeded",
        max_attempts=jobs.settings.job_max_attempts,
        request={"help": True},
        callback_format="slack_chat",
        callback_options=options,
        owner=CHAT_OWNER,
    )
    try:
        job, created = await jobs.store.create(marker, idempotency_key=idempotency_key)
    except Exception:  # a store that is down must not turn the ack into a 500 (Slack would only re-send)
        log.exception("slack help reply not sent: job store failed request_id=%s", request_id)
        return None
    return job.id, created


def _refuse_unsigned(
    request: Request, body: bytes, settings: Settings, clock: Clock, request_id: str
) -> JSONResponse | None:
    """A 401 unless the raw body carries a valid Slack signature (checked before any parsing)."""
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    check = verify_slack_request(body, request.headers, secret, clock)
    return None if check else _refuse(request, check.reason, request_id)


@router.post("/slack/commands", summary="Slack slash command (signed)")
async def slack_command(request: Request, settings: SettingsDep, clock: ClockDep, jobs: JobsDep) -> JSONResponse:
    """`/summarize <link or text>`: acknowledged at once; the summary follows on the response_url."""
    request_id = _request_id(request)
    body = await request.body()
    if (refusal := _refuse_unsigned(request, body, settings, clock, request_id)) is not None:
        return refusal
    return await _handle_command(_form(body), "slack", request, settings, jobs, request_id)


@router.post("/mattermost/commands", summary="Mattermost slash command (token)")
async def mattermost_command(request: Request, settings: SettingsDep, jobs: JobsDep) -> JSONResponse:
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
    return await _handle_command(form, "mattermost", request, settings, jobs, request_id)


async def _handle_command(
    form: dict[str, str],
    platform: str,
    request: Request,
    settings: Settings,
    jobs: JobBackend | None,
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
    # trigger_id is unique per invocation, so this key is the command's id (Slack sends no other); it is
    # the job's idempotency key, so a retry or replay finds the first job, across restarts and replicas.
    identity = "\x1f".join(
        form.get(k, "") for k in ("team_id", "user_id", "channel_id", "command", "text", "trigger_id")
    )
    key = f"{platform}:command:" + hashlib.sha256(identity.encode()).hexdigest()
    retry = request.headers.get("x-slack-retry-num")
    visibility = parsed.visibility or settings.slack_response_type
    submitted = await _submit(
        jobs,
        summary_request,
        what=f"{platform} command",
        request_id=request_id,
        callback_url=response_url,
        callback_format="slack_response_url",
        callback_options={"response_type": visibility, "request_id": request_id},
        idempotency_key=key,
    )
    if submitted is None:
        unavailable = "Summaries are unavailable right now; please try again in a minute."
        return _ephemeral(render_error(unavailable, request_id=request_id))
    job_id, created = submitted
    if not created:
        log.info("%s command already seen (retry=%s), job=%s not run again request_id=%s",
                 platform, retry, job_id, request_id)  # fmt: skip
        return _ephemeral({"text": "Already working on that one."})
    log.info(
        "%s command accepted job=%s user=%s channel=%s kind=%s visibility=%s retry=%s request_id=%s",
        platform, job_id, form.get("user_id"), form.get("channel_id"), "url" if parsed.url else "text",
        visibility, retry, request_id,
    )  # fmt: skip
    return JSONResponse(render_working(parsed.describe()))


@router.post("/slack/events", summary="Slack Events API (signed)")
async def slack_events(request: Request, settings: SettingsDep, clock: ClockDep, jobs: JobsDep) -> JSONResponse:
    """url_verification, and app mentions / direct messages answered with a thread reply."""
    request_id = _request_id(request)
    body = await request.body()
    if (refusal := _refuse_unsigned(request, body, settings, clock, request_id)) is not None:
        return refusal
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
    if not _is_for_us(event):
        return JSONResponse({"ok": True, "ignored": str(event.get("type"))})
    event_id = str(payload.get("event_id") or "")
    if settings.slack_bot_token is None:
        log.warning("slack event %s ignored: SLACK_BOT_TOKEN is not set request_id=%s", event_id, request_id)
        return JSONResponse({"ok": True, "ignored": "no bot token"})
    channel, thread_ts = str(event["channel"]), str(event.get("thread_ts") or event.get("ts") or "")
    parsed = parse_text(str(event.get("text", "")))
    try:
        summary_request = None if parsed.wants_help else parsed.to_request()
    except ValidationError:
        parsed = ParsedText(wants_help=True, problem="That doesn't look like a link or an article.")
        summary_request = None
    retry = request.headers.get("x-slack-retry-num")
    # Slack repeats event_id on every retry of an event, so this key is the event's id; it is the
    # job's idempotency key, so a retry or replay finds the first job, across restarts and replicas.
    key = f"slack:event:{event_id}" if event_id else "slack:event:" + hashlib.sha256(body).hexdigest()
    options = {"channel": channel, "request_id": request_id, **({"thread_ts": thread_ts} if thread_ts else {})}
    if summary_request is None:
        # Only a help text, posted right after the ack; recorded under the same key first, so that a
        # retry of this event is a duplicate here too and the help is posted at most once.
        submitted = await _record_help_reply(jobs, options, idempotency_key=key, request_id=request_id)
    else:
        submitted = await _submit(
            jobs,
            summary_request,
            what="slack event",
            request_id=request_id,
            callback_format="slack_chat",
            callback_options=options,
            idempotency_key=key,
        )
    if submitted is None:
        # Still acked: an error status would only make Slack re-send into the same trouble.
        return JSONResponse({"ok": True, "ignored": "job system unavailable"})
    job_id, created = submitted
    if not created:
        log.info("slack event %s already seen (retry=%s), job=%s not run again request_id=%s",
                 event_id, retry, job_id, request_id)  # fmt: skip
        return JSONResponse({"ok": True, "duplicate": True})
    log.info("slack event %s (%s) accepted job=%s help=%s retry=%s request_id=%s",
             event_id, event.get("type"), job_id, summary_request is None, retry, request_id)  # fmt: skip
    if summary_request is None:
        help_message = render_help("@citesum", problem=parsed.problem)
        reply = BackgroundTask(_reply_in_thread, help_message, settings, channel, thread_ts, request_id)
        return JSONResponse({"ok": True}, background=reply)
    return JSONResponse({"ok": True})


def _is_for_us(event: dict[str, Any]) -> bool:
    # Bot messages (ours included) and edits/joins carry bot_id or a subtype: answering them would loop.
    if event.get("bot_id") or event.get("subtype") or not event.get("user") or not event.get("channel"):
        return False
    if event.get("type") == "app_mention":
        return True
    return event.get("type") == "message" and event.get("channel_type") == "im"


async def _reply_in_thread(
    message: dict[str, Any], settings: Settings, channel: str, thread_ts: str, request_id: str
) -> None:
    async with httpx.AsyncClient(timeout=settings.slack_delivery_timeout_s, follow_redirects=False) as client:
        try:
            await post_chat_message(client, message, settings=settings, channel=channel, thread_ts=thread_ts or None)
            log.info("help reply posted channel=%s request_id=%s", channel, request_id)
        except DeliveryError as exc:
            log.error("chat.postMessage failed after %d attempt(s): %s request_id=%s", exc.attempts, exc, request_id)
