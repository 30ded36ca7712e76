"""The LLM-judge stage, against pytest-httpx fakes of the OpenAI chat-completions endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.pipeline.judge import JudgeCost, is_unsure, judge_verifications
from service.pipeline.llm import LLMClient
from service.pipeline.segment import segment
from service.verifier.verify import SourceIndex, Verification
from tests.conftest import CHAT_URL, SEED_ARTICLE, chat_completion

REAL_REPLIES = Path(__file__).resolve().parent / "real_replies"


@pytest.fixture(scope="module")
def index() -> SourceIndex:
    return SourceIndex(segment(SEED_ARTICLE.read_text(encoding="utf-8")))


def verdicts(*items: tuple[int, bool, str]) -> str:
    return json.dumps({"verdicts": [{"index": i, "supported": s, "reason": r} for i, s, r in items]})


@pytest.mark.parametrize(
    ("score", "unsure"), [(0.5, True), (0.36, True), (0.64, True), (0.3, False), (0.9, False), (0.05, False)]
)
def test_band_around_threshold(score: float, unsure: bool) -> None:
    assert is_unsure(Verification("supported", score, ["s1"]), 0.5, 0.15) is unsure


def test_band_zero_turns_the_judge_off() -> None:
    assert not is_unsure(Verification("supported", 0.5, ["s1"]), 0.5, 0.0)


async def test_only_unsure_sentences_are_sent_and_verdicts_applied(
    httpx_mock: HTTPXMock, llm_settings: Settings, index: SourceIndex
) -> None:
    httpx_mock.add_response(
        url=CHAT_URL, json=chat_completion(verdicts((0, False, "the trucks were 400km away, not 500km")),
                                           prompt_tokens=300, completion_tokens=25)
    )
    claims = ["Trucks were filmed 500km from the border.", "Putin has no good options."]
    checked = [Verification("supported", 0.58, ["s12"]), Verification("supported", 0.97, ["s3"])]
    cost = JudgeCost()
    llm = LLMClient(llm_settings)
    result = await judge_verifications(claims, checked, index, llm, threshold=0.5, band=0.15, cost=cost)
    await llm.aclose()

    assert result[0].verdict == "unsupported" and result[0].score < 0.5
    assert result[0].reason == "judge: the trucks were 400km away, not 500km"
    assert result[1] == checked[1]
    assert cost.as_dict() == {"calls": 1, "prompt_tokens": 300, "completion_tokens": 25, "judged": 1, "changed": 1,
                               "tokens_estimated": False}
    body = json.loads(httpx_mock.get_requests()[0].content)
    user = body["messages"][-1]["content"]
    assert "Sentence 0: Trucks were filmed 500km from the border." in user
    assert f"[s12] {index.by_id['s12'].text}" in user
    assert "Putin has no good options." not in user
    assert body["response_format"]["json_schema"]["name"] == "judge_verdicts"


async def test_no_unsure_sentence_means_no_call(llm_settings: Settings, index: SourceIndex) -> None:
    # pytest-httpx fails the test on any request without a registered response.
    checked = [Verification("supported", 0.99, ["s12"]), Verification("unsupported", 0.1, ["s3"], reason="x")]
    cost = JudgeCost()
    llm = LLMClient(llm_settings)
    result = await judge_verifications(["a", "b"], checked, index, llm, threshold=0.5, band=0.15, cost=cost)
    await llm.aclose()
    assert result == checked and cost.calls == 0


async def test_invalid_verdicts_are_reasked_once(
    httpx_mock: HTTPXMock, llm_settings: Settings, index: SourceIndex
) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(verdicts((7, True, "out of range"))))
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(verdicts((0, True, "stated in s13"))))
    checked = [Verification("unsupported", 0.45, ["s13"], reason="word 'x' not in evidence")]
    cost = JudgeCost()
    llm = LLMClient(llm_settings)
    result = await judge_verifications(["The group cited eyewitnesses."], checked, index, llm,
                                       threshold=0.5, band=0.15, cost=cost)
    await llm.aclose()
    assert result[0].verdict == "supported" and result[0].reason is None and result[0].score >= 0.5
    assert len(httpx_mock.get_requests()) == 2 and cost.calls == 1 and cost.changed == 1


async def test_the_real_two_verdicts_for_one_sentence_reply_is_reasked_and_the_schema_fixes_the_count(
    httpx_mock: HTTPXMock, llm_settings: Settings, index: SourceIndex
) -> None:
    # Qwen2.5-Coder-0.5B under llama.cpp's grammar, asked about one sentence with the unbounded schema,
    # answered with verdicts for indexes 0 and 1 (recorded reply); eval-verifier --llm then stopped.
    recorded = json.loads((REAL_REPLIES / "judge_index_out_of_range.json").read_text(encoding="utf-8"))
    assert [v["index"] for v in json.loads(recorded["reply"]["choices"][0]["message"]["content"])["verdicts"]] == [0, 1]
    httpx_mock.add_response(url=CHAT_URL, json=recorded["reply"])
    httpx_mock.add_response(url=CHAT_URL, json=chat_completion(verdicts((0, True, "stated in s13"))))
    checked = [Verification("unsupported", 0.45, ["s13"], reason="word 'x' not in evidence")]
    llm = LLMClient(llm_settings)
    result = await judge_verifications(["The group cited eyewitnesses."], checked, index, llm, threshold=0.5, band=0.15)
    await llm.aclose()
    assert result[0].verdict == "supported"
    first = json.loads(httpx_mock.get_requests()[0].content)["response_format"]["json_schema"]["schema"]
    verdict_list = first["properties"]["verdicts"]
    assert (verdict_list["minItems"], verdict_list["maxItems"]) == (1, 1)
    assert verdict_list["items"]["properties"]["index"] == {"type": "integer", "enum": [0]}


def test_eval_verifier_with_llm_reports_cost(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.core.config import get_settings
    from service.evaluation.evaluate import eval_verifier_main

    def all_supported(request: httpx.Request) -> httpx.Response:
        count = json.loads(request.content)["messages"][-1]["content"].count("\nEvidence:\n")
        return httpx.Response(200, json=chat_completion(verdicts(*[(i, True, "ok") for i in range(count)])))

    httpx_mock.add_callback(all_supported, url=CHAT_URL, is_reusable=True, is_optional=True)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.test/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("CITESUM_VERIFY_JUDGE_BAND", "0.5")  # send everything with evidence to the judge
    get_settings.cache_clear()
    source = SEED_ARTICLE.read_text(encoding="utf-8")
    sentence = next(s.text for s in segment(source) if "400km" in s.text)
    rows = [
        {"dataset": "seed", "granularity": "sentence", "source": source, "claim": sentence, "label": 1},
        {"dataset": "seed", "granularity": "sentence", "source": source,
         "claim": "Putin ordered troops into Minsk.", "label": 0},
    ]
    data = tmp_path / "seed.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")

    assert eval_verifier_main([str(data), "--llm", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["datasets"]["seed"]["n"] == 2
    assert result["llm"]["calls"] >= 1 and result["llm"]["prompt_tokens"] > 0


def test_the_judge_is_on_by_default_when_a_model_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITESUM_VERIFY_JUDGE_BAND", raising=False)  # conftest turns it off for the other tests
    settings = Settings(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://llm.test/v1")
    assert settings.verify_judge_band == 0.15
    # A vetoed sentence scores at most threshold / 2: outside the default band, so hard checks stay final.
    assert not is_unsure(Verification("unsupported", 0.25, ["s1"]), 0.5, settings.verify_judge_band)
    assert is_unsure(Verification("unsupported", 0.45, ["s1"]), 0.5, settings.verify_judge_band)


async def test_the_simulated_model_answers_the_judge_prompt(index: SourceIndex) -> None:
    """bench and the process tests run with the judge on: the simulator must answer it, per sentence."""
    from service.testing.sim_llm import SimConfig, SimServer

    sentence = next(s for s in index.sentences if "400km" in s.text)
    checked = [Verification("unsupported", 0.45, [sentence.id]), Verification("supported", 0.55, [sentence.id])]
    claims = [sentence.text, "The moon is made of green cheese."]
    with SimServer(SimConfig(seed=1)) as sim:
        llm = LLMClient(Settings(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=f"{sim.url}/v1", llm_timeout_s=10.0))
        cost = JudgeCost()
        result = await judge_verifications(claims, checked, index, llm, threshold=0.5, band=0.15, cost=cost)
        await llm.aclose()
    assert [v.verdict for v in result] == ["supported", "unsupported"] and cost.calls == 1
