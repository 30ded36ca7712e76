"""The pipeline end to end: embedded default, one LLM call, map+combine, verification and policies."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.core.errors import LLMTimeout, UnprocessableArticle
from service.core.schema import SummaryRequest, SummaryResponse
from service.pipeline.boilerplate import clean_text
from service.pipeline.chunking import sentence_tokens
from service.pipeline.extractive import rank_sentences, select_excerpt
from service.pipeline.ingest import ingest
from service.pipeline.llm import LLMClient
from service.pipeline.segment import segment
from service.pipeline.summarize import summarize_request
from tests.conftest import CHAT_URL, chat_completion, cited

REAL_REPLIES = Path(__file__).resolve().parent / "real_replies"
LINE = re.compile(r"^\[(s\d+(?:, s\d+)*)\] (.+)$", re.M)


def assert_citations_exact(response: SummaryResponse) -> None:
    text = response.document.text
    for sentence in response.summary:
        assert sentence.citations, sentence
        for c in sentence.citations:
            assert text[c.start : c.end] == c.quote


async def seed_ids(seed_text: str, settings: Settings) -> dict[str, str]:
    """Map a phrase to the id of the (cleaned) seed sentence containing it."""
    document = await ingest(SummaryRequest(text=seed_text), settings)
    sentences = segment(document.text)

    def find(phrase: str) -> str:
        return next(s.id for s in sentences if phrase in s.text)

    return {
        p: find(p)
        for p in ["400km", "did not give any evidence", "Aleksandr Baunov", "Yekaterina Schulmann", "two phone calls"]
    }


async def run(settings: Settings, **request: object) -> SummaryResponse:
    llm = LLMClient(settings)
    try:
        return await summarize_request(SummaryRequest(**request), settings=settings, llm=llm)
    finally:
        await llm.aclose()


async def test_embedded_default_gives_three_supported_cited_sentences(seed_text: str) -> None:
    response = await summarize_request(SummaryRequest(text=seed_text), settings=Settings())
    assert response.provider == "embedded" and response.usage.llm_calls == 0
    assert len(response.summary) >= 3
    assert all(s.verdict == "supported" for s in response.summary)
    assert_citations_exact(response)
    noise = ("please wait", "No media source", "0:00", "Luxmoore", "file photo")
    assert not any(n in s.text for s in response.summary for n in noise)


async def test_embedded_default_refuses_an_article_with_no_quotable_sentence_naming_why() -> None:
    """No end punctuation, all lower case: nothing can be drafted. Before, the answer was 200 with an
    empty summary and no dropped sentence, which the CLI and the page blamed on verification."""
    notes = (
        "the council met on tuesday to discuss the new budget and the members agreed to postpone the vote "
        "until next month because several of them were absent and the mayor said she would call another meeting"
    )
    with pytest.raises(UnprocessableArticle) as raised:
        await summarize_request(SummaryRequest(text=notes), settings=Settings())
    assert raised.value.status == 422
    assert "no sentence of the article can be quoted" in raised.value.message
    assert "1 without end punctuation" in raised.value.message


async def test_embedded_default_is_deterministic(seed_text: str) -> None:
    first = await summarize_request(SummaryRequest(text=seed_text), settings=Settings())
    second = await summarize_request(SummaryRequest(text=seed_text), settings=Settings())
    assert [s.text for s in first.summary] == [s.text for s in second.summary]


async def test_llm_sentences_come_back_verified(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    reply = cited(
        ("Two convoys of unmarked trucks were filmed 400km from the Belarusian border.", [ids["400km"]]),
        ("The group did not give any evidence of troop movements.", [ids["did not give any evidence"]]),
    )
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply, prompt_tokens=900, completion_tokens=60))
    response = await run(llm_settings, text=seed_text)
    assert [s.text for s in response.summary] == [
        "Two convoys of unmarked trucks were filmed 400km from the Belarusian border.",
        "The group did not give any evidence of troop movements.",
    ]
    assert all(s.verdict == "supported" for s in response.summary)
    assert response.provider == "openai-compatible" and response.model == "gpt-4o-mini"
    assert response.prompt_version == "summarize/v2"
    assert (response.usage.llm_calls, response.usage.prompt_tokens, response.usage.completion_tokens) == (1, 900, 60)
    assert_citations_exact(response)
    prompt = json.loads(httpx_mock.get_requests()[0].content)["messages"][1]["content"]
    assert f"[{ids['400km']}] " in prompt and "please wait" not in prompt


async def test_citations_to_unknown_ids_never_pass_through(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    reply = cited(("Two convoys of unmarked trucks were filmed 400km from the Belarusian border.", ["s999", ids["400km"], "banana"]))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply))
    response = await run(llm_settings, text=seed_text)
    cited_ids = {c.sentence_id for s in response.summary for c in s.citations}
    assert cited_ids == {ids["400km"]}


async def test_the_real_reply_citing_every_id_is_reasked_and_the_schema_bounds_citations(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    # Qwen2.5-Coder-0.5B under llama.cpp's grammar, asked with the schema before it was bounded, wrote
    # the title as its one sentence and cited every id of the seed article (recorded reply).
    recorded = json.loads((REAL_REPLIES / "seed_unbounded_schema_cites_every_id.json").read_text(encoding="utf-8"))
    real_content = recorded["reply"]["choices"][0]["message"]["content"]
    assert len(json.loads(real_content)["sentences"][0]["citations"]) > 3
    ids = await seed_ids(seed_text, llm_settings)
    httpx_mock.add_response(url=CHAT_URL, json=recorded["reply"])
    httpx_mock.add_response(
        url=CHAT_URL,
        json=chat_completion(cited(("Two convoys of unmarked trucks were filmed 400km from the Belarusian border.", [ids["400km"]]))),
    )
    response = await run(llm_settings, text=seed_text, max_sentences=4)
    assert response.usage.reasks == 1 and [s.verdict for s in response.summary] == ["supported"]
    first, second = (json.loads(r.content) for r in httpx_mock.get_requests())
    assert "cites" in second["messages"][-1]["content"] and "1 to 3" in second["messages"][-1]["content"]
    schema = first["response_format"]["json_schema"]["schema"]["properties"]["sentences"]
    citations = schema["items"]["properties"]["citations"]
    shown = [s.id for s in segment(response.document.text)]
    assert (schema["minItems"], schema["maxItems"]) == (1, 4)
    assert (citations["minItems"], citations["maxItems"]) == (1, 3) and citations["items"]["enum"] == shown


CATCHES = [
    ("number", "Two convoys of unmarked trucks were filmed 500km from the Belarusian border.", "400km"),
    ("negation", "The investigative group gave evidence of troop movements.", "did not give any evidence"),
    ("name", "Yekaterina Schulmann, a senior fellow at the Carnegie Moscow Center, said using force may be too risky.", "Aleksandr Baunov"),
]


@pytest.mark.parametrize(("kind", "claim", "phrase"), CATCHES, ids=[c[0] for c in CATCHES])
async def test_each_fault_is_dropped_by_default(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str, kind: str, claim: str, phrase: str
) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((claim, [ids[phrase]]))))
    response = await run(llm_settings, text=seed_text)
    assert response.summary == []
    assert [d.text for d in response.dropped] == [claim] and response.dropped[0].reason


@pytest.mark.parametrize(("kind", "claim", "phrase"), CATCHES, ids=[c[0] for c in CATCHES])
async def test_flag_policy_keeps_and_marks(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str, kind: str, claim: str, phrase: str
) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((claim, [ids[phrase]]))))
    response = await run(llm_settings, text=seed_text, policy="flag")
    assert [(s.text, s.verdict) for s in response.summary] == [(claim, "unsupported")]
    assert response.summary[0].reason and response.dropped == []


async def test_miscitation_is_recited_to_better_evidence(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    claim = "The leaders held two phone calls over the weekend, according to readouts issued by the Kremlin."
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((claim, [ids["400km"]]))))
    response = await run(llm_settings, text=seed_text)
    [sentence] = response.summary
    assert sentence.verdict == "supported" and sentence.recited
    assert ids["two phone calls"] in [c.sentence_id for c in sentence.citations]
    assert ids["400km"] not in [c.sentence_id for c in sentence.citations]


async def test_repair_policy_reasks_once_and_reverifies(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    wrong = "Two convoys of unmarked trucks were filmed 500km from the Belarusian border."
    right = "Two convoys of unmarked trucks were filmed 400km from the Belarusian border."
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((wrong, [ids["400km"]]))))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((right, [ids["400km"]]))))
    response = await run(llm_settings, text=seed_text, policy="repair")
    assert [(s.text, s.verdict) for s in response.summary] == [(right, "supported")]
    assert response.usage.llm_calls == 2
    repair_prompt = json.loads(httpx_mock.get_requests()[1].content)["messages"][1]["content"]
    assert wrong in repair_prompt and "400km" in repair_prompt


def long_article(paragraphs: int = 24) -> str:
    topics = ["harbour", "orchard", "railway", "library", "glacier", "festival", "factory", "vineyard"]
    out = []
    for i in range(paragraphs):
        topic = topics[i % len(topics)]
        out.append(
            f"The {topic} committee in district {i + 1} reported {i * 7 + 3} new members this spring. "
            f"Officials said the {topic} budget would rise by {i + 2} percent next year. "
            f"Residents of district {i + 1} welcomed the {topic} plan at a public meeting."
        )
    return "\n\n".join(out)


async def test_long_article_goes_through_map_and_combine(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    settings = llm_settings.model_copy(update={"chunk_tokens": 400, "map_concurrency": 2})
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        body = json.loads(request.content)
        lines = LINE.findall(body["messages"][1]["content"])
        first_ids, first_text = lines[0]
        reply = cited((first_text, first_ids.split(", ")))
        return httpx.Response(200, json=chat_completion(reply, prompt_tokens=300, completion_tokens=30))

    httpx_mock.add_callback(answer, url=CHAT_URL, is_reusable=True)
    text = long_article()
    response = await run(settings, text=text)
    requests = httpx_mock.get_requests()
    assert response.chunks > 2 and len(requests) == response.chunks + 1 == response.usage.llm_calls
    assert peak <= 2  # the map concurrency bound held
    assert response.prompt_version == "summarize/v2+combine/v1"
    combine_prompt = json.loads(requests[-1].content)["messages"][1]["content"]
    assert "partial summaries" in json.loads(requests[-1].content)["messages"][0]["content"]
    assert "[s1] " in combine_prompt  # the combine step sees original source ids
    [sentence] = response.summary
    assert sentence.verdict == "supported" and sentence.citations[0].sentence_id == "s1"
    assert_citations_exact(response)


async def test_deadline_cancels_and_raises_504(httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str) -> None:
    settings = llm_settings.model_copy(update={"request_deadline_s": 0.2})

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=chat_completion(cited()))

    httpx_mock.add_callback(hang, url=CHAT_URL)
    with pytest.raises(LLMTimeout, match="deadline"):
        await run(settings, text=seed_text)


async def test_judge_stage_rules_on_unsure_sentences_and_its_cost_is_counted(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    settings = llm_settings.model_copy(update={"verify_judge_band": 0.5})  # every sentence counts as unsure
    ids = await seed_ids(seed_text, settings)
    claim = "Two convoys of unmarked trucks were filmed 400km from the Belarusian border."
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited((claim, [ids["400km"]])), prompt_tokens=900))
    verdicts = json.dumps({"verdicts": [{"index": 0, "supported": False, "reason": "the trucks were not filmed"}]})
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(verdicts, prompt_tokens=150, completion_tokens=12))
    response = await run(settings, text=seed_text, policy="flag")
    [sentence] = response.summary
    assert sentence.verdict == "unsupported" and sentence.reason.startswith("judge:")
    assert (response.usage.llm_calls, response.usage.prompt_tokens) == (2, 1050)
    judge_prompt = json.loads(httpx_mock.get_requests()[1].content)["messages"][1]["content"]
    assert claim in judge_prompt and "400km" in judge_prompt


# --- condensing a long article to fit CITESUM_PROMPT_TOKEN_BUDGET ---------------------------


async def test_over_the_prompt_budget_the_model_sees_an_excerpt_but_verification_uses_the_whole_article(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    settings = llm_settings.model_copy(update={"prompt_token_budget": 500})
    document = await ingest(SummaryRequest(text=seed_text), settings)
    sentences = segment(document.text)
    shown = select_excerpt(sentences, 500, document.title)
    shown_ids = [s.id for s in shown]
    assert 3 < len(shown) < len(sentences) and shown_ids[:3] == ["s1", "s2", "s3"]
    hidden = next(s for s in sentences if s.id not in shown_ids and len(s.text.split()) >= 12)
    reply = cited(
        (shown[3].text, [shown[3].id, hidden.id]),  # an id the model never saw is removed
        (hidden.text, [shown[0].id]),  # true, but only the unsent part of the article says so
    )
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply))
    response = await run(settings, text=seed_text)

    prompt = json.loads(httpx_mock.get_requests()[0].content)["messages"][1]["content"]
    assert [ids for ids, _ in LINE.findall(prompt)] == shown_ids
    assert f"this is an excerpt: its opening and its most central sentences, {len(shown)} of {len(sentences)}" in prompt
    assert response.excerpt_ids == shown_ids and response.document.sentence_count == len(sentences)
    first, second = sorted(response.summary, key=lambda s: s.text != shown[3].text)
    assert [c.sentence_id for c in first.citations] == [shown[3].id] and not first.recited
    assert second.verdict == "supported" and second.recited
    assert [c.sentence_id for c in second.citations] == [hidden.id]
    assert_citations_exact(response)


async def test_within_the_prompt_budget_every_sentence_is_sent(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str
) -> None:
    for budget in (0, 100_000):  # 0 (the default) turns condensing off
        httpx_mock.add_response(url=CHAT_URL, json=chat_completion(cited(("Putin has no good options.", ["s1"]))))
        response = await run(llm_settings.model_copy(update={"prompt_token_budget": budget}), text=seed_text)
        prompt = json.loads(httpx_mock.get_requests()[-1].content)["messages"][1]["content"]
        assert len(LINE.findall(prompt)) == response.document.sentence_count
        assert "excerpt" not in prompt and response.excerpt_ids is None
    assert Settings().prompt_token_budget == 0


def test_select_excerpt_keeps_the_lead_and_the_top_ranked_sentences_in_article_order(seed_text: str) -> None:
    text, title = clean_text(seed_text)
    sentences = segment(text)
    total = sum(sentence_tokens(s) for s in sentences)
    assert select_excerpt(sentences, total, title) == sentences
    for budget in (50, 300, total // 2, total - 1):
        shown = select_excerpt(sentences, budget, title)
        assert sum(sentence_tokens(s) for s in shown) <= budget
        assert [s.start for s in shown] == sorted(s.start for s in shown)
        assert set(shown) < set(sentences) and shown == select_excerpt(sentences, budget, title)
    shown = select_excerpt(sentences, total // 2, title)
    assert shown[:3] == sentences[:3] and rank_sentences(sentences, title)[0][1] in shown


async def test_asking_for_more_sentences_than_the_article_has_says_so() -> None:
    text = "Minsk said on Monday that talks would resume in March. Moscow said it welcomed the news on Tuesday."
    whole = await summarize_request(SummaryRequest(text=text, max_sentences=5), settings=Settings())
    assert whole.document.sentence_count == 2
    assert len(whole.notes) == 1 and "only 2 sentences" in whole.notes[0] and "up to 5" in whole.notes[0]
    fewer = await summarize_request(SummaryRequest(text=text, max_sentences=1), settings=Settings())
    assert fewer.notes == []


# --- the LLM judge is optional: when it cannot be used, the embedded verdicts stand -----------

JUDGE_FAILURES = {
    "not JSON": [{"json": chat_completion("I think the first sentence is fine.")}] * 2,
    "wrong verdict count": [{"json": chat_completion(json.dumps({"verdicts": []}))}] * 2,
    "5xx after the retries": [{"status_code": 503, "json": {"error": {"message": "overloaded"}}}] * 3,
    "timeouts after the retries": [{"exception": httpx.ReadTimeout("slow")}] * 3,
    "circuit breaker open": [],
}


@pytest.mark.parametrize("failure", JUDGE_FAILURES)
async def test_an_unusable_judge_leaves_the_embedded_verdicts_and_a_note(
    httpx_mock: HTTPXMock, llm_settings: Settings, seed_text: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await seed_ids(seed_text, llm_settings)
    reply = cited(
        ("Two convoys of unmarked trucks were filmed 400km from the Belarusian border.", [ids["400km"]]),
        ("Aleksandr Baunov said Putin had few good options.", [ids["Aleksandr Baunov"]]),
    )
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply))
    embedded = await run(llm_settings, text=seed_text, policy="flag")  # judge off: the embedded verdicts

    settings = llm_settings.model_copy(update={"verify_judge_band": 0.5})  # every sentence counts as unsure
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(reply, prompt_tokens=900))
    for answer in JUDGE_FAILURES[failure]:
        if "exception" in answer:
            httpx_mock.add_exception(answer["exception"], url=CHAT_URL)
        else:
            httpx_mock.add_response(url=CHAT_URL, **answer)
    llm = LLMClient(settings)

    def open_the_breaker(done: int, total: int) -> None:
        # After the draft call: other requests' failures have opened the breaker meanwhile.
        if failure == "circuit breaker open" and done == total:
            llm.breaker.failures = settings.breaker_failure_threshold
            llm.breaker.opened_at = llm.breaker.clock()
            llm.breaker.state = "open"

    try:
        response = await summarize_request(
            SummaryRequest(text=seed_text, policy="flag"), settings=settings, llm=llm, progress=open_the_breaker
        )
    finally:
        await llm.aclose()

    assert [(s.text, s.verdict, s.score, s.reason) for s in response.summary] == [
        (s.text, s.verdict, s.score, s.reason) for s in embedded.summary
    ]
    [note] = [n for n in response.notes if "judge" in n]
    assert note.startswith("the LLM judge could not be used (") and note.endswith("the embedded checker's verdicts stand")
    assert "judge could not be used" in caplog.text
    assert response.usage.prompt_tokens == 900 and response.usage.llm_calls == 1 + len(JUDGE_FAILURES[failure])
    assert len(httpx_mock.get_requests()) == 2 + len(JUDGE_FAILURES[failure])


async def test_a_part_answered_without_ids_is_cited_by_the_verifier(httpx_mock: HTTPXMock, llm_settings: Settings) -> None:
    """Parallel parts answer in a plain cited line; one that leaves the ids out is not refused."""

    def first_line_without_ids(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["messages"][1]["content"]
        text = re.search(r"^\[s\d+\] (.+)$", user, re.M).group(1)
        return httpx.Response(200, json=chat_completion(text))

    httpx_mock.add_callback(first_line_without_ids, url=CHAT_URL, is_reusable=True)
    settings = llm_settings.model_copy(update={"parallel_write_tokens": 300})
    response = await run(settings, text=long_article(), max_sentences=3)
    assert response.prompt_version == "summarize_part/v2" and response.chunks == 3
    assert len(response.summary) == 3 and not response.dropped
    for sentence in response.summary:
        assert sentence.verdict == "supported"
        assert [c.quote for c in sentence.citations] == [sentence.text]  # found by the verifier
