"""Render a verified summary (and the bot's other replies) as a Slack message: Block Kit plus a plain `text`.

Slack refuses a message with more than 50 blocks or a section text over 3,000 characters, so every
message built here is split or trimmed to fit; rendering never fails. The `text` field is the fallback
that notifications, screen readers and Slack-compatible servers without Block Kit (Mattermost,
Rocket.Chat) show.
"""

from __future__ import annotations

from typing import Any

from service.core.schema import SummaryResponse

__all__ = [
    "FALLBACK_MAX_CHARS",
    "MAX_BLOCKS",
    "MAX_SECTION_CHARS",
    "Message",
    "escape_mrkdwn",
    "render_error",
    "render_help",
    "render_summary",
    "render_working",
    "split_text",
]

Message = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3_000
FALLBACK_MAX_CHARS = 4_000  # Slack truncates far later; this keeps notifications and Mattermost posts short
QUOTE_MAX_CHARS = 600
ELLIPSIS = "…"
WARNING = ":warning:"


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters (`&` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def _link(url: str, label: str | None = None) -> str:
    # A URL inside <...|...> must not carry the delimiters; percent-encoding them keeps the link working.
    safe_url = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    if not label:
        return f"<{safe_url}>"
    return f"<{safe_url}|{escape_mrkdwn(label).replace('|', '¦')}>"


def split_text(text: str, limit: int = MAX_SECTION_CHARS) -> list[str]:
    """Split text into pieces of at most `limit` characters, at line breaks where possible."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # one line longer than a block: cut it at a space
            cut = line.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= limit:
            current = candidate
        else:
            pieces.append(current)
            current = line
    if current or not pieces:
        pieces.append(current)
    return [piece for piece in pieces if piece.strip()] or [" "]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _trim(text, MAX_SECTION_CHARS)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _trim(text, MAX_SECTION_CHARS)}]}


def _sections(text: str) -> list[dict[str, Any]]:
    return [_section(piece) for piece in split_text(text)]


def _fit(blocks: list[dict[str, Any]], tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the message within MAX_BLOCKS: the tail (footer) always survives, a note says what was cut."""
    room = MAX_BLOCKS - len(tail)
    if len(blocks) <= room:
        return blocks + tail
    kept = blocks[: room - 1]
    note = _context(f"{ELLIPSIS} {len(blocks) - len(kept)} more block(s) not shown (Slack allows {MAX_BLOCKS}).")
    return kept + [note] + tail


def _message(text: str, blocks: list[dict[str, Any]]) -> Message:
    return {"text": _trim(text, FALLBACK_MAX_CHARS), "blocks": blocks}


def render_summary(response: SummaryResponse, *, source_url: str | None = None) -> Message:
    """A summary as Block Kit: numbered citations, quoted evidence, the source link, policy notes, and a footer."""
    source_url = source_url or response.document.source_url
    title = response.document.title
    if source_url:
        heading = f"*Summary* of {_link(source_url, title or source_url)}"
        plain_heading = f"Summary of {_link(source_url, title or source_url)}"
    else:
        heading = f"*Summary* of {escape_mrkdwn(_trim(title, 200)) if title else 'the pasted text'}"
        plain_heading = f"Summary of {escape_mrkdwn(_trim(title, 200)) if title else 'the pasted text'}"

    numbers: dict[str, int] = {}  # sentence id -> citation number, in order of first use
    body: list[dict[str, Any]] = []
    plain_lines = [plain_heading]
    for index, sentence in enumerate(response.summary, start=1):
        marks = []
        quotes = []
        for citation in sentence.citations:
            number = numbers.setdefault(citation.sentence_id, len(numbers) + 1)
            marks.append(f"[{number}]")
            # The evidence is repeated under every sentence that leans on it, so each reads on its own;
            # a sentence taken word for word from the article (the extractive default) is not printed twice.
            if " ".join(citation.quote.split()) == " ".join(sentence.text.split()):
                quotes.append(f">[{number}] _{citation.sentence_id}_: quoted word for word from the article")
                continue
            quote = escape_mrkdwn(_trim(" ".join(citation.quote.split()), QUOTE_MAX_CHARS))
            quotes.append(f">[{number}] _{citation.sentence_id}_: “{quote}”")
        cites = " ".join(dict.fromkeys(marks))
        lines = [f"*{index}.* {escape_mrkdwn(sentence.text)} {cites}".rstrip()]
        plain = f"{index}. {escape_mrkdwn(sentence.text)} {cites}".rstrip()
        if sentence.verdict != "supported":
            reason = escape_mrkdwn(sentence.reason or "not supported by the cited evidence")
            lines.append(f"{WARNING} *Not verified against the source:* {reason}")
            plain += f" (NOT VERIFIED: {reason})"
        lines.extend(dict.fromkeys(quotes))
        body.extend(_sections("\n".join(lines)))
        plain_lines.append(plain)

    if not response.summary:
        body.append(_section("_No sentence of the summary could be verified against the source._"))
        plain_lines.append("No sentence of the summary could be verified against the source.")
    if response.dropped:
        count = len(response.dropped)
        note = f"{count} unsupported sentence{'s' if count != 1 else ''} dropped (policy: {response.policy})."
        body.append(_context(f"{WARNING} {note}"))
        plain_lines.append(note)

    footer_text = (
        f"Every sentence checked against {response.document.sentence_count} source sentences · "
        f"{escape_mrkdwn(response.provider)} `{escape_mrkdwn(response.model)}`"
    )
    if response.prompt_version and response.prompt_version != "none":  # the extractive default has no prompt
        footer_text += f" · prompt {escape_mrkdwn(response.prompt_version)}"
    footer = _context(footer_text)
    blocks = _fit([_section(heading), *body], [footer])
    return _message("\n".join(plain_lines), blocks)


def render_partial(sentences: list[dict[str, Any]], *, source_url: str | None = None) -> Message:
    """The sentences verified so far, posted while the rest of the summary is being written."""
    heading = f"*Summary* of {_link(source_url)}" if source_url else "*Summary* of the pasted text"
    body = []
    plain_lines = [heading.replace("*", "")]
    for index, sentence in enumerate(sentences, start=1):
        line = f"*{index}.* {escape_mrkdwn(str(sentence.get('text', '')))}"
        if sentence.get("verdict") != "supported":
            reason = escape_mrkdwn(str(sentence.get("reason") or "not supported by the cited evidence"))
            line += f"\n{WARNING} *Not verified against the source:* {reason}"
        body.extend(_sections(line))
        plain_lines.append(line.replace("*", ""))
    count = len(sentences)
    note = (
        f":hourglass_flowing_sand: {count} sentence{'s' if count != 1 else ''} checked against the source so far"
        f"{ELLIPSIS} the full summary with its evidence replaces this message."
    )
    blocks = _fit([_section(heading), *body], [_context(note)])
    return _message("\n".join([*plain_lines, note]), blocks)


def render_help(command: str = "/summarize", *, problem: str | None = None) -> Message:
    """Usage help for the slash command (and for a mention with nothing to summarize)."""
    lines = []
    if problem:
        lines.append(f"{WARNING} {escape_mrkdwn(problem)}")
    lines += [
        f"*{escape_mrkdwn(command)} &lt;link or pasted article&gt;* writes a short summary in which every "
        "sentence cites the article sentences it rests on, and is checked against them.",
        f"• `{escape_mrkdwn(command)} https://example.com/news/story` summarizes a page",
        f"• `{escape_mrkdwn(command)} &lt;pasted article text&gt;` summarizes the text itself",
        "• `--public` posts the summary to the channel, `--private` shows it only to you",
        "• `--flag` keeps unverified sentences and marks them; `--drop` (default) removes and counts them",
        f"• `{escape_mrkdwn(command)} help` shows this message",
    ]
    text = "\n".join(lines)
    return _message(text.replace("*", ""), _sections(text))


def render_working(target: str) -> Message:
    """The immediate acknowledgement of a slash command (Slack wants one within three seconds)."""
    text = f":hourglass_flowing_sand: Summarizing {target}{ELLIPSIS} the result will appear here shortly."
    return {"response_type": "ephemeral", **_message(text, [_section(text)])}


def render_error(message: str, *, request_id: str | None = None) -> Message:
    """A failure the user can act on; the request id lets an operator find the log line."""
    text = f":x: Sorry, I couldn't summarize that. {escape_mrkdwn(message)}"
    blocks = [_section(text)]
    if request_id:
        blocks.append(_context(f"request id `{escape_mrkdwn(request_id)}`"))
    return _message(text, blocks)
