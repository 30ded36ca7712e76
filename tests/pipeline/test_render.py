"""render_text / render_markdown: numbered citations, evidence, flags, and the footer."""

from __future__ import annotations

from service.core.schema import Citation, DocumentInfo, SummaryResponse, SummarySentence, Usage
from service.pipeline.render import render_markdown, render_text

TEXT = "Trucks were filmed 400km from the border. The group gave no evidence."


def response(**changes: object) -> SummaryResponse:
    base = dict(
        summary=[
            SummarySentence(
                text="Trucks were filmed 400km from the border.",
                citations=[Citation(sentence_id="s1", start=0, end=41, quote=TEXT[0:41])],
                verdict="supported",
                score=1.0,
            ),
            SummarySentence(
                text="Convoys were seen near the border, with no evidence given.",
                citations=[
                    Citation(sentence_id="s1", start=0, end=41, quote=TEXT[0:41]),
                    Citation(sentence_id="s2", start=42, end=69, quote=TEXT[42:69]),
                ],
                verdict="unsupported",
                score=0.4,
                reason="word 'convoys' not in evidence",
            ),
        ],
        document=DocumentInfo(text=TEXT, sentence_count=2, title="Trucks"),
        provider="openai-compatible",
        model="m",
        prompt_version="summarize/v1",
        policy="flag",
        usage=Usage(llm_calls=1, prompt_tokens=10, completion_tokens=5),
        dropped=[],
        timings_ms={},
    )
    return SummaryResponse(**{**base, **changes})


def test_text_numbers_each_source_sentence_once_and_flags_unsupported() -> None:
    out = render_text(response(), width=300)
    assert "Trucks were filmed 400km from the border. [1]" in out
    assert "with no evidence given. [1][2]" in out and "⚠ unsupported: word 'convoys' not in evidence" in out
    assert "[1] s1, characters 0–41 (quoted verbatim above)" in out  # extractive: not quoted twice
    assert "[2] “The group gave no evidence.”" in out
    assert "1 LLM calls, 10+5 tokens" in out


def test_markdown_uses_footnotes() -> None:
    out = render_markdown(response())
    assert out.startswith("## Trucks")
    assert "- Trucks were filmed 400km from the border.[^1]" in out
    assert "[^2]: “The group gave no evidence.”" in out


def test_empty_summary_says_so() -> None:
    assert "could be verified" in render_text(response(summary=[]))


def test_footer_says_when_the_model_saw_an_excerpt() -> None:
    assert "excerpt" not in render_text(response())
    out = render_text(response(excerpt_ids=["s1"]), width=300)
    assert "2 source sentences · model shown an excerpt of 1" in out
