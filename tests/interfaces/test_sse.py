"""POST /v1/summaries with Accept: text/event-stream: events, errors, cache, OpenAPI, a real SSE client.

The model is faked at the HTTP boundary with pytest-httpx's streamed responses, or is the simulated
model over loopback for the tests against a running server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from pytest_httpx import HTTPXMock, IteratorStream

from service.core.config import Settings
from service.interfaces.api import create_app
from service.pipeline.llm import LLMClient
from service.pipeline.segment import segment
from service.testing.sim_llm import SimConfig, SimServer
from tests.conftest import CHAT_URL, SSE_HEADERS, chat_completion, cited, sse_chunks
from tests.pipeline.test_summarize import seed_ids
from tests.process_helpers import serve_in_thread

STREAM = {"accept": "text/event-stream"}


def parse_events(body: str) -> list[tuple[str, Any]]:
    """(event, data as JSON) for each event of an SSE body."""
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def app_client(settings: Settings) -> tuple[httpx.AsyncClient, LLMClient]:
    llm = LLMClient(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(create_app(settings, llm=llm)), base_url="http://citesum.test"), llm


@pytest.fixture
def settings(llm_settings: Settings) -> Settings:
    return llm_settings.model_copy(update={"cache_enabled": False})


async def test_events_then_done_equal_the_json_answer(httpx_mock: HTTPXMock, settings: Settings, seed_text: str) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(
        ("Russia deployed forces near the border, 400km away.", [ids["400km"]]),
        ("Aleksandr Baunov said Putin had few good options.", [ids["Aleksandr Baunov"]]),
        ("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]),
    )
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply)))
    client, llm = await app_client(settings)
    async with client:
        plain = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"})
        streamed = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = parse_events(streamed.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "progress" and kinds[-1] == "done"
    assert kinds.count("sentence") == 3 and set(kinds) <= {"progress", "sentence", "dropped", "done"}
    done = events[-1][1]
    expected = plain.json()
    assert {k: v for k, v in done.items() if k != "timings_ms"} == {k: v for k, v in expected.items() if k != "timings_ms"}
    assert done["timings_ms"]["first_sentence_ms"] <= done["timings_ms"]["total_ms"]
    assert sorted(json.dumps(d, sort_keys=True) for k, d in events if k == "sentence") == sorted(
        json.dumps(s, sort_keys=True) for s in expected["summary"]
    )
    assert json.loads(httpx_mock.get_requests()[1].content)["stream"] is True


async def test_bad_input_is_a_plain_problem_and_a_model_down_an_error_event(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    for _ in range(settings.llm_max_attempts):
        httpx_mock.add_response(url=CHAT_URL, status_code=503, json={"error": {"message": "down"}})
    client, llm = await app_client(settings)
    async with client:
        bad = await client.post("/v1/summaries", json={"text": ""}, headers=STREAM)
        down = await client.post("/v1/summaries", json={"text": seed_text}, headers=STREAM)
    await llm.aclose()
    # nothing was sent yet: the plain problem+json answer with its status
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    # progress went out first, so the stream is open: the retries ran, then an error event ends it
    events = parse_events(down.text)
    assert [k for k, _ in events] == ["progress", "error"]
    assert events[-1][1]["status"] == 503 and "3 times" in events[-1][1]["detail"]
    assert len(httpx_mock.get_requests()) == settings.llm_max_attempts


async def test_a_stream_broken_after_a_sentence_ends_with_an_error_event(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(
        ("Aleksandr Baunov said Putin had few good options.", [ids["Aleksandr Baunov"]]),
        ("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]),
        ("A third sentence never arrives.", [ids["400km"]]),
    )
    chunks = sse_chunks(reply)
    cut = 1 + (reply.index("Putin made") + 3) // 4

    def broken() -> Iterator[bytes]:
        yield from chunks[:cut]
        raise httpx.ReadError("connection reset")

    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(broken()))
    client, llm = await app_client(settings)
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    events = parse_events(response.text)
    assert [k for k, _ in events][-1] == "error"
    assert [d["text"] for k, d in events if k == "sentence"] == ["Aleksandr Baunov said Putin had few good options."]
    problem = events[-1][1]
    assert problem["status"] == 503 and problem["type"] == "urn:citesum:problem:llm-unavailable"
    assert "not retried" in problem["detail"] and problem["request_id"]
    assert len(httpx_mock.get_requests()) == 1  # no silent restart


async def test_with_the_judge_on_a_sentence_outside_its_band_is_sent_at_once(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    """The judge (on by default with a model) only holds back sentences it may still overturn."""
    ids = await seed_ids(seed_text, settings)
    verbatim = next(s.text for s in segment(seed_text) if "400km" in s.text)  # scores 1.0, far outside the band
    reply = cited((verbatim, [ids["400km"]]), ("A second sentence never arrives.", [ids["400km"]]))
    chunks = sse_chunks(reply)
    cut = 1 + (reply.index("A second") + 3) // 4

    def broken() -> Iterator[bytes]:
        yield from chunks[:cut]
        raise httpx.ReadError("connection reset")

    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(broken()))
    client, llm = await app_client(settings.model_copy(update={"verify_judge_band": 0.15}))
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    events = parse_events(response.text)
    assert [d["text"] for k, d in events if k == "sentence"] == [verbatim] and events[-1][0] == "error"


async def test_with_the_judge_failing_the_held_sentences_go_out_with_their_embedded_verdicts(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(
        ("Two convoys of unmarked trucks were filmed 400km from the border.", [ids["400km"]]),
        ("Aleksandr Baunov said Putin had few good options.", [ids["Aleksandr Baunov"]]),
    )
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply)))
    for _ in range(settings.llm_reask_attempts + 1):  # the judge answers prose, twice
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion("Both sentences look fine to me."))
    client, llm = await app_client(settings.model_copy(update={"verify_judge_band": 0.5}))  # every sentence held
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    events = parse_events(response.text)
    assert [k for k, _ in events] == ["progress", "progress", "sentence", "sentence", "done"]
    done = events[-1][1]
    assert sorted(json.dumps(d, sort_keys=True) for k, d in events if k == "sentence") == sorted(
        json.dumps(s, sort_keys=True) for s in done["summary"]
    )
    assert not any((s["reason"] or "").startswith("judge:") for s in done["summary"])
    [note] = done["notes"]
    assert note.startswith("the LLM judge could not be used (the model's answer was not valid after 2 tries")
    assert note.endswith("; the embedded checker's verdicts stand")


async def test_a_server_refusing_stream_options_is_asked_again_without_them_and_usage_is_estimated(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]))
    refusal = {"error": {"message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error"}}
    httpx_mock.add_response(url=CHAT_URL, status_code=400, json=refusal)
    # The retry streams, but like llama-cpp-python's server sends no usage chunk.
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply, usage=False)))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply, usage=False)))
    client, llm = await app_client(settings)
    async with client:
        first = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
        again = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    events = parse_events(first.text)
    assert sorted(k for k, _ in events) == ["done", "progress", "progress", "sentence"]
    usage = events[-1][1]["usage"]
    bodies = [json.loads(r.content) for r in httpx_mock.get_requests()]
    # The offline estimate (chars / 4, rounded up; 4 more per message) of the prompt sent and of the reply.
    assert usage["tokens_estimated"] is True and usage["llm_calls"] == 1
    assert usage["prompt_tokens"] == sum(-(-len(m["content"]) // 4) + 4 for m in bodies[1]["messages"]) > 1000
    assert usage["completion_tokens"] == -(-len(reply) // 4)
    assert bodies[0]["stream_options"] == {"include_usage": True}
    assert bodies[1]["stream"] is True and "stream_options" not in bodies[1]
    assert "stream_options" not in bodies[2]  # remembered: once per client, not once per call
    assert parse_events(again.text)[-1][0] == "done"


async def test_a_server_refusing_stream_gets_a_plain_request(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]))
    for field in ("stream_options", "stream"):
        refusal = {"error": {"message": f"'{field}' is not supported by this server", "type": "invalid_request_error"}}
        httpx_mock.add_response(url=CHAT_URL, status_code=400, json=refusal)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply, prompt_tokens=700, completion_tokens=30))
    client, llm = await app_client(settings)
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    events = parse_events(response.text)
    assert sorted(k for k, _ in events) == ["done", "progress", "progress", "sentence"]
    assert events[-1][1]["usage"] == {
        "llm_calls": 1, "prompt_tokens": 700, "completion_tokens": 30, "retries": 0, "reasks": 0, "tokens_estimated": False
    }
    bodies = [json.loads(r.content) for r in httpx_mock.get_requests()]
    assert [("stream" in b, "stream_options" in b) for b in bodies] == [(True, True), (True, False), (False, False)]


async def test_a_silent_stretch_is_filled_with_keep_alive_pings(
    httpx_mock: HTTPXMock, settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, settings)
    reply = cited(("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]))

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.5)  # the model thinks; only the first progress event has gone out
        return httpx.Response(200, json=chat_completion(reply))

    httpx_mock.add_callback(slow, url=CHAT_URL)
    client, llm = await app_client(settings.model_copy(update={"sse_ping_s": 0.05}))
    async with client:
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    blocks = response.text.strip().split("\n\n")
    pings = [i for i, block in enumerate(blocks) if block == ": ping"]
    assert len(pings) >= 3 and pings == list(range(1, 1 + len(pings)))  # right after the first progress event
    events = parse_events("\n\n".join(b for b in blocks if b != ": ping"))
    assert sorted(k for k, _ in events) == ["done", "progress", "progress", "sentence"]


class SlowLookupCache:
    """A result cache whose lookup takes a while (a busy SQLite file, a far Redis) and finds nothing."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def get(self, key: str) -> dict[str, Any] | None:
        await asyncio.sleep(self.delay_s)
        return None

    async def set(self, key: str, value: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_pings_start_with_the_stream_before_the_first_event(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    reply = cited(("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply)))
    settings = llm_settings.model_copy(update={"sse_ping_s": 0.05})
    app = create_app(settings, llm=(llm := LLMClient(settings)))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        app.state.jobs.cache = SlowLookupCache(0.4)  # no event for 0.4 s: 8 ping intervals
        response = await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)
    await llm.aclose()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.strip().split("\n\n")
    pings = [i for i, block in enumerate(blocks) if block == ": ping"]
    assert len(pings) >= 3 and pings == list(range(len(pings)))  # from the stream's first bytes on
    events = parse_events("\n\n".join(b for b in blocks if b != ": ping"))
    assert sorted(k for k, _ in events) == ["done", "progress", "progress", "sentence"]


async def test_a_failure_after_a_silent_first_interval_is_an_error_event(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    settings = llm_settings.model_copy(update={"sse_ping_s": 0.05})
    app = create_app(settings, llm=(llm := LLMClient(settings)))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        app.state.jobs.cache = SlowLookupCache(0.2)
        response = await client.post("/v1/summaries", json={"text": "Too short."}, headers=STREAM)
    await llm.aclose()
    # the stream was open (its first ping) when the article was refused: the problem is an event
    assert response.status_code == 200 and response.text.startswith(": ping")
    events = parse_events("\n\n".join(b for b in response.text.strip().split("\n\n") if b != ": ping"))
    assert [k for k, _ in events] == ["error"] and events[0][1]["status"] == 422
    assert httpx_mock.get_requests() == []


async def test_a_cached_answer_streams_its_sentences_at_once(llm_settings: Settings, httpx_mock: HTTPXMock, seed_text: str) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    reply = cited(("Putin made two phone calls to Lukashenko.", [ids["two phone calls"]]))
    httpx_mock.add_response(url=CHAT_URL, headers=SSE_HEADERS, stream=IteratorStream(sse_chunks(reply)))
    app = create_app(llm_settings, llm=(llm := LLMClient(llm_settings)))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        first = parse_events((await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)).text)
        for _ in range(50):  # the answer is stored after the stream ended
            await asyncio.sleep(0.02)
            again = parse_events((await client.post("/v1/summaries", json={"text": seed_text, "policy": "flag"}, headers=STREAM)).text)
            if again[-1][1]["usage"]["llm_calls"] == 0:
                break
    await llm.aclose()
    assert [k for k, _ in again] == ["sentence", "done"]
    assert again[0][1] == next(d for k, d in first if k == "sentence")
    assert len(httpx_mock.get_requests()) == 1


async def test_openapi_describes_the_event_stream() -> None:
    app = create_app(Settings())
    responses = app.openapi()["paths"]["/v1/summaries"]["post"]["responses"]["200"]["content"]
    assert "application/json" in responses
    stream = responses["text/event-stream"]
    assert stream["itemSchema"]["properties"]["event"]["enum"] == ["progress", "sentence", "dropped", "done", "error"]


# ---------------------------------------------------------------------------------------------
# A running server, a real SSE client, the simulated model
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=4, base_ms=100, ms_per_output_token=8)) as server:
        yield server


@pytest.fixture
def served(sim: SimServer) -> Iterator[str]:
    settings = Settings(OPENAI_BASE_URL=sim.base_url, OPENAI_API_KEY="sim", cache_enabled=False)
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.mark.httpx_mock(should_mock=lambda request: False)
async def test_a_real_sse_client_sees_sentences_before_the_model_is_done(sim: SimServer, served: str, seed_text: str) -> None:
    arrivals: list[tuple[float, str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as client, aconnect_sse(
        client, "POST", f"{served}/v1/summaries", json={"text": seed_text}
    ) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            arrivals.append((time.time(), event.event, event.json()))
    kinds = [kind for _, kind, _ in arrivals]
    assert kinds[0] == "progress" and kinds[-1] == "done" and "sentence" in kinds
    [call] = sim.calls()
    first_sentence = next(at for at, kind, _ in arrivals if kind == "sentence")
    assert first_sentence < call["end"] - 0.2  # on screen while the model was still writing
    done = arrivals[-1][2]
    assert [d["text"] for _, k, d in arrivals if k == "sentence"] == [s["text"] for s in done["summary"]] or sorted(
        d["text"] for _, k, d in arrivals if k == "sentence"
    ) == sorted(s["text"] for s in done["summary"])


@pytest.mark.httpx_mock(should_mock=lambda request: False)
async def test_a_client_that_disconnects_cancels_the_model_call(sim: SimServer, served: str, seed_text: str) -> None:
    sim.configure(ms_per_output_token=50)  # a long stream: ~10 s to write
    async with httpx.AsyncClient(timeout=30) as client, aconnect_sse(
        client, "POST", f"{served}/v1/summaries", json={"text": seed_text}
    ) as source:
        events = source.aiter_sse()  # held, so that it is not finalized (closing the response) early
        assert (await anext(events)).event == "progress"
        deadline = time.monotonic() + 5
        while sim.state.arrivals == 0 and time.monotonic() < deadline:  # the model has started writing
            await asyncio.sleep(0.01)
        assert sim.state.arrivals == 1
    # the reader closed the page
    started = time.monotonic()
    while not sim.calls() and time.monotonic() - started < 5:
        await asyncio.sleep(0.02)
    [call] = sim.calls()
    assert call["stream_completed"] is False
    assert call["stream_tokens_sent"] < call["completion_tokens"] / 2
    assert time.monotonic() - started < 3
