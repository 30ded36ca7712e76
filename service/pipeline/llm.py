"""The only module that talks to an OpenAI-compatible chat-completions server.

Who retries what (never two layers on one failure):
- the `openai` client is built with `max_retries=0`;
- one tenacity policy here owns transport failures (connection errors, timeouts, 408, 409, 429,
  5xx): exponential backoff with jitter, `Retry-After` honoured, bounded by attempts and a total
  deadline, then `LLMUnavailable` / `LLMTimeout` carrying the attempt count;
- a separate, bounded re-ask loop owns replies that arrived but are not of the requested shape
  (JSON, or a plain-text shape its caller parses): the error is fed back to the model, then
  `LLMBadOutput`.

Streamed calls (`complete_json(..., sink=...)`, chat_stream.py reads the SSE) follow the same two
policies only until the sink has handed a part of the reply on (`sink.committed`): after that a
broken stream or an invalid reply raises at once, since a retry would repeat what the reader saw.
A server that refuses `stream_options` (a 400/422 naming it) is asked again without it, and one
that refuses `stream` without streaming; like the structured-output downgrade, once per client.
A reply without token usage (llama-cpp-python's streams ignore `include_usage`) is counted with
the offline estimate (chunking.estimate_tokens) and marked `tokens_estimated`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from service.core import metrics
from service.core.breaker import CircuitBreaker
from service.core.config import Settings
from service.core.errors import LLMBadOutput, LLMTimeout, LLMUnavailable
from service.pipeline.chat_stream import StreamBroken, StreamTimeout, read_chat_stream
from service.pipeline.chunking import estimate_tokens
from service.pipeline.limits import llm_call_slot

if TYPE_CHECKING:  # imported where used: `import openai` takes ~1 s, which no embedded-only run needs
    import openai

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429}
CHAT_COMPLETIONS_PATH = "/chat/completions"
# The opening fence only: a closing one is cut with str methods, since `\s*```$` tried from every
# space of a long run of them (quadratic in the run).
_OPENING_FENCE = re.compile(r"^```(?:json)?\s*")
# A refusal of the streaming fields: "stream_options"/"include_usage", or "stream" as a word (not "upstream").
_NAMES_STREAM_OPTIONS = re.compile(r"stream_options|include_usage")
_NAMES_STREAM = re.compile(r"(?<![a-z_])stream(?![a-z_])")


@dataclass
class LLMResult:
    """A parsed JSON answer and what it cost."""

    data: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    attempts: int  # transport attempts summed over re-asks
    reasks: int
    model: str
    tokens_estimated: bool = False  # a reply came without usage: its counts are estimate_tokens's


class InvalidOutput(ValueError):
    """The model's reply is not JSON of the requested shape (message is fed back to the model)."""


class ReplySink(Protocol):
    """Takes a streamed reply as it grows (streaming.SentenceStream is the one we have)."""

    committed: bool  # a part of the reply was handed on: no retry or re-ask may follow

    def restart(self) -> None: ...

    def feed(self, content: str, piece: str) -> None: ...


# Called once the current task's request body is fully on the wire (see `build_openai_client`):
# summarize.py starts its CPU-bound verifier index then, not while the request is still being sent,
# which it would slow down (a send that releases the GIL waits up to a switch interval, 5 ms, to get
# it back from a busy thread).
on_request_sent: ContextVar[Callable[[], None] | None] = ContextVar("on_request_sent", default=None)
_BODY_SENT_EVENTS = frozenset({"http11.send_request_body.complete", "http2.send_request_body.complete"})


async def _trace_request_sent(event_name: str, info: dict[str, Any]) -> None:
    if event_name in _BODY_SENT_EVENTS and (callback := on_request_sent.get()) is not None:
        callback()


async def _ask_for_request_sent(request: httpx.Request) -> None:
    """httpx request hook: have httpcore report the body's send via its `trace` extension."""
    if on_request_sent.get() is not None:
        request.extensions["trace"] = _trace_request_sent


def build_openai_client(settings: Settings, http_client: httpx.AsyncClient | None = None) -> openai.AsyncOpenAI:
    """The official async client for the configured server; retries are ours, not the client's."""
    import openai

    if http_client is None:  # openai's own default client (its limits, timeouts), plus the send hook
        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": [_ask_for_request_sent]})
    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed",
        base_url=settings.openai_base_url or None,
        timeout=settings.llm_timeout_s,
        max_retries=0,
        http_client=http_client,
    )


def _is_transport_failure(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError | json.JSONDecodeError | StreamBroken):
        return True  # timeouts; a body cut off in transit; a stream cut, stalled or garbled
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _BackoffHonouringRetryAfter:
    """tenacity wait: the server's Retry-After when given, else exponential backoff with full jitter."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum = initial, maximum
        self.rng = rng or random.Random()

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(exc)
        if asked is not None:
            return min(asked, self.maximum)
        ceiling = min(self.maximum, self.initial * 2 ** (state.attempt_number - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


def parse_json_reply(content: str | None, validate: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Parse the model's reply as a JSON object (tolerating a Markdown fence) and validate it."""
    if not content or not content.strip():
        raise InvalidOutput("the reply was empty")
    text = _OPENING_FENCE.sub("", content.strip(), count=1)
    if text.endswith("```"):
        text = text[:-3].rstrip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # Some servers wrap the object in prose: take the outermost {...} once.
        first, last = text.find("{"), text.rfind("}")
        if first == -1 or last <= first:
            raise InvalidOutput(f"the reply is not JSON ({exc.msg} at position {exc.pos})") from None
        try:
            data = json.loads(text[first : last + 1])
        except json.JSONDecodeError as inner:
            raise InvalidOutput(f"the reply is not JSON ({inner.msg} at position {inner.pos})") from None
    if not isinstance(data, dict):
        raise InvalidOutput("the reply must be a JSON object")
    if validate is not None:
        validate(data)
    return data


class LLMClient:
    """Asks an OpenAI-compatible server for JSON answers, with our retry and re-ask policies."""

    def __init__(self, settings: Settings, client: openai.AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.client = client or build_openai_client(settings)
        self.model = settings.model
        # Downgraded at run time when a server refuses json_schema (some vLLM/llama.cpp builds).
        self.structured_output = settings.structured_output
        # Turned off at run time when a server refuses them (a 400 naming `stream_options` / `stream`).
        self.stream_options = True
        self.stream = True
        self.retries = 0  # transport retries made by this client, for metrics
        self.breaker = CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_cooldown_s)

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    def _response_format(self, schema_name: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:  # a plain-text answer
            return None
        if self.structured_output == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        if self.structured_output == "json_object_schema":  # llama-cpp-python's server: a grammar from the schema
            return {"type": "json_object", "schema": schema}
        if self.structured_output == "json_object":
            return {"type": "json_object"}
        return None

    async def _create(
        self,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,
        sink: ReplySink | None = None,
    ) -> dict[str, Any]:
        """One chat completion as the server's JSON object (a body cut off in transit raises JSONDecodeError).

        With a `sink`, the completion is streamed and the sink fed as it arrives (StreamBroken on failure).
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.completion_max_tokens,
        }
        if response_format is not None:
            body["response_format"] = response_format
        if sink is not None and self.stream:
            body["stream"] = True
            if self.stream_options:
                body["stream_options"] = {"include_usage": True}
            sink.restart()
            async with llm_call_slot(self.settings), metrics.observe_llm_call():
                # cast_to=httpx.Response with stream=True: openai maps the status as usual and hands
                # back the open response; chat_stream reads its SSE (no pydantic chunk per token).
                response = await self.client.post(CHAT_COMPLETIONS_PATH, body=body, cast_to=httpx.Response, stream=True)
                try:
                    return await read_chat_stream(response, sink.feed)
                finally:
                    await response.aclose()
        # The process-wide slot is held only for the HTTP call, never across a retry's sleep.
        async with llm_call_slot(self.settings), metrics.observe_llm_call():
            # `client.post` (openai's documented way to call an endpoint directly) keeps the client's
            # auth, base URL, timeout and status-error mapping, but skips `chat.completions.create`'s
            # per-call walk of the messages against its TypedDicts and the pydantic ChatCompletion it
            # builds: ~1 ms of CPU per call, on a body (the article) we already built as plain JSON.
            response = await self.client.post(CHAT_COMPLETIONS_PATH, body=body, cast_to=httpx.Response)
            completion = json.loads(response.content)
        return completion if isinstance(completion, dict) else {}

    async def _create_with_retries(
        self,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any] | None,
        sink: ReplySink | None = None,
    ) -> tuple[dict[str, Any], int]:
        """One completion, transport failures retried. Returns (completion, attempts)."""
        import openai  # already loaded by the client (see the TYPE_CHECKING import)

        s = self.settings
        attempts = 0

        def retryable(exc: BaseException) -> bool:
            return _is_transport_failure(exc) and not (sink is not None and sink.committed)

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(s.llm_max_attempts) | stop_after_delay(s.llm_retry_deadline_s),
            wait=_BackoffHonouringRetryAfter(s.llm_backoff_initial_s, s.llm_backoff_max_s),
            reraise=True,
            before_sleep=self._count_retry,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._create_downgrading(messages, schema_name, schema, sink), attempts
        except StreamTimeout as exc:
            raise LLMTimeout(
                f"the model's stream stalled for {s.llm_timeout_s:g} s{_after_sent(sink, attempts)}", attempts=attempts
            ) from exc
        except StreamBroken as exc:
            raise LLMUnavailable(f"{exc}{_after_sent(sink, attempts)}", attempts=attempts) from exc
        except openai.APITimeoutError as exc:
            raise LLMTimeout(
                f"the model did not answer within {s.llm_timeout_s:g} s ({attempts} attempts)", attempts=attempts
            ) from exc
        except json.JSONDecodeError as exc:  # the openai client parses the HTTP body itself
            raise LLMBadOutput(
                f"the model server's HTTP body was not valid JSON {attempts} times (truncated?); giving up",
                attempts=attempts,
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMUnavailable(
                f"could not reach the model server at {self.base_url} after {attempts} attempts: {exc}",
                attempts=attempts,
                retry_after=s.llm_backoff_max_s,  # nothing said when it is back: suggest our longest backoff
            ) from exc
        except openai.APIStatusError as exc:
            if _is_transport_failure(exc):
                raise LLMUnavailable(
                    f"the model server answered HTTP {exc.status_code} {attempts} times; giving up",
                    attempts=attempts,
                    retry_after=retry_after_seconds(exc),
                ) from exc
            raise LLMBadOutput(
                f"the model server refused the request: HTTP {exc.status_code}: {_short(exc.message)}",
                attempts=attempts,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _create_downgrading(
        self,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any] | None,
        sink: ReplySink | None = None,
    ) -> dict[str, Any]:
        """One request; when the server refuses the structured-output mode or a streaming field, ask again without."""
        import openai

        while True:
            try:
                return await self._create(messages, self._response_format(schema_name, schema), sink)
            except openai.APIStatusError as exc:
                if not (self._downgrade_streaming(exc, sink) or self._downgrade_structured_output(exc)):
                    raise

    def _downgrade_streaming(self, exc: openai.APIStatusError, sink: ReplySink | None) -> bool:
        """Drop `stream_options`, then `stream`, when a 400/422 names the one this request sent."""
        if sink is None or not self.stream or exc.status_code not in (400, 422):
            return False
        text = str(exc.message).lower()
        if self.stream_options and _NAMES_STREAM_OPTIONS.search(text):
            self.stream_options = False
            log.warning("server refused stream_options; streaming without it (token usage may then be estimated)")
            return True
        if _NAMES_STREAM.search(text):
            self.stream = False
            log.warning("server refused stream; asking for whole replies instead")
            return True
        return False

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        metrics.LLM_RETRIES.inc()
        exc = state.outcome.exception() if state.outcome else None
        log.warning("llm transport retry %d: %s", state.attempt_number, type(exc).__name__)

    def _downgrade_structured_output(self, exc: openai.APIStatusError) -> bool:
        """Step json_schema → json_object_schema → json_object → none when the server refuses the mode.

        A refusal is a 400 or 422 naming the response format, or a 500 naming it: llama-cpp-python's
        server (0.3.x) answers `json_schema` with HTTP 500 "Input should be 'text' or 'json_object'"
        (tests/pipeline/real_replies/), which would otherwise be retried as a server fault.
        """
        if exc.status_code not in (400, 422, 500):
            return False
        text = str(exc.message).lower()
        if "response_format" not in text and "json_schema" not in text and "json_object" not in text:
            return False
        order = ["json_schema", "json_object_schema", "json_object", "none"]
        position = order.index(self.structured_output)
        if position == len(order) - 1:
            return False
        self.structured_output = order[position + 1]  # type: ignore[assignment]
        log.info("server refused response_format; falling back to %s", self.structured_output)
        return True

    async def complete_json(
        self,
        messages: list[dict[str, str]],
        *,
        schema_name: str,
        schema: dict[str, Any],
        validate: Callable[[dict[str, Any]], None] | None = None,
        sink: ReplySink | None = None,
    ) -> LLMResult:
        """Ask for a JSON object matching `schema`; re-ask (bounded) when the reply is invalid.

        With a `sink`, the reply is streamed into it (see the module docstring for what changes).
        """
        return await self.complete(
            messages,
            parse=lambda content: parse_json_reply(content, validate),
            again="Answer again with only the JSON object in the required shape.",
            schema_name=schema_name,
            schema=schema,
            sink=sink,
        )

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        parse: Callable[[str | None], dict[str, Any]],
        again: str,
        schema_name: str = "",
        schema: dict[str, Any] | None = None,
        sink: ReplySink | None = None,
    ) -> LLMResult:
        """Ask, and `parse` the reply (InvalidOutput: re-ask, bounded, with the error and `again`).

        With a `schema`, the server is asked for JSON in the configured structured-output mode;
        without, for plain text (a reply shape of our own that `parse` reads).
        """
        conversation = list(messages)
        prompt_tokens = completion_tokens = attempts = 0
        estimated = False
        last_error = ""
        for reask in range(self.settings.llm_reask_attempts + 1):
            async with self.breaker.guard():  # breaker.py: fail fast after repeated upstream failures
                completion, made = await self._create_with_retries(conversation, schema_name, schema, sink)
            attempts += made
            usage = _token_usage(completion)
            metrics.record_llm_tokens(usage)  # what servers reported, never our estimate
            content = _reply_content(completion)
            if not any(usage.values()):  # no usage in the reply: count the estimate rather than 0 + 0
                usage = {"prompt": _estimate_prompt_tokens(conversation), "completion": estimate_tokens(content or "")}
                estimated = True
            prompt_tokens += usage["prompt"]
            completion_tokens += usage["completion"]
            try:
                data = parse(content)
            except InvalidOutput as exc:
                last_error = str(exc)
                if sink is not None and sink.committed:  # a re-ask would repeat what was handed on
                    raise LLMBadOutput(
                        f"the model's streamed answer went wrong after sentences were sent: {last_error}",
                        attempts=attempts,
                    ) from None
                log.warning("llm reply invalid (re-ask %d): %s; the reply began: %r", reask, last_error, _short(content, 160))
                metrics.LLM_REASKS.inc()
                conversation = [
                    *messages,
                    {"role": "assistant", "content": (content or "")[:4000]},
                    {
                        "role": "user",
                        "content": f"That answer was invalid: {last_error}. {again}",
                    },
                ]
                continue
            return LLMResult(data, prompt_tokens, completion_tokens, attempts, reask, self.model, estimated)
        raise LLMBadOutput(
            f"the model's answer was not valid after {self.settings.llm_reask_attempts + 1} tries: {last_error}. "
            + _what_to_try(self.model, self.structured_output if schema is not None else None),
            attempts=attempts,
        )

    async def probe(self, timeout_s: float = 2.0) -> str:
        """For /readyz: "ok", or "error: ..." when the breaker is open or the server cannot be reached.

        GET /models, which OpenAI, vLLM, Ollama and llama.cpp serve; any HTTP answer counts as reachable.
        """
        import openai

        if self.breaker.state == "open":
            return f"error: circuit breaker open after {self.breaker.failures} failures in a row (model server at {self.base_url})"
        try:
            await self.client.with_options(timeout=timeout_s).get("/models", cast_to=httpx.Response)
        except openai.APIStatusError:
            return "ok"
        except openai.APIConnectionError as exc:
            return f"error: unreachable: {self.base_url}: {_short(exc.__cause__ or exc, 160)}"
        return "ok"

    async def aclose(self) -> None:
        await self.client.close()


def _token_usage(completion: dict[str, Any]) -> dict[str, int]:
    """Prompt and completion tokens as the server reported them (0 when absent or malformed)."""
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return {
        kind: count if isinstance(count := usage.get(f"{kind}_tokens"), int) and count > 0 else 0
        for kind in ("prompt", "completion")
    }


def _estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """The offline estimate of a prompt's tokens: its messages' text, plus a few per message for the roles."""
    return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in messages)


def _reply_content(completion: dict[str, Any]) -> str | None:
    """The first choice's message text, or None when the completion has none."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _what_to_try(model: str, mode: str | None) -> str:
    """What a user can change when a model keeps answering in another shape than the one asked for.

    `mode` is the structured-output mode the JSON was asked with; None for a plain-text reply.
    """
    if mode is None:
        return (
            f"The model {model!r} does not seem to follow the answer format: try another model (CITESUM_MODEL), "
            "or the embedded summarizer (CITESUM_PROVIDER=embedded)"
        )
    modes = "json_schema" if mode != "json_schema" else "json_object"
    return (
        f"The model {model!r} (asked with response format {mode!r}) does not seem to follow the JSON format: "
        f"try CITESUM_STRUCTURED_OUTPUT={modes} if your server supports it, another model (CITESUM_MODEL), "
        "or the embedded summarizer (CITESUM_PROVIDER=embedded)"
    )


def _after_sent(sink: ReplySink | None, attempts: int) -> str:
    if sink is not None and sink.committed:
        return " after part of the answer was sent; not retried"
    return f" ({attempts} attempts)"


def _short(text: object, limit: int = 200) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"
