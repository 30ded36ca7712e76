"""LLMClient at the HTTP boundary (pytest-httpx): retries, Retry-After, timeouts, re-asks, downgrades."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock, IteratorStream

from service.core.config import Settings
from service.core.errors import LLMBadOutput, LLMTimeout, LLMUnavailable
from service.pipeline.llm import InvalidOutput, LLMClient, on_request_sent, parse_json_reply, retry_after_seconds
from service.pipeline.streaming import SentenceStream
from tests.conftest import CHAT_URL, SSE_HEADERS, chat_completion, cited, sse_chunks

REAL_REPLIES = Path(__file__).resolve().parent / "real_replies"

SCHEMA = {"type": "object"}
MESSAGES = [{"role": "user", "content": "hi"}]


async def ask(settings: Settings, **kwargs: object):
    client = LLMClient(settings)
    try:
        return await client.complete_json(MESSAGES, schema_name="cited_summary", schema=SCHEMA, **kwargs)
    finally:
        await client.aclose()


async def test_success_parses_json_and_reports_usage(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"])), prompt_tokens=7, completion_tokens=3))
    result = await ask(llm_settings)
    assert result.data == {"sentences": [{"text": "A.", "citations": ["s1"]}]}
    assert (result.prompt_tokens, result.completion_tokens, result.attempts, result.reasks) == (7, 3, 1, 0)
    sent = json.loads(httpx_mock.get_requests()[0].content)
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "cited_summary"
    assert httpx_mock.get_requests()[0].headers["authorization"] == "Bearer sk-test"


async def test_429_with_retry_after_then_success(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    settings = llm_settings.model_copy(update={"llm_backoff_max_s": 1.0})
    httpx_mock.add_response(url=CHAT_URL, status_code=429, headers={"Retry-After": "0.3"}, json={"error": {"message": "slow down"}})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    started = time.monotonic()
    result = await ask(settings)
    assert result.attempts == 2
    assert time.monotonic() - started >= 0.29  # the server's Retry-After was honoured


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_exhausted_raises_unavailable_with_attempts(httpx_mock: HTTPXMock, llm_settings: Settings, status: int) -> None:
    for _ in range(llm_settings.llm_max_attempts):
        httpx_mock.add_response(url=CHAT_URL, status_code=status, json={"error": {"message": "boom"}})
    with pytest.raises(LLMUnavailable) as caught:
        await ask(llm_settings)
    assert caught.value.attempts == llm_settings.llm_max_attempts == len(httpx_mock.get_requests())
    assert caught.value.status == 503


async def test_timeout_is_retried_then_raises_llm_timeout(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    for _ in range(llm_settings.llm_max_attempts):
        httpx_mock.add_exception(httpx.ReadTimeout("too slow"), url=CHAT_URL)
    with pytest.raises(LLMTimeout) as caught:
        await ask(llm_settings)
    assert caught.value.attempts == llm_settings.llm_max_attempts and caught.value.status == 504


async def test_connection_error_then_success(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=CHAT_URL)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    assert (await ask(llm_settings)).attempts == 2


async def test_400_is_not_retried(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, status_code=400, json={"error": {"message": "model not found"}})
    with pytest.raises(LLMBadOutput, match="model not found"):
        await ask(llm_settings)
    assert len(httpx_mock.get_requests()) == 1


async def test_malformed_json_gets_one_reask_with_the_error(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion('{"sentences": [ {"text": "A."'))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    result = await ask(llm_settings)
    assert result.reasks == 1 and result.prompt_tokens == 240
    second = json.loads(httpx_mock.get_requests()[1].content)["messages"]
    assert second[-1]["role"] == "user" and "not JSON" in second[-1]["content"]


async def test_still_malformed_after_reasks_raises_bad_output(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    for _ in range(llm_settings.llm_reask_attempts + 1):
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion("I cannot do that."))
    with pytest.raises(LLMBadOutput, match="not valid after 2 tries"):
        await ask(llm_settings)


async def test_validation_failure_is_reasked(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    def validate(data: dict) -> None:
        if "sentences" not in data:
            raise InvalidOutput('"sentences" missing')

    httpx_mock.add_response(url=CHAT_URL, json=chat_completion('{"summary": "x"}'))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    assert (await ask(llm_settings, validate=validate)).reasks == 1


async def test_the_request_body_is_the_chat_completions_body(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    await ask(llm_settings)
    [request] = httpx_mock.get_requests()
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent == {
        "model": llm_settings.model,
        "messages": MESSAGES,
        "temperature": llm_settings.temperature,
        "max_tokens": llm_settings.completion_max_tokens,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "cited_summary", "schema": SCHEMA, "strict": True},
        },
    }


@pytest.mark.parametrize(
    "completion",
    [
        {"choices": [], "usage": {"prompt_tokens": 5}},
        {"choices": [{"message": {"role": "assistant", "content": None}}]},
        {"choices": [{"message": {"role": "assistant", "content": ["not", "text"]}}], "usage": None},
        ["not", "an", "object"],
    ],
)
async def test_a_completion_without_usable_content_is_reasked(
    httpx_mock: HTTPXMock, llm_settings: Settings, completion: object
) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=completion)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"])), prompt_tokens=7, completion_tokens=3))
    result = await ask(llm_settings)
    assert result.reasks == 1 and result.data["sentences"][0]["text"] == "A."
    reported = (completion.get("usage") or {}).get("prompt_tokens", 0) if isinstance(completion, dict) else 0
    # A reply without usage counts the offline estimate of its prompt (chars / 4 + 4 a message), and says so.
    estimate = sum(-(-len(m["content"]) // 4) + 4 for m in MESSAGES)
    assert (result.prompt_tokens, result.completion_tokens) == (7 + (reported or estimate), 3)
    assert result.tokens_estimated is not bool(reported)


async def test_server_without_json_schema_falls_back(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, status_code=400, json={"error": {"message": "response_format json_schema is not supported"}})
    httpx_mock.add_response(url=CHAT_URL, status_code=400, json={"error": {"message": "response_format.schema: extra fields not permitted"}})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    client = LLMClient(llm_settings)
    result = await client.complete_json(MESSAGES, schema_name="x", schema=SCHEMA)
    await client.aclose()
    assert result.attempts == 1 and client.structured_output == "json_object"
    formats = [json.loads(r.content)["response_format"] for r in httpx_mock.get_requests()]
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
    assert formats[1] == {"type": "json_object", "schema": SCHEMA} and formats[2] == {"type": "json_object"}


async def test_llama_cpp_server_refusing_json_schema_with_a_500_steps_down_without_retries(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    # The real reply of llama-cpp-python 0.3.36's server to response_format json_schema: HTTP 500.
    # Before, it was retried as a server fault (4 calls) and the summary failed with 503.
    refusal = json.loads((REAL_REPLIES / "llama_cpp_500_json_schema_refused.json").read_text(encoding="utf-8"))
    httpx_mock.add_response(url=CHAT_URL, status_code=500, json=refusal)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    client = LLMClient(llm_settings)
    result = await client.complete_json(MESSAGES, schema_name="x", schema=SCHEMA)
    await client.aclose()
    assert result.attempts == 1 and client.retries == 0 and client.structured_output == "json_object_schema"
    second = json.loads(httpx_mock.get_requests()[1].content)["response_format"]
    assert second == {"type": "json_object", "schema": SCHEMA}  # what llama.cpp turns into a grammar


async def test_a_500_that_does_not_name_the_response_format_is_still_retried(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    httpx_mock.add_response(url=CHAT_URL, status_code=500, json={"error": {"message": "out of memory"}})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("A.", ["s1"]))))
    client = LLMClient(llm_settings)
    result = await client.complete_json(MESSAGES, schema_name="x", schema=SCHEMA)
    await client.aclose()
    assert result.attempts == 2 and client.structured_output == "json_schema"


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"a": 1}', {"a": 1}), ('```json\n{"a": 1}\n```', {"a": 1}), ('Here you go: {"a": 1} hope it helps', {"a": 1})],
)
def test_parse_json_reply_tolerates_fences_and_prose(content: str, expected: dict) -> None:
    assert parse_json_reply(content, None) == expected


@pytest.mark.parametrize("content", [None, "", "[1, 2]", "no json here"])
def test_parse_json_reply_refuses_non_objects(content: str | None) -> None:
    with pytest.raises(InvalidOutput):
        parse_json_reply(content, None)


@pytest.mark.parametrize(("headers", "seconds"), [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "150"}, 0.15), ({}, None)])
def test_retry_after_seconds(headers: dict, seconds: float | None) -> None:
    class Failure(Exception):
        response = httpx.Response(429, headers=headers)

    assert retry_after_seconds(Failure()) == seconds


@pytest.mark.httpx_mock(should_mock=lambda request: request.url.host != "127.0.0.1")
async def test_on_request_sent_reports_once_when_the_body_is_on_the_wire() -> None:
    """summarize.py starts its CPU-bound index on this report, not before: the send must not wait for it."""
    from service.testing.sim_llm import SimConfig, SimServer

    with SimServer(SimConfig(base_ms=300, ms_per_1k=0)) as sim:
        client = LLMClient(Settings(openai_base_url=sim.base_url, openai_api_key="sim"))
        started = time.perf_counter()
        reports: list[float] = []
        token = on_request_sent.set(lambda: reports.append(time.perf_counter() - started))
        try:
            await client.complete_json(
                [{"role": "user", "content": "Source sentences:\n[s1] The council met on Tuesday.\n"}],
                schema_name="cited_summary",
                schema=SCHEMA,
            )
        finally:
            on_request_sent.reset(token)
            await client.aclose()
        answered = time.perf_counter() - started
    assert len(reports) == 1
    assert reports[0] < answered - 0.25  # reported when sent, not when the 300 ms answer came back


async def test_no_report_without_a_caller_asking(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("Fine.", ["s1"]))))
    assert on_request_sent.get() is None
    result = await ask(llm_settings)
    assert result.data["sentences"][0]["text"] == "Fine."
    assert "trace" not in httpx_mock.get_requests()[0].extensions


# ---------------------------------------------------------------------------------------------
# Streamed replies (issue 15): retried until a sentence was handed on, never after
# ---------------------------------------------------------------------------------------------

THREE = cited(("First one.", ["s1"]), ("Second one.", ["s2"]), ("Third one.", ["s3"]))


def cut_after(chunks: list[bytes], count: int, exc: Exception):
    yield from chunks[:count]
    raise exc


def chars_until_handed_on(content: str, sentences: int) -> int:
    """Chunks (4 characters each, after the role chunk) needed before `sentences` were handed on."""
    position = 0
    for _ in range(sentences + 1):
        position = content.index('{"text"', position) + 1
    return 1 + (position + 3) // 4


async def test_a_streamed_reply_feeds_the_sink_and_asks_for_usage(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(THREE, prompt_tokens=9, completion_tokens=5)))
    items: list[dict] = []
    result = await ask(llm_settings, sink=SentenceStream(items.append))
    body = json.loads(httpx_mock.get_requests()[0].content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert [i["text"] for i in items] == ["First one.", "Second one."]
    assert result.data == json.loads(THREE)
    assert (result.prompt_tokens, result.completion_tokens, result.attempts) == (9, 5, 1)


async def test_a_stream_cut_before_any_sentence_is_retried(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    early = chars_until_handed_on(THREE, 1) - 2
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(cut_after(sse_chunks(THREE), early, httpx.ReadError("reset"))))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(THREE)))
    items: list[dict] = []
    result = await ask(llm_settings, sink=SentenceStream(items.append))
    assert result.attempts == 2 and len(httpx_mock.get_requests()) == 2
    assert [i["text"] for i in items] == ["First one.", "Second one."]  # once each


@pytest.mark.parametrize(
    ("exc", "error"), [(httpx.ReadError("reset"), LLMUnavailable), (httpx.ReadTimeout("stalled"), LLMTimeout)]
)
async def test_a_stream_broken_after_a_sentence_is_not_retried(
    httpx_mock: HTTPXMock, llm_settings: Settings, exc: Exception, error: type
) -> None:
    late = chars_until_handed_on(THREE, 1) + 1
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(cut_after(sse_chunks(THREE), late, exc)))
    items: list[dict] = []
    with pytest.raises(error, match="not retried"):
        await ask(llm_settings, sink=SentenceStream(items.append))
    assert len(httpx_mock.get_requests()) == 1
    assert [i["text"] for i in items] == ["First one."]


async def test_an_invalid_streamed_reply_after_a_sentence_is_not_reasked(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    broken = THREE[: THREE.index("Third")]  # valid objects, then the reply stops (finish_reason length)
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(broken, finish_reason="length")))
    items: list[dict] = []
    with pytest.raises(LLMBadOutput, match="after sentences were sent"):
        await ask(llm_settings, sink=SentenceStream(items.append), validate=lambda data: None)
    assert len(httpx_mock.get_requests()) == 1 and len(items) == 2


async def test_an_invalid_streamed_reply_before_any_sentence_is_reasked(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks("I cannot do that.")))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(THREE)))
    items: list[dict] = []
    result = await ask(llm_settings, sink=SentenceStream(items.append))
    assert result.reasks == 1 and len(items) == 2


async def test_a_model_that_ignores_the_json_format_is_told_what_to_try(
    httpx_mock: HTTPXMock, llm_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    prose = "Sure! Here is a summary of the article. " * 40  # ~1,600 characters, no JSON at all
    for _ in range(llm_settings.llm_reask_attempts + 1):
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion(prose))
    with caplog.at_level("WARNING", logger="service.pipeline.llm"), pytest.raises(LLMBadOutput) as caught:
        await ask(llm_settings)
    message = caught.value.message
    assert "not JSON" in message
    # What to try: the structured-output mode it was asked in and the other one, another model, the embedded summarizer.
    assert "CITESUM_STRUCTURED_OUTPUT" in message and "json_schema" in message
    assert "CITESUM_MODEL" in message and "CITESUM_PROVIDER=embedded" in message
    # The start of the offending reply is logged at warning, truncated.
    invalid = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "reply began" in r.getMessage()]
    assert invalid and all("Sure! Here is a summary" in line for line in invalid)
    assert all(len(line) < 500 for line in invalid)


async def test_a_model_server_that_cannot_be_reached_is_503_with_retry_after(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    for _ in range(llm_settings.llm_max_attempts):
        httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=CHAT_URL)
    with pytest.raises(LLMUnavailable) as caught:
        await ask(llm_settings)
    assert caught.value.status == 503 and caught.value.retry_after == llm_settings.llm_backoff_max_s


async def test_probe_says_whether_the_model_server_answers(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    models_url = CHAT_URL.replace("/chat/completions", "/models")
    httpx_mock.add_response(url=models_url, json={"object": "list", "data": []})
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=models_url)
    client = LLMClient(llm_settings)
    try:
        assert await client.probe() == "ok"
        assert (await client.probe()).startswith("error: unreachable")
        for _ in range(llm_settings.breaker_failure_threshold):  # the breaker opens: no request is made
            client.breaker.failures += 1
        client.breaker.opened_at, client.breaker.state = time.monotonic(), "open"
        assert (await client.probe()).startswith("error: circuit breaker open")
    finally:
        await client.aclose()
    assert len(httpx_mock.get_requests()) == 2


async def test_a_plain_text_answer_is_asked_without_a_response_format_and_re_asked_with_its_own_hint(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    from service.pipeline.cited_line import ASK_AGAIN, parse_cited_line

    assert llm_settings.structured_output == "json_schema"  # what a JSON call would send
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion("[s3]"))  # ids, but no sentence
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion("Putin met Lukashenko. [s3]"))
    client = LLMClient(llm_settings)
    try:
        result = await client.complete(MESSAGES, parse=parse_cited_line, again=ASK_AGAIN)
    finally:
        await client.aclose()
    assert result.data == {"sentences": [{"text": "Putin met Lukashenko.", "citations": ["s3"]}]}
    assert result.reasks == 1
    first, second = (json.loads(r.content) for r in httpx_mock.get_requests())
    assert "response_format" not in first and "response_format" not in second
    hint = second["messages"][-1]["content"]
    assert "square brackets" in hint and ASK_AGAIN in hint and "JSON" not in hint


async def test_a_plain_text_answer_that_stays_wrong_says_what_to_try_without_json_modes(
    httpx_mock: HTTPXMock, llm_settings: Settings
) -> None:
    from service.pipeline.cited_line import ASK_AGAIN, parse_cited_line

    for _ in range(llm_settings.llm_reask_attempts + 1):
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion("[s1, s2]"))
    client = LLMClient(llm_settings)
    try:
        with pytest.raises(LLMBadOutput, match="CITESUM_MODEL") as caught:
            await client.complete(MESSAGES, parse=parse_cited_line, again=ASK_AGAIN)
    finally:
        await client.aclose()
    assert "CITESUM_STRUCTURED_OUTPUT" not in str(caught.value)
