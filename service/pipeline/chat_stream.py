"""Read a streamed chat completion (OpenAI's SSE `chat.completion.chunk`s) into the completion it adds up to.

The result has the shape of a plain `chat.completion` (choices[0].message.content, finish_reason,
usage), so everything after the HTTP call is the same for both. A server that ignores `"stream":
true` and answers one JSON body is read as such. Failures while reading are `StreamBroken` (a cut
connection, a chunk that is not JSON, an error object mid-stream, an end without `[DONE]` or a
finish reason) or `StreamTimeout` (no byte within the read timeout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["StreamBroken", "StreamTimeout", "read_chat_stream"]


class StreamBroken(Exception):
    """The stream stopped or went wrong before it was complete."""


class StreamTimeout(StreamBroken):
    """No data within the read timeout (a stalled stream)."""


OnContent = Callable[[str, str], None]  # (content so far, the piece just added)


async def read_chat_stream(response: httpx.Response, on_content: OnContent) -> dict[str, Any]:
    """The completion `response` streams; `on_content` is called after every piece of content."""
    try:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return _whole_body(await response.aread(), on_content)
        return await _read_events(response, on_content)
    except httpx.TimeoutException as exc:
        raise StreamTimeout(f"the stream stalled: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise StreamBroken(f"the stream was cut: {type(exc).__name__}: {exc}") from exc


def _whole_body(body: bytes, on_content: OnContent) -> dict[str, Any]:
    try:
        completion = json.loads(body)
    except json.JSONDecodeError as exc:
        raise StreamBroken(f"the body was not JSON ({exc.msg})") from exc
    if not isinstance(completion, dict):
        return {}
    choices = completion.get("choices")
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str) and content:
        on_content(content, content)
    return completion


async def _read_events(response: httpx.Response, on_content: OnContent) -> dict[str, Any]:
    content = ""
    finish_reason: str | None = None
    usage: Any = None
    model: Any = None
    done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise StreamBroken(f"a stream chunk was not JSON ({exc.msg}): {data[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise StreamBroken(f"a stream chunk was not an object: {data[:80]!r}")
        if (error := chunk.get("error")) is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamBroken(f"the model server reported an error mid-stream: {str(message)[:200]}")
        usage = chunk.get("usage") or usage
        model = chunk.get("model") or model
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(piece, str) and piece:
                content += piece
                on_content(content, piece)
            finish_reason = choice.get("finish_reason") or finish_reason
    if not done and finish_reason is None:
        raise StreamBroken("the stream ended before its last chunk")
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": usage,
    }
