"""The simulated OpenAI-compatible server: shape, usage, latency floor, seeded faults, the openai client."""

from __future__ import annotations

import json
import random
import re
import time

import httpx
import openai
import pytest

from service.testing.sim_llm import (
    LATENCY_PROFILES,
    STREAM_FAULTS,
    TRANSPORT_FAULTS,
    SimConfig,
    SimProcess,
    SimServer,
    SourceLine,
    estimate_tokens,
    inject_fault,
    parse_prompt,
    write_summary,
)

# pytest-httpx, when active, must let the real loopback server through.
pytestmark = pytest.mark.httpx_mock(should_mock=lambda request: request.url.host != "127.0.0.1")

ARTICLE = [
    "The city council voted 7 to 2 on Tuesday to build a new bridge over the Elm River.",
    "Mayor Ana Torres said the bridge would cost 40 million dollars and open in 2027.",
    "Critics including councillor Mark Levin said the project was not needed.",
    "Construction firm Baxter Steel won the contract after a two-year tender.",
    "The old bridge, built in 1931, carries 12,000 cars a day.",
    "Residents will be able to comment on the design until March.",
    "Photos: the river at dawn.",
]


def structured_messages(lines: list[str], max_sentences: int = 3) -> list[dict[str, str]]:
    """A prompt in citesum's wire format."""
    body = "\n".join(f"[s{i}] {text}" for i, text in enumerate(lines, start=1))
    return [
        {"role": "system", "content": "You write short, faithful news summaries. Answer with JSON only."},
        {
            "role": "user",
            "content": f"Write at most {max_sentences} sentences summarizing this article.\n"
            f"Source sentences, one per line, each with its id:\n{body}",
        },
    ]


_HTTP = httpx.Client()  # one client: building an SSL context per call costs ~100 ms


def post(sim: SimServer, messages: list[dict[str, str]], timeout: float = 10.0) -> httpx.Response:
    return _HTTP.post(f"{sim.base_url}/chat/completions", json={"model": "m", "messages": messages}, timeout=timeout)


@pytest.fixture
def sim():
    with SimServer(SimConfig(seed=7)) as server:
        yield server


def test_parse_prompt_reads_lines_ids_and_limit():
    messages = structured_messages(ARTICLE, max_sentences=4)
    messages[1]["content"] += "\n[s3, s7] a combined partial line"
    parsed = parse_prompt(messages)
    assert parsed.max_sentences == 4
    assert parsed.lines[0] == SourceLine(("s1",), ARTICLE[0])
    assert parsed.lines[-1] == SourceLine(("s3", "s7"), "a combined partial line")


def test_parse_prompt_reads_a_limit_of_one_sentence():
    messages = structured_messages(ARTICLE)
    messages[1]["content"] = messages[1]["content"].replace("Write at most 3 sentences", "Write at most 1 sentence")
    assert parse_prompt(messages).max_sentences == 1
    assert len(write_summary(list(parse_prompt(messages).lines), 1)) == 1


def test_summary_quotes_and_cites_central_lines_without_noise():
    lines = [SourceLine((f"s{i}",), text) for i, text in enumerate(ARTICLE, start=1)]
    sentences = write_summary(lines, 3)
    assert 1 <= len(sentences) <= 3
    by_id = {line.ids[0]: line.text for line in lines}
    for sentence in sentences:
        assert 1 <= len(sentence["citations"]) <= 3
        evidence = " ".join(by_id[i] for i in sentence["citations"])
        words = set(re.findall(r"\w+", sentence["text"].lower()))
        assert words <= set(re.findall(r"\w+", evidence.lower())), sentence
        assert "s7" not in sentence["citations"]  # "Photos: the river at dawn." is furniture


async def test_openai_client_gets_a_chat_completion_with_usage(sim):
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    messages = structured_messages(ARTICLE)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        response_format={"type": "json_schema", "json_schema": {"name": "cited_summary", "schema": {}}},
    )
    await client.close()
    content = json.loads(completion.choices[0].message.content)
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    assert content["sentences"]
    for sentence in content["sentences"]:
        assert set(sentence) == {"text", "citations"}
        assert all(re.fullmatch(r"s[1-7]", c) for c in sentence["citations"])
    expected_prompt = sum(estimate_tokens(m["content"]) for m in messages)
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.usage.completion_tokens == estimate_tokens(completion.choices[0].message.content)
    [call] = sim.calls()
    assert call["kind"] == "structured"
    assert call["prompt_tokens"] == expected_prompt
    assert call["end"] >= call["start"]
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim") as models_client:
        models = await models_client.models.list()
    assert [m.id for m in models.data] == ["sim-llm"]


def test_a_prompt_asking_for_a_cited_line_gets_one_not_json(sim):
    from service.pipeline.cited_line import parse_cited_line
    from service.pipeline.prompts import load_prompt

    system = load_prompt("summarize_part").render(
        title=None, max_sentences=1, sentences=[(f"s{i}", t) for i, t in enumerate(ARTICLE, 1)], part=1, parts=2
    )[0]
    messages = [system, structured_messages(ARTICLE, max_sentences=1)[1]]
    content = post(sim, messages).json()["choices"][0]["message"]["content"]
    assert re.fullmatch(r"[^\[\]{}]+ \[s\d+(, s\d+)*\]", content), content
    [call] = sim.calls()
    assert call["kind"] == "cited_line"
    [sentence] = call["sentences"]
    assert parse_cited_line(content) == {"sentences": [{"text": sentence["text"], "citations": sentence["citations"]}]}


def test_plain_prompt_gets_a_plain_text_summary(sim):
    prompt = 'Write a concise summary of the following:\n\n\n"' + " ".join(ARTICLE) + '"\n\n\nCONCISE SUMMARY:'
    response = post(sim, [{"role": "user", "content": prompt}])
    content = response.json()["choices"][0]["message"]["content"]
    assert "CONCISE SUMMARY" not in content
    assert content.startswith("The city council voted")
    assert sim.calls()[0]["kind"] == "plain"


def test_latency_is_at_least_base_plus_per_token(sim):
    sim.configure(base_ms=120, ms_per_1k=200)
    messages = structured_messages(ARTICLE * 40)  # ~3,000 prompt tokens
    started = time.perf_counter()
    response = post(sim, messages)
    elapsed = time.perf_counter() - started
    prompt_tokens = response.json()["usage"]["prompt_tokens"]
    floor = (120 + 200 * prompt_tokens / 1000) / 1000
    assert prompt_tokens > 2_000
    assert elapsed >= floor
    call = sim.calls()[0]
    assert call["end"] - call["start"] >= floor


def test_same_seed_same_answer_and_faults():
    messages = structured_messages(ARTICLE, 5)
    answers = []
    for _ in range(2):
        with SimServer(SimConfig(seed=3, fault_rate=0.5)) as server:
            answers.append(post(server, messages).json()["choices"][0]["message"]["content"])
    assert answers[0] == answers[1]


def _article_variant(rng: random.Random) -> list[str]:
    """ARTICLE with shuffled lines, so every prompt is distinct."""
    lines = ARTICLE[:6]
    rng.shuffle(lines)
    return lines


def test_content_faults_occur_at_the_configured_rate_and_are_logged():
    rng = random.Random(0)
    with SimServer(SimConfig(seed=11, fault_rate=0.3)) as server:
        for _ in range(60):
            post(server, structured_messages(_article_variant(rng), 5))
        calls = server.calls()
    sentences = [s for call in calls for s in call["sentences"]]
    faulted = [s for s in sentences if s["fault"]]
    assert len(sentences) >= 150
    assert 0.2 <= len(faulted) / len(sentences) <= 0.4
    assert {s["fault"] for s in faulted} == {"number", "name", "negation", "citation"}
    for s in faulted:
        assert (s["text"], s["citations"]) != (s["original"], s["original_citations"])


@pytest.mark.parametrize(
    ("kind", "text", "check"),
    [
        (
            "number",
            "The old bridge, built in 1931, carries 12,000 cars a day.",
            lambda new: "1931" not in new or "12,000" not in new,
        ),
        (
            "name",
            "Mayor Ana Torres said the bridge would cost 40 million dollars and open in 2027.",
            lambda new: "Ana" not in new or "Torres" not in new,
        ),
        (
            "negation",
            "Critics including councillor Mark Levin said the project was not needed.",
            lambda new: "was needed" in new,
        ),
        (
            "negation",
            "Residents will be able to comment on the design until March.",
            lambda new: "will not be able" in new,
        ),
    ],
)
def test_inject_fault_changes_the_fact(kind, text, check):
    lines = [SourceLine((f"s{i}",), t) for i, t in enumerate(ARTICLE, start=1)]
    cited = next(line.ids[0] for line in lines if line.text == text)
    faulted = inject_fault({"text": text, "citations": [cited]}, kind, lines, random.Random(1))
    assert faulted is not None
    assert faulted["fault"] == kind and faulted["original"] == text
    assert check(faulted["text"]), faulted
    assert faulted["text"] not in " ".join(ARTICLE)


def test_inject_wrong_citation_points_at_an_unrelated_line():
    lines = [SourceLine((f"s{i}",), t) for i, t in enumerate(ARTICLE, start=1)]
    sentence = {"text": ARTICLE[4], "citations": ["s5"]}
    faulted = inject_fault(sentence, "citation", lines, random.Random(1))
    assert faulted["text"] == ARTICLE[4]
    assert faulted["citations"] != ["s5"]


def test_no_room_for_a_number_fault_returns_none():
    lines = [SourceLine(("s1",), "No numbers here at all, said the mayor.")]
    assert inject_fault({"text": lines[0].text, "citations": ["s1"]}, "number", lines, random.Random(0)) is None


@pytest.mark.parametrize("kind", ["429_retry_after", "429", "500", "503"])
def test_error_status_faults(sim, kind):
    sim.configure(transport_rates={kind: 1.0}, retry_after_s=2)
    response = post(sim, structured_messages(ARTICLE))
    assert response.status_code == int(kind[:3])
    assert response.json()["error"]["message"]
    assert response.headers.get("retry-after") == ("2" if kind == "429_retry_after" else None)
    assert sim.calls()[0]["transport_fault"] == kind


def test_hang_outlasts_the_client_timeout(sim):
    sim.configure(transport_rates={"hang": 1.0}, hang_s=3)
    with pytest.raises(httpx.ReadTimeout):
        post(sim, structured_messages(ARTICLE), timeout=0.3)


def test_truncated_body_is_not_json(sim):
    sim.configure(transport_rates={"truncated_body": 1.0})
    response = post(sim, structured_messages(ARTICLE))
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize(("kind", "finish_reason"), [("non_json", "stop"), ("truncated_content", "length")])
def test_bad_content_faults(sim, kind, finish_reason):
    sim.configure(transport_rates={kind: 1.0})
    choice = post(sim, structured_messages(ARTICLE)).json()["choices"][0]
    assert choice["finish_reason"] == finish_reason
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


async def test_connection_reset_reaches_the_openai_client_as_a_connection_error(sim):
    sim.configure(transport_rates={"reset": 1.0})
    with pytest.raises(httpx.TransportError):
        post(sim, structured_messages(ARTICLE))
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=structured_messages(ARTICLE))
    await client.close()


def test_transport_faults_occur_at_the_configured_rates_and_retries_draw_afresh():
    rates = {"500": 0.2, "429_retry_after": 0.1}
    rng = random.Random(5)
    with SimServer(SimConfig(seed=2, transport_rates=rates)) as server:
        for _ in range(300):
            post(server, structured_messages(_article_variant(rng) + [f"Line {rng.random()} is here."]))
        for _ in range(20):  # the same prompt again and again: a retry is not doomed to repeat
            post(server, structured_messages(ARTICLE))
        calls = server.calls()
    first = calls[:300]
    assert 0.13 <= sum(c["transport_fault"] == "500" for c in first) / 300 <= 0.27
    assert 0.05 <= sum(c["transport_fault"] == "429_retry_after" for c in first) / 300 <= 0.15
    assert len({c["transport_fault"] for c in calls[300:]}) > 1


def test_config_and_reset_endpoints(sim):
    response = httpx.post(f"{sim.url}/_sim/config", json={"base_ms": 5, "transport_rates": {"503": 0.5}})
    assert response.json()["base_ms"] == 5
    assert sim.state.config.transport_rates == {"503": 0.5}
    bad = httpx.post(f"{sim.url}/_sim/config", json={"transport_rates": {"teapot": 1.0}})
    assert bad.status_code == 400
    assert set(TRANSPORT_FAULTS) >= set(sim.state.config.transport_rates)
    post(sim, structured_messages(ARTICLE))
    assert len(httpx.get(f"{sim.url}/_sim/calls").json()) == 1
    httpx.post(f"{sim.url}/_sim/reset")
    assert sim.calls() == []


def test_runs_as_a_subprocess_from_the_command_line():
    with SimProcess(SimConfig(base_ms=1)) as process:
        response = httpx.post(
            f"{process.base_url}/chat/completions",
            json={"model": "m", "messages": structured_messages(ARTICLE)},
        )
        assert response.status_code == 200
        process.configure(fault_rate=1.0)
        assert len(process.calls()) == 1
        process.reset()
        assert process.calls() == []


def test_name_fault_swaps_proper_names_only():
    lines = [
        SourceLine(("s1",), "Even so, the council met in Leeds on Monday to discuss the budget."),
        SourceLine(("s2",), "According to the report, councillor Priya Shah opposed the plan."),
        SourceLine(("s3",), "The group said Story time at the library would stay."),
        SourceLine(("s4",), "A story in the local paper quoted residents from Harrogate."),
    ]
    sentence = {"text": lines[1].text, "citations": ["s2"]}
    for seed in range(20):
        faulted = inject_fault(sentence, "name", lines, random.Random(seed))
        before, after = faulted["detail"].split(" -> ")
        assert before in {"Priya", "Shah"}
        assert after in {"Leeds", "Harrogate"}  # never "Even", "According", "Story", "Monday"


# ---------------------------------------------------------------------------------------------
# Decoding latency and streaming (issue 15)
# ---------------------------------------------------------------------------------------------


def stream_post(sim: SimServer, messages: list[dict[str, str]], timeout: float = 10.0, **extra: object) -> list[str]:
    """The `data:` payloads of a streamed completion, in order."""
    body = {"model": "m", "messages": messages, "stream": True, **extra}
    with _HTTP.stream("POST", f"{sim.base_url}/chat/completions", json=body, timeout=timeout) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def test_latency_profiles_name_the_benchmark_models():
    assert SimConfig().updated(LATENCY_PROFILES["decode"]).ms_per_output_token == 10.0
    old = LATENCY_PROFILES["prefill-only"]
    assert (old["base_ms"], old["ms_per_1k"], old["ms_per_output_token"]) == (400.0, 20.0, 0.0)


def test_decoding_is_charged_per_completion_token(sim):
    sim.configure(base_ms=50, ms_per_1k=0, ms_per_output_token=5)
    started = time.perf_counter()
    response = post(sim, structured_messages(ARTICLE))
    elapsed = time.perf_counter() - started
    completion_tokens = response.json()["usage"]["completion_tokens"]
    assert completion_tokens > 20
    assert elapsed >= (50 + 5 * completion_tokens) / 1000


async def test_stream_matches_the_plain_answer_and_reaches_the_openai_client(sim):
    messages = structured_messages(ARTICLE)
    plain = post(sim, messages).json()
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain["choices"][0]["message"]["content"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain["usage"]["completion_tokens"]
    # about one token per chunk, as hosted models send them
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == estimate_tokens(text)
    assert sim.calls()[-1]["stream_completed"] is True


def test_stream_without_include_usage_has_no_usage_chunk_and_ends_with_done(sim):
    payloads = stream_post(sim, structured_messages(ARTICLE))
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(p) for p in payloads[:-1])


def test_stream_first_token_after_prefill_then_one_token_per_interval(sim):
    sim.configure(base_ms=200, ms_per_1k=0, ms_per_output_token=20)
    body = {"model": "m", "messages": structured_messages(ARTICLE), "stream": True}
    arrivals = []
    started = time.perf_counter()
    with _HTTP.stream("POST", f"{sim.base_url}/chat/completions", json=body, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content": ""' not in line and '"content"' in line:
                arrivals.append(time.perf_counter() - started)
    tokens = len(arrivals)
    assert arrivals[0] >= 0.2  # nothing before the time to first token
    assert arrivals[-1] >= 0.2 + 0.02 * (tokens - 1)  # decoding is spread over the stream
    assert arrivals[tokens // 2] < arrivals[-1] - 0.02 * (tokens // 4)  # not all at the end


@pytest.mark.parametrize("kind", STREAM_FAULTS)
def test_stream_faults_strike_mid_stream(sim, kind):
    sim.configure(transport_rates={kind: 1.0}, hang_s=3, stream_fault_at=0.5)
    messages = structured_messages(ARTICLE)
    if kind == "stream_cut":
        with pytest.raises(httpx.TransportError):
            stream_post(sim, messages)
    elif kind == "stream_stall":
        with pytest.raises(httpx.ReadTimeout):
            stream_post(sim, messages, timeout=0.5)
    else:
        payloads = stream_post(sim, messages)
        with pytest.raises(json.JSONDecodeError):
            [json.loads(p) for p in payloads if p != "[DONE]"]
    deadline = time.monotonic() + 5
    while not sim.calls() and time.monotonic() < deadline:  # logged when the stream ends
        time.sleep(0.01)
    call = sim.calls()[0]
    assert call["transport_fault"] == kind
    assert call["stream_fault_at_token"] > 3  # after some content was sent
    assert post(sim, messages).status_code == 200  # a plain request is not struck by a stream fault


def test_an_abandoned_stream_is_logged_as_not_completed(sim):
    sim.configure(base_ms=0, ms_per_output_token=50)
    body = {"model": "m", "messages": structured_messages(ARTICLE), "stream": True}
    with _HTTP.stream("POST", f"{sim.base_url}/chat/completions", json=body, timeout=10) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 5
    while not sim.calls() and time.monotonic() < deadline:
        time.sleep(0.01)
    [call] = sim.calls()
    assert call["stream_completed"] is False
    assert call["stream_tokens_sent"] < call["completion_tokens"]
