"""Block Kit rendering: Slack's limits hold on any input, citations and evidence show, mrkdwn is escaped."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from service.core.schema import (
    Citation,
    DocumentInfo,
    DroppedSentence,
    SummaryResponse,
    SummarySentence,
    Usage,
)
from service.pipeline.render_slack import (
    FALLBACK_MAX_CHARS,
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    escape_mrkdwn,
    render_error,
    render_help,
    render_partial,
    render_summary,
    render_working,
    split_text,
)


def make_response(
    sentences: list[tuple[str, list[tuple[str, str]], str, str | None]],
    *,
    dropped: int = 0,
    policy: str = "drop",
    source_url: str | None = None,
    title: str | None = None,
) -> SummaryResponse:
    """sentences: (text, [(sentence_id, quote)], verdict, reason)."""
    summary = [
        SummarySentence(
            text=text,
            citations=[Citation(sentence_id=sid, start=0, end=len(quote), quote=quote) for sid, quote in cites],
            verdict=verdict,  # type: ignore[arg-type]
            score=0.9 if verdict == "supported" else 0.2,
            reason=reason,
        )
        for text, cites, verdict, reason in sentences
    ]
    return SummaryResponse(
        summary=summary,
        document=DocumentInfo(text="...", sentence_count=42, title=title, source_url=source_url),
        provider="embedded",
        model="extractive",
        prompt_version="summarize@1",
        policy=policy,  # type: ignore[arg-type]
        usage=Usage(),
        dropped=[DroppedSentence(text="x", cited_ids=["s1"], score=0.1, reason="number 400 not in evidence")] * dropped,
        timings_ms={},
    )


def assert_valid_block_kit(message: dict[str, Any]) -> None:
    """Slack's limits, checked with slack_sdk's own block models as the independent validator."""
    assert isinstance(message["text"], str) and message["text"].strip()
    assert len(message["text"]) <= FALLBACK_MAX_CHARS
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= MAX_BLOCKS
    for block in blocks:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError past a limit
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_CHARS


def all_text(message: dict[str, Any]) -> str:
    parts = []
    for block in message["blocks"]:
        if block["type"] == "section":
            parts.append(block["text"]["text"])
        else:
            parts.extend(element["text"] for element in block["elements"])
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a & b", "a &amp; b"), ("<script>", "&lt;script&gt;"), ("&lt;", "&amp;lt;"), ("<!channel>", "&lt;!channel&gt;")],
)
def test_escape_mrkdwn(raw: str, escaped: str) -> None:
    assert escape_mrkdwn(raw) == escaped


def test_summary_has_numbered_citations_quotes_and_source_link() -> None:
    response = make_response(
        [
            (
                "Putin has options in Belarus.",
                [("s2", "Putin could annex Belarus."), ("s5", "He has troops.")],
                "supported",
                None,
            ),
            ("The army is loyal.", [("s5", "He has troops."), ("s9", "Generals back him.")], "supported", None),
        ],
        source_url="https://example.com/news?a=1&b=2",
        title="Belarus & Putin",
    )
    message = render_summary(response)
    assert_valid_block_kit(message)
    text = all_text(message)
    assert "<https://example.com/news?a=1&amp;b=2|Belarus &amp; Putin>" in text
    assert "*1.* Putin has options in Belarus. [1] [2]" in text
    assert "*2.* The army is loyal. [2] [3]" in text  # s5 keeps its number
    assert ">[1] _s2_: “Putin could annex Belarus.”" in text
    assert ">[3] _s9_: “Generals back him.”" in text
    assert text.count("He has troops.") == 2  # each sentence shows its own evidence
    assert "42 source sentences" in text
    assert "1. Putin has options in Belarus. [1] [2]" in message["text"]


def test_user_text_is_escaped_everywhere() -> None:
    response = make_response([("A <b> & <!here>", [("s1", "quote <@U123> & more")], "supported", None)])
    message = render_summary(response)
    text = all_text(message)
    assert "<!here>" not in text and "<@U123>" not in text and "<b>" not in text
    assert "A &lt;b&gt; &amp; &lt;!here&gt;" in text
    assert "<!here>" not in message["text"]


def test_flagged_sentence_is_marked_with_reason() -> None:
    response = make_response(
        [
            ("Supported.", [("s1", "Supported.")], "supported", None),
            ("Putin sent 400 tanks.", [("s3", "Putin sent tanks.")], "unsupported", "number 400 not in evidence"),
        ],
        policy="flag",
    )
    message = render_summary(response)
    text = all_text(message)
    assert ":warning: *Not verified against the source:* number 400 not in evidence" in text
    assert text.count(":warning:") == 1
    assert "NOT VERIFIED: number 400 not in evidence" in message["text"]


def test_dropped_sentences_are_counted() -> None:
    message = render_summary(make_response([("One.", [("s1", "One.")], "supported", None)], dropped=2))
    assert "2 unsupported sentences dropped (policy: drop)." in all_text(message)
    assert "2 unsupported sentences dropped" in message["text"]


def test_empty_summary_still_renders() -> None:
    message = render_summary(make_response([], dropped=3))
    assert_valid_block_kit(message)
    assert "could be verified" in all_text(message)


def test_long_sentence_and_evidence_are_split_not_failed() -> None:
    long_sentence = "word " * 1_500  # 7,500 characters
    response = make_response([(long_sentence, [("s1", "evidence " * 500)], "supported", None)])
    message = render_summary(response)
    assert_valid_block_kit(message)
    sections = [b for b in message["blocks"] if b["type"] == "section"]
    assert len(sections) >= 4  # header + the sentence over at least three sections
    assert all_text(message).count("word") == 1_500  # nothing lost in the split


def test_more_than_fifty_blocks_are_trimmed_with_a_note() -> None:
    sentences = [(f"Sentence {i}. " + "x" * 2_900, [(f"s{i}", "q" * 500)], "supported", None) for i in range(30)]
    message = render_summary(make_response(sentences, dropped=1))
    assert_valid_block_kit(message)
    assert len(message["blocks"]) == MAX_BLOCKS
    assert "more block(s) not shown" in all_text(message)
    assert "source sentences" in message["blocks"][-1]["elements"][0]["text"]  # the footer survives


def test_pasted_text_without_source_link() -> None:
    message = render_summary(make_response([("One.", [("s1", "One.")], "supported", None)]))
    assert "*Summary* of the pasted text" in all_text(message)


@given(st.text(min_size=0, max_size=12_000), st.integers(min_value=10, max_value=3_000))
def test_split_text_respects_the_limit(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert pieces and all(len(piece) <= limit for piece in pieces)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=4_000))
def test_any_sentence_text_renders_valid_block_kit(text: str) -> None:
    response = make_response([(text or "x", [("s1", text or "q")], "unsupported", text)], policy="flag")
    assert_valid_block_kit(render_summary(response, source_url="https://example.com/a|b>c"))


def test_help_working_and_error_messages() -> None:
    help_message = render_help("/summarize", problem="Unknown option --loud.")
    assert_valid_block_kit(help_message)
    assert "Unknown option --loud." in all_text(help_message)
    assert "--public" in all_text(help_message) and "help" in all_text(help_message)
    assert "<pasted" not in all_text(help_message)  # a bare < would start a Slack link

    working = render_working("<https://example.com/a>")
    assert working["response_type"] == "ephemeral"
    assert_valid_block_kit(working)

    error = render_error("the URL could not be fetched (HTTP 404) <x>", request_id="abc123")
    assert_valid_block_kit(error)
    assert "&lt;x&gt;" in all_text(error) and "abc123" in all_text(error)


def test_verbatim_sentence_is_not_quoted_twice() -> None:
    sentence = "Lukashenka asked Moscow for help."
    message = render_summary(make_response([(sentence, [("s4", sentence)], "supported", None)]))
    text = all_text(message)
    assert text.count(sentence) == 1 and ">[1] _s4_: quoted word for word from the article" in text


def test_partial_summary_lists_the_sentences_so_far_escaped_and_flagged() -> None:
    sentences = [
        {"text": "Putin has <three> options.", "verdict": "supported", "citations": []},
        {"text": "He will annex it.", "verdict": "unsupported", "reason": "not in evidence", "citations": []},
    ]
    message = render_partial(sentences, source_url="https://example.com/a")
    assert_valid_block_kit(message)
    text = all_text(message)
    assert "*1.* Putin has &lt;three&gt; options." in text and "*2.* He will annex it." in text
    assert "Not verified against the source:* not in evidence" in text
    assert "2 sentences checked against the source so far" in text and "https://example.com/a" in text
