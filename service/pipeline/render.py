"""A SummaryResponse as readable text or Markdown with numbered citations and quoted evidence."""

from __future__ import annotations

import textwrap
from typing import Any

from service.core.schema import SummaryResponse

FLAG = "⚠"


def _numbered(response: SummaryResponse) -> tuple[list[tuple[str, list[int], str, str | None]], list[str]]:
    """Sentences with citation numbers (a source sentence cited twice keeps one number) and the evidence.

    A citation whose quote is the summary sentence itself (extractive output) is shown by its place
    in the article rather than quoted a second time.
    """
    numbers: dict[str, int] = {}
    quotes: list[str] = []
    rows = []
    for sentence in response.summary:
        refs = []
        for citation in sentence.citations:
            if citation.sentence_id not in numbers:
                numbers[citation.sentence_id] = len(numbers) + 1
                verbatim = citation.quote == sentence.text
                quotes.append(
                    f"{citation.sentence_id}, characters {citation.start}–{citation.end} (quoted verbatim above)"
                    if verbatim
                    else f"“{citation.quote}”"
                )
            refs.append(numbers[citation.sentence_id])
        rows.append((sentence.text, refs, sentence.verdict, sentence.reason))
    return rows, quotes


def _footer(response: SummaryResponse) -> str:
    usage = response.usage
    parts = [f"{response.provider} · {response.model}", f"prompt {response.prompt_version}"]
    if usage.llm_calls:
        parts.append(f"{usage.llm_calls} LLM calls, {usage.prompt_tokens}+{usage.completion_tokens} tokens")
    parts.append(f"{response.document.sentence_count} source sentences")
    if response.excerpt_ids is not None:
        parts.append(f"model shown an excerpt of {len(response.excerpt_ids)}")
    if response.dropped:
        parts.append(f"{len(response.dropped)} unsupported sentence(s) dropped")
    return " · ".join(parts)


def render_text(response: SummaryResponse, width: int = 100) -> str:
    """Plain text for a terminal: the summary with [n] markers, then the numbered evidence."""
    rows, quotes = _numbered(response)
    lines: list[str] = []
    if response.document.title:
        lines += [response.document.title, "=" * min(width, len(response.document.title)), ""]
    if not rows:
        lines.append("(no sentence of the summary could be verified against the article)")
    for text, refs, verdict, reason in rows:
        marks = "".join(f"[{n}]" for n in refs)
        flag = f" {FLAG} unsupported: {reason}" if verdict == "unsupported" else ""
        lines.append(textwrap.fill(f"• {text} {marks}{flag}", width=width, subsequent_indent="  "))
    if quotes:
        lines += ["", "Evidence:"]
        for n, quote in enumerate(quotes, 1):
            lines.append(textwrap.fill(f"[{n}] {quote}", width=width, subsequent_indent="    "))
    lines += ["", _footer(response)]
    return "\n".join(lines)


def render_footer(response: SummaryResponse) -> str:
    """The one-line account of a summary: provider, model, prompt, calls, tokens, dropped sentences."""
    return _footer(response)


def render_stream_sentence(sentence: dict[str, Any], width: int = 100) -> str:
    """A streamed `sentence` event's data as one terminal line: text, cited ids, the flag if any."""
    ids = ", ".join(c["sentence_id"] for c in sentence.get("citations", []))
    flag = f" {FLAG} unsupported: {sentence.get('reason')}" if sentence.get("verdict") == "unsupported" else ""
    return textwrap.fill(f"• {sentence['text']} [{ids}]{flag}", width=width, subsequent_indent="  ")


def render_stream_dropped(dropped: dict[str, Any]) -> str:
    """A streamed `dropped` event's data as one line: what the verifier refused and why."""
    return (
        f"dropped (unsupported: {dropped.get('reason') or 'not supported by the cited sentences'}): {dropped['text']}"
    )


def render_markdown(response: SummaryResponse) -> str:
    """Markdown with footnotes: each [^n] quotes its source sentence."""
    rows, quotes = _numbered(response)
    lines: list[str] = []
    if response.document.title:
        lines += [f"## {response.document.title}", ""]
    for text, refs, verdict, reason in rows:
        marks = "".join(f"[^{n}]" for n in refs)
        flag = f" **{FLAG} unsupported:** {reason}" if verdict == "unsupported" else ""
        lines.append(f"- {text}{marks}{flag}")
    if quotes:
        lines.append("")
        lines += [f"[^{n}]: {quote}" for n, quote in enumerate(quotes, 1)]
    lines += ["", f"_{_footer(response)}_"]
    return "\n".join(lines)
