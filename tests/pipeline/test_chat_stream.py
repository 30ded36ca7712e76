"""Reading a streamed chat completion: content, usage, a plain JSON answer, and each way a stream breaks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pytest_httpx import HTTPXMock, IteratorStream

from service.pipeline.chat_stream import StreamBroken, StreamTimeout, read_chat_stream
from tests.conftest import CHAT_URL, SSE_HEADERS, chat_completion, sse_chunks


async def read(stream: object = None, **response: object) -> tuple[dict, list[tuple[str, str]]]:
    fed: list[tuple[str, str]] = []
    async with httpx.AsyncClient() as client, client.stream("POST", CHAT_URL, json={}) as reply:
        completion = await read_chat_stream(reply, lambda content, piece: fed.append((content, piece)))
    return completion, fed


async def test_chunks_add_up_to_the_completion_with_usage(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks("Hello there, world.")))
    completion, fed = await read()
    assert completion["choices"][0]["message"]["content"] == "Hello there, world."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] == 40
    assert [piece for _, piece in fed] == ["Hell", "o th", "ere,", " wor", "ld."]
    assert fed[2][0] == "Hello there,"


async def test_a_plain_json_answer_is_read_whole(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion("All at once."))
    completion, fed = await read()
    assert completion["choices"][0]["message"]["content"] == "All at once."
    assert fed == [("All at once.", "All at once.")]


def _cut(chunks: list[bytes], after: int, exc: Exception) -> Iterator[bytes]:
    yield from chunks[:after]
    raise exc


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (sse_chunks("Cut short.", done=False)[:4], "ended before"),  # no finish reason, no [DONE]
        ([*sse_chunks("Bad.")[:2], b'data: {"choices": [{"delta": \n\n'], "not JSON"),
        ([*sse_chunks("Err.")[:2], b'data: {"error": {"message": "overloaded"}}\n\n'], "overloaded"),
    ],
)
async def test_a_broken_stream_raises_stream_broken(httpx_mock: HTTPXMock, chunks: list[bytes], error: str) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(chunks))
    with pytest.raises(StreamBroken, match=error):
        await read()


async def test_a_cut_connection_and_a_stall_are_told_apart(httpx_mock: HTTPXMock) -> None:
    chunks = sse_chunks("Some content here.")
    httpx_mock.add_response(
        url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(_cut(chunks, 3, httpx.ReadError("reset")))
    )
    httpx_mock.add_response(
        url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(_cut(chunks, 3, httpx.ReadTimeout("stall")))
    )
    with pytest.raises(StreamBroken, match="cut") as cut:
        await read()
    assert not isinstance(cut.value, StreamTimeout)
    with pytest.raises(StreamTimeout):
        await read()


async def test_a_finish_reason_without_done_is_complete(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks("Fine.", done=False)))
    completion, _ = await read()
    assert json.dumps(completion["choices"][0]["message"]["content"]) == '"Fine."'
