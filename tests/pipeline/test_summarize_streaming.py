"""Streamed summaries (summarize_request with events) against the simulated model over real HTTP.

The streamed response equals the plain one; sentences are verified and reported while the model is
still writing; map-combine streams the combine call; faults and the deadline behave as documented.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from service.core.config import Settings
from service.core.errors import LLMTimeout, LLMUnavailable
from service.core.schema import SummaryRequest, SummaryResponse
from service.pipeline.llm import LLMClient
from service.pipeline.streaming import StreamEvent
from service.pipeline.summarize import summarize_request
from service.testing.sim_llm import SimConfig, SimServer
from tests.pipeline.test_summarize import long_article

pytestmark = pytest.mark.httpx_mock(should_mock=lambda request: request.url.host != "127.0.0.1")


@pytest.fixture(scope="module")
def sim():
    with SimServer(SimConfig(seed=3)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_sim(sim: SimServer):
    sim.configure(base_ms=0, ms_per_1k=0, ms_per_output_token=0, fault_rate=0.0, transport_rates={})
    sim.reset()


def sim_settings(sim: SimServer, **changes: Any) -> Settings:
    return Settings(
        OPENAI_BASE_URL=sim.base_url,
        OPENAI_API_KEY="sim",
        llm_backoff_initial_s=0.0,
        llm_backoff_max_s=0.01,
        **changes,
    )


async def summarize(
    settings: Settings, text: str, *, stream: bool, llm: bool = True, **request: Any
) -> tuple[SummaryResponse, list[tuple[float, StreamEvent]]]:
    events: list[tuple[float, StreamEvent]] = []
    client = LLMClient(settings) if llm else None
    try:
        response = await summarize_request(
            SummaryRequest(text=text, **request),
            settings=settings,
            llm=client,
            events=(lambda event: events.append((time.time(), event))) if stream else None,
        )
    finally:
        if client is not None:
            await client.aclose()
    return response, events


def comparable(response: SummaryResponse) -> dict[str, Any]:
    return response.model_dump(mode="json", exclude={"timings_ms"})


def announced(events: list[tuple[float, StreamEvent]], kind: str) -> list[dict[str, Any]]:
    return [event.data for _, event in events if event.kind == kind]


@pytest.mark.parametrize("policy", ["drop", "flag", "repair"])
async def test_the_streamed_response_equals_the_plain_one(sim: SimServer, seed_text: str, policy: str) -> None:
    sim.configure(fault_rate=0.4)  # some sentences fail verification: dropped, flagged or repaired
    settings = sim_settings(sim)
    plain, none = await summarize(settings, seed_text, stream=False, policy=policy)
    streamed, events = await summarize(settings, seed_text, stream=True, policy=policy)
    assert none == []
    assert comparable(streamed) == comparable(plain)
    assert plain.dropped or any(s.verdict != "supported" for s in plain.summary) or plain.usage.llm_calls > 1
    # every sentence of the answer was announced once, with the verdict and citations it ends with
    assert sorted(announced(events, "sentence"), key=str) == sorted(
        (s.model_dump(mode="json") for s in streamed.summary), key=str
    )
    assert sorted(announced(events, "dropped"), key=str) == sorted(
        (d.model_dump(mode="json") for d in streamed.dropped), key=str
    )
    if policy != "repair":
        assert sim.calls()[-1]["stream"] is True


async def test_sentences_are_verified_and_announced_while_the_model_writes(sim: SimServer, seed_text: str) -> None:
    sim.configure(base_ms=50, ms_per_output_token=4)
    _, events = await summarize(sim_settings(sim), seed_text, stream=True)
    [call] = sim.calls()
    sentences = [(at, e) for at, e in events if e.kind == "sentence"]
    assert len(sentences) >= 3
    assert sentences[0][0] < call["end"] - 0.2  # well before the model's last token
    assert sentences[0][1].data["verdict"] == "supported" and sentences[0][1].data["citations"]


async def test_map_combine_streams_the_combine_call_and_reports_progress(sim: SimServer) -> None:
    settings = sim_settings(sim, chunk_tokens=400)
    text = long_article()
    plain, _ = await summarize(settings, text, stream=False)
    sim.reset()
    streamed, events = await summarize(settings, text, stream=True)
    assert comparable(streamed) == comparable(plain)
    assert streamed.chunks > 2
    calls = sim.calls()
    assert [bool(c.get("stream")) for c in calls] == [False] * streamed.chunks + [True]
    assert announced(events, "sentence")


async def test_the_embedded_default_announces_every_sentence_at_once(seed_text: str) -> None:
    settings = Settings()
    plain, _ = await summarize(settings, seed_text, stream=False, llm=False)
    streamed, events = await summarize(settings, seed_text, stream=True, llm=False)
    assert comparable(streamed) == comparable(plain)
    assert {e.data["text"] for _, e in events} == {s.text for s in plain.summary}


async def test_a_stream_cut_after_sentences_were_announced_ends_in_an_error(sim: SimServer, seed_text: str) -> None:
    sim.configure(transport_rates={"stream_cut": 1.0}, stream_fault_at=0.8)
    events: list[StreamEvent] = []
    client = LLMClient(sim_settings(sim))
    with pytest.raises(LLMUnavailable, match="not retried"):
        await summarize_request(
            SummaryRequest(text=seed_text), settings=client.settings, llm=client, events=events.append
        )
    await client.aclose()
    assert len(sim.calls()) == 1  # no silent restart
    assert [e.kind for e in events if e.kind == "sentence"]


async def test_a_stream_cut_before_any_sentence_is_retried(sim: SimServer, seed_text: str) -> None:
    sim.configure(transport_rates={"stream_cut": 0.5}, stream_fault_at=0.02)
    for attempt in range(8):  # the simulator draws each attempt afresh: find a request that is cut, then not
        text = f"{seed_text}\n\nRef {attempt}."
        sim.reset()
        response, events = await summarize(sim_settings(sim), text, stream=True)
        faults = [c["transport_fault"] for c in sim.calls()]
        if faults[0] == "stream_cut":
            break
    assert faults[0] == "stream_cut" and faults[-1] is None and response.usage.retries == len(faults) - 1
    texts = [e.data["text"] for _, e in events if e.kind == "sentence"]
    assert len(texts) == len(set(texts)) == len(response.summary)


async def test_the_deadline_holds_when_the_stream_stalls(sim: SimServer, seed_text: str) -> None:
    sim.configure(transport_rates={"stream_stall": 1.0}, hang_s=5, stream_fault_at=0.5)
    started = time.monotonic()
    with pytest.raises(LLMTimeout, match="deadline"):
        await summarize(sim_settings(sim, request_deadline_s=1.0), seed_text, stream=True)
    assert time.monotonic() - started < 3
    await asyncio.sleep(0)


# An article past CITESUM_PARALLEL_WRITE_TOKENS (lowered here) is written in parallel parts.
PARTS = {"parallel_write_tokens": 300}


async def test_a_long_article_is_written_in_parallel_parts_streamed_in_article_order(sim: SimServer) -> None:
    text = long_article()
    plain, _ = await summarize(sim_settings(sim, **PARTS), text, stream=False)
    sim.reset()
    sim.configure(base_ms=40, ms_per_output_token=3)
    streamed, events = await summarize(sim_settings(sim, **PARTS), text, stream=True)
    calls = sim.calls()
    assert comparable(streamed) == comparable(plain)
    parts = len(calls)  # one per sentence the extractive ranker picked (3 on this repetitive article)
    assert streamed.prompt_version == "summarize_part/v2" and streamed.chunks == parts >= 3
    assert streamed.usage.llm_calls == parts and all(c["stream"] for c in calls)
    assert all(c["kind"] == "cited_line" for c in calls)  # each part answered `sentence [ids]`, not JSON
    # One sentence per part, each citing ids of the whole article, read out in article order.
    starts = [s.citations[0].start for s in streamed.summary]
    assert len(streamed.summary) == parts and starts == sorted(starts)
    assert announced(events, "sentence") == [s.model_dump(mode="json") for s in streamed.summary]
    for sentence in streamed.summary:
        for citation in sentence.citations:
            assert streamed.document.text[citation.start : citation.end] == citation.quote
    assert max(c["start"] for c in calls) < min(c["end"] for c in calls)  # the calls run at once


async def test_the_first_part_reads_out_while_the_others_are_written(sim: SimServer) -> None:
    sim.configure(base_ms=30, ms_per_1k=400, ms_per_output_token=2)  # a big part takes long to read
    _, events = await summarize(sim_settings(sim, **PARTS), long_article(), stream=True)
    calls = sim.calls()
    first = next(at for at, e in events if e.kind == "sentence")
    assert len(calls) >= 3 and first < max(c["end"] for c in calls) - 0.1


async def test_a_short_article_is_still_written_in_one_call(sim: SimServer, seed_text: str) -> None:
    response, _ = await summarize(sim_settings(sim), seed_text, stream=True)
    assert len(sim.calls()) == 1 and response.prompt_version == "summarize/v2"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("split", [PARTS, {"chunk_tokens": 400}], ids=["parts", "map"])
async def test_a_parallel_call_that_fails_fails_the_summary_with_its_own_error(
    sim: SimServer, stream: bool, split: dict[str, int]
) -> None:
    sim.configure(transport_rates={"500": 1.0})
    # The error itself, not an ExceptionGroup (which the map calls' TaskGroup raised): it maps to its status.
    with pytest.raises(LLMUnavailable):
        await summarize(sim_settings(sim, llm_max_attempts=2, **split), long_article(), stream=stream)


async def test_progress_counts_the_parts_written(sim: SimServer) -> None:
    progress: list[tuple[int, int]] = []
    client = LLMClient(sim_settings(sim, **PARTS))
    try:
        response = await summarize_request(
            SummaryRequest(text=long_article()), settings=client.settings, llm=client,
            progress=lambda done, total: progress.append((done, total)),
        )  # fmt: skip
    finally:
        await client.aclose()
    parts = response.chunks
    assert parts == len(sim.calls()) > 1
    assert progress == [(done, parts) for done in range(parts + 1)]
