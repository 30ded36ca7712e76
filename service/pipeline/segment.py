"""Document text → sentences with stable ids and exact character offsets."""

from __future__ import annotations

import re
from functools import lru_cache

import nupunkt
from pydantic import TypeAdapter

from service.core.schema import Sentence

# One validation call for the whole list (pydantic-core loops in Rust): ~1.3 µs a sentence, against
# ~6 µs for model_construct and ~2.6 µs for Sentence(...) one by one (481-sentence article: 0.6 ms).
_SENTENCES = TypeAdapter(tuple[Sentence, ...])

_LINE = re.compile(r"[^\r\n]+")

# A sentence end glued to the next sentence by a missing space, as in text whose paragraph breaks
# were dropped (BBC articles: "…the match.And Tansey…", '…she said."We…'). nupunkt never splits
# there, so "sentences" of a whole paragraph reached the summary. A candidate is an end mark right
# after a non-space character and before an (optionally quoted) upper-case letter; `_glued_ends`
# then rules out the look-alikes: initials and acronyms (U.S.Army, J.K.Rowling, Ph.D.), titles
# (Mr.Smith, St.Louis), e-mail addresses and URLs. A digit after the mark never qualifies (No.5, 3.5).
_GLUED = re.compile(r"[.!?](?<=[^\s.!?][.!?])(?=[\"'\u201d\u2019)\]]*[\"\u201c\u2018]?[^\W\d_])")
_TOKEN_AFTER = re.compile(r"\S*")
_NON_WORD = re.compile(r"\W")
_DOTTED = re.compile(r"\.\w")  # a domain or an abbreviation goes on: Money.Co.uk, U.S.-led
# Titles written before a name or a number, lower-cased without the full stop. Words that also end
# sentences ("Ltd", "Inc", "art") are left out: a glued "…Bradley Ltd.Mr McGurk…" is an end.
_TITLES = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "ft", "sen", "rep", "gov", "gen", "lt", "col", "capt",
    "sgt", "rev", "hon", "messrs", "mme", "mlle", "no", "nos", "vs",
})
_CLOSERS = "\u201d\u2019)]'"
# nupunkt ends a sentence after a title it does not know mid-line ("…the villa in St. | John may have…",
# "Orem police Lt. | Craig Martinez said…"): a title that never ends a sentence joins the next piece.
_TITLE_AT_END = re.compile(r"(?<![\w.])(?:St|Mt|Ft|Dr|Mr|Mrs|Ms|Prof|Gen|Sen|Rep|Gov|Lt|Col|Capt|Sgt|Rev)\.$")

# A photo caption pasted into the body ends with no mark at all: "…in the Tyne-Wear derby (file
# photo) The boy was taken…", "…the bearded dragon chases the dog She wrote…", "…his Jack Russell Sam
# The retired charity worker said…", "Scroll down for video A mother was…". nupunkt sees one sentence,
# so the caption rode along into the summary. A cut goes before a sentence opener written in capitals
# (The, A, He, It, But, After…) that comes before a lower-case word and after a lower-case word or a
# closing parenthesis or curly quote: in running text these openers are capitalised only in titles,
# where the next word is capitalised too ("the film A Beautiful Mind"). After a capitalised word (a
# caption often ends on a name) only openers that no title or label ends on count: not It ("Don't Push
# It won"), A ("Group A and"), In ("Log In to"), Now, Last, Today ("the Today programme"). On, At and
# As are never openers here ("the On the Mat studio").
_OPENER = r"(?:The|A|An|It|He|She|They|We|His|Her|Their|Its|This|These|Those|There|But|And|In|After|When|Now|Last|Yesterday|Today)"
_OPENER_AFTER_NAME = frozenset(
    "The He She They We His Her Their This These Those There But After When".split()
)
# An opener before a lower-case word (found first: the capitals make the scan fast); then the word
# before it decides.
_OPENER_THEN_LOWER = re.compile(rf"{_OPENER}(?=[ \xa0]+(?!(?:and|or|to)\b)[a-z])")
_LOWER_WORD_BEFORE = re.compile(r"(?<![\w'\u2019-])[a-z0-9][a-z0-9'\u2019-]*[)\u2019'\"\u201d]?$")
_CLOSED_BEFORE = re.compile(r"^[^(\u2018\u201c]*\w[)\u2019\u201d]$")
_NAME_BEFORE = re.compile(r"(?<![\w'\u2019-])[A-Z][\w'\u2019-]*$")
_SCROLL_DOWN = re.compile(r"\b(?i:scroll down for (?:video|more))\b[ \t\xa0]*(?=[A-Z])")


def _looks_like_address(token: str) -> bool:
    return "@" in token or "://" in token or token.casefold().startswith("www.")


def _glued_ends(line: str) -> list[int]:
    """Offsets in `line` where a sentence ends with no space before the next one."""
    cuts: list[int] = []
    for match in _GLUED.finditer(line):
        at = match.start()
        start = at
        while start > 0 and not line[start - 1].isspace():
            start -= 1
        before = line[start:at]
        end = at + 1
        # Closing marks stay with the sentence they close; a straight double quote closes only when
        # an odd number of them came before it on the line (else it opens the next sentence).
        while end < len(line) and (line[end] in _CLOSERS or line[end] == '"' and line.count('"', 0, end) % 2):
            end += 1
        after = _TOKEN_AFTER.match(line, end).group()  # type: ignore[union-attr]
        letters = after.lstrip('"\u201c\u2018')
        if not letters or not letters[0].isupper():
            continue
        word = _NON_WORD.split(before)[-1]
        last = before.rsplit(".", 1)[-1].strip("\"'\u201c\u2018([")
        if (
            _looks_like_address(before) or _looks_like_address(after)
            or ("/" in before and "." in before)  # bbc.co.uk/news.Then
            or len(last) == 1 and last.isalpha()  # U.S.Army, J.K.Rowling, Ph.D.Thesis
            or word.casefold() in _TITLES  # Mr.Smith, St.Louis
            or _DOTTED.search(after)
            or last.isupper() and letters.split("'")[0].isupper() and len(letters) > 1  # ASP.NET
        ):
            continue
        cuts.append(end)
    return cuts


def _unmarked_ends(line: str) -> list[int]:
    """Offsets in `line` where a sentence (a photo caption, mostly) ends with no end mark at all."""
    cuts: list[int] = []
    for match in _OPENER_THEN_LOWER.finditer(line):
        end = match.start()  # the previous word ends before the spaces in front of the opener
        while end > 0 and line[end - 1] in " \t\xa0":
            end -= 1
        if end == match.start() or end == 0:
            continue  # inside a word ("AThe"), or the line starts here
        if line[end - 1] in ".!?,;:" or line[end - 1] in _CLOSERS + '"' and line[end - 2 : end - 1] in (".", "!", "?", ","):
            continue  # an ordinary sentence start (nupunkt's), or a clause after a comma
        start = end
        while start > 0 and not line[start - 1].isspace():
            start -= 1
        word = line[start:end]
        if (
            _LOWER_WORD_BEFORE.search(word)
            or _CLOSED_BEFORE.match(word)
            or match.group() in _OPENER_AFTER_NAME and _NAME_BEFORE.search(word)
        ):
            cuts.append(match.start())
    if "scroll down for" in line.casefold():
        cuts.extend(match.end() for match in _SCROLL_DOWN.finditer(line))
        cuts.sort()
    return cuts


def _joined_after_titles(part: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` with each one that ends on a title ("St.", "Lt.") joined to the next when that opens
    with a capital letter (the name the title belongs to)."""
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and part[start:end].lstrip()[:1].isupper():
            before_start, text_end = joined[-1]
            while text_end > before_start and part[text_end - 1].isspace():
                text_end -= 1
            # Six characters hold any title and the character before it ("xCapt." is no title).
            if part[text_end - 1 : text_end] == "." and _TITLE_AT_END.search(part[max(before_start, text_end - 6) : text_end]):
                joined[-1] = (before_start, end)
                continue
        joined.append((start, end))
    return joined


def _cut(spans: list[tuple[int, int]], cuts: list[int]) -> list[tuple[int, int]]:
    """`spans` (in order) split at every offset in `cuts` that falls inside one."""
    cuts = sorted(cuts)
    pieces: list[tuple[int, int]] = []
    at = 0
    for start, end in spans:
        while at < len(cuts) and cuts[at] <= start:
            at += 1
        while at < len(cuts) and cuts[at] < end:
            pieces.append((start, cuts[at]))
            start = cuts[at]
            at += 1
        pieces.append((start, end))
    return pieces


def segment(text: str) -> list[Sentence]:
    """Split `text` into sentences `s1, s2, ...`; `text[s.start:s.end] == s.text` for each.

    Ingest's checks and the pipeline both segment the same text; the result is cached (sentences
    are frozen, and each caller gets its own list).
    """
    return list(_segment_cached(text))


@lru_cache(maxsize=16)
def _segment_cached(text: str) -> tuple[Sentence, ...]:
    """Split `text` into sentences (see `segment`).

    Lines are split first (a sentence never crosses a line break: news pages put captions,
    headings and pull quotes on lines of their own), then sentences within each line.
    """
    rows: list[dict[str, object]] = []
    for line in _LINE.finditer(text):
        line_text = line.group()
        bounds = [0, *_glued_ends(line_text), len(line_text)]
        # No end mark for nupunkt to see at a caption's end: its spans are cut there afterwards
        # (a nupunkt call per caption would cost more than the rest of the line).
        unmarked = _unmarked_ends(line_text)
        for part_start, part_end in zip(bounds, bounds[1:], strict=False):
            part = line_text[part_start:part_end]
            offset = line.start() + part_start
            spans = _joined_after_titles(part, nupunkt.sent_spans(part))
            if unmarked:
                spans = _cut(spans, [cut - part_start for cut in unmarked if part_start < cut < part_end])
            for span_start, span_end in spans:
                piece = part[span_start:span_end]
                stripped = piece.strip()  # str.strip drops exactly what str.isspace calls whitespace
                if stripped:
                    start = offset + span_start + len(piece) - len(piece.lstrip())
                    rows.append({"id": f"s{len(rows) + 1}", "start": start, "end": start + len(stripped), "text": stripped})
    return _SENTENCES.validate_python(rows)
