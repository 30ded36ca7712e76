"""Pasted news-page text → the article's paragraphs and headline, with page furniture removed.

News pages copied as text carry navigation, player widgets, captions, promos, pull quotes and
author bios. None of that may become summary material, so every line is judged in three passes:

1. furniture patterns, line by line: site UI labels, video timers, captions and photo credits,
   promos and newsletter boxes, cookie banners, copyright, bylines, and lines printed twice;
2. hard-wrapped prose lines that survived are joined back into paragraphs;
3. structure: the headline (a Title-Case line with no sentence-final punctuation near the top),
   headings and labels (short lines that end no sentence), dash-led attribution lines, pull
   quotes (a line whose content words are mostly inside a longer nearby line) and author bios.

`explain_lines` returns every decision with its reason, so a surprising cut can be traced.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, islice

from service.pipeline.segment import segment

__all__ = ["LineDecision", "clean_text", "explain_lines"]

# Closing marks that may follow a sentence's final punctuation: `... ready for.”`
_CLOSERS = "\"'”’»)]}›"
_SENTENCE_END = ".!?…。！？؟।"
# Short lines that end no sentence are headings, labels or video titles; real paragraphs this
# short without final punctuation are rare, and keeping a label costs more than losing one.
_HEADING_MAX_WORDS = 12
_TITLE_MAX_WORDS = 25
_TITLE_SEARCH_LINES = 6
# A pull quote repeats a body paragraph; compare only with paragraphs this close (bounded cost).
_PULL_QUOTE_WINDOW = 30
_PULL_QUOTE_MIN_WORDS = 6
_PULL_QUOTE_CONTAINED = 0.8
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A furniture rule removes a whole line unless the line holds, besides the sentences it matches, at
# least this many other sentences and words: a one-paragraph article ending "CNN's X contributed to
# this report." loses that sentence, not the article (it used to lose everything: 10 of the 896 dev
# sources came out empty), while a caption ("Engineers walk on the deck. (Photo: Reuters)") or a
# newsletter box of two sentences still goes whole.
_BODY_MIN_SENTENCES = 2
_BODY_MIN_WORDS = 20
# An author bio is a sentence or two; a longer line that starts like one is the article.
_BIO_MAX_WORDS = 60

_UI_LABELS = frozenset(
    label.strip()
    for label in """
    accessibility links|skip to main content|skip to content|skip navigation|breaking news|please wait
    |loading|no media source currently available|advertisement|advertisements|ad|sponsored
    |sponsored content|paid content|share|share this|share this article|share this story
    |share this page|share article|tweet|email|print|copy link|link copied|comments|view comments
    |show comments|read more|continue reading|show more|load more|see more|back to top|menu
    |search|close|open menu|main menu|navigation|play|play video|watch|watch video|listen
    |listen to this article|pause|mute|unmute|full screen|image|photo|video|audio|gallery|enlarge
    |toggle caption|hide caption|caption|most read|most popular|trending|related|related articles
    |related stories|related content|more stories|recommended|you may also like|topics|tags
    |newsletter|subscribe|subscribe now|sign in|log in|register|accept|accept all|reject all
    |manage cookies|cookie settings|got it|home|live|follow|follow us|top stories|latest news
    """.replace("\n", "").split("|")
)

_MONTHS = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\b"
)
_DAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|sun)\b"
_TIME = r"(?:\d{1,2}:)?\d{1,2}:\d{2}"
_NAME = r"[A-Z][\w'’.-]+(?:\s+[A-Z][\w'’.-]+){0,3}"
_AGENCIES = r"AP|AFP|Reuters|REUTERS|Getty Images|EPA|Bloomberg|Shutterstock|Alamy|PA"


@dataclass(frozen=True)
class _Rule:
    """A furniture pattern; `needs` are cheap substrings (casefolded) without which it cannot match.

    `start`, when given, returns the earliest index a match can start at (None: no match is
    possible); the pattern is then searched from there, so a long paragraph is not scanned whole.
    """

    reason: str
    pattern: re.Pattern[str]
    needs: tuple[str, ...] = ()
    start: Callable[[str], int | None] | None = None


def _before_last_colon(line: str) -> int | None:
    """Start bound for `keyword\\s*:\\s*credit{2,60}$` patterns: the colon matched is the line's last
    one (nothing after it may be a colon), and the keyword before it is at most 10 characters long."""
    colon = line.rfind(":")
    # What follows that colon is spaces and at most 60 credit characters (and a final "\n" for $):
    # a long paragraph whose last colon is early in it is ruled out without scanning it.
    if colon < 0 or len(line[colon + 1 :].strip()) > 60:
        return None
    while colon > 0 and line[colon - 1].isspace():
        colon -= 1
    return max(0, colon - len("photograph"))


def _last_parenthesis(line: str) -> int | None:
    """Start of `\\( [^()]* \\)\\s*\\.?$` patterns: the ")" matched is the line's last one (only spaces
    and a full stop may follow it) and the "(" is the last one before it (none may come between)."""
    close = line.rfind(")")
    if close < 0 or line[close + 1 :].strip() not in ("", "."):
        return None
    opening = line.rfind("(", 0, close)
    return None if opening < 0 else opening


def _last_slash_or_bar(line: str) -> int | None:
    """Start of `[/|]\\s*agency\\s*$` patterns: no agency name holds a "/" or "|", so the one matched
    is the line's last."""
    mark = max(line.rfind("/"), line.rfind("|"))
    return None if mark < 0 else mark


def _before_last_slash(line: str) -> int | None:
    """Start bound for `AGENCY/Name$` patterns: the name may hold no "/", so the slash matched is the
    line's last, and the agency before it is at most 7 characters long ("REUTERS")."""
    slash = line.rfind("/")
    return None if slash < 0 else max(0, slash - len("REUTERS"))


# A line matching any rule is page furniture, whatever else it says. Unanchored patterns carry
# `needs`: scanning every prose line with them is most of clean_text's time otherwise.
_FURNITURE: list[_Rule] = [
    _Rule("video timer", re.compile(rf"^{_TIME}(?:\s+{_TIME})*$")),
    _Rule("media label", re.compile(r"^\d+\s*x\s*\d+\s+(?:image|photo|video)$", re.I)),
    _Rule("media label", re.compile(r"^(?:image|photo|picture|slide|video)\s+\d+\s+(?:of|/)\s+\d+$", re.I)),
    _Rule("media label", re.compile(r"^\d+\s+min(?:ute)?s?\s+(?:read|watch|listen)$", re.I)),
    _Rule(
        "caption",
        re.compile(
            r"\([^()]*\b(?:photo|photograph|image|picture|file|illustration|graphic|screenshot"
            r"|screengrab|video still)\b[^()]*\)\s*\.?$",
            re.I,
        ),
        ("photo", "image", "picture", "file", "illustration", "graphic", "screen", "video still"),
        _last_parenthesis,
    ),
    _Rule("caption", re.compile(rf"\((?:{_AGENCIES})\b[^()]*\)\s*\.?$"), (")",), _last_parenthesis),
    _Rule("caption", re.compile(r"^(?:photo|image|picture|caption|photograph)s?(?:\s+credit)?\s*:", re.I)),
    _Rule(
        "caption",
        re.compile(r"\b(?:photograph|photo|image|picture|credit)\s*:\s*[\w .,'’&/-]{2,60}$", re.I),
        ("photo", "image", "picture", "credit"),
        _before_last_colon,
    ),
    _Rule("caption", re.compile(rf"(?:/|\|)\s*(?:{_AGENCIES})\s*$"), ("/", "|"), _last_slash_or_bar),
    _Rule("caption", re.compile(r"\b(?:REUTERS|AFP|AP|EPA)/[A-Z][\w .-]+$"), ("/",), _before_last_slash),
    _Rule("copyright", re.compile(r"^(?:©|\(c\)|copyright)\s*(?:©\s*)?(?:\d{4}|by\b)", re.I)),
    _Rule("copyright", re.compile(r"\ball rights reserved\b", re.I), ("rights reserved",)),
    _Rule(
        "cookie banner",
        re.compile(
            r"\b(?:we|this (?:web)?site|our (?:web)?site|our partners)\s+uses?\s+cookies\b"
            r"|\b(?:accept|reject|manage)\s+(?:all\s+)?cookies\b|\bcookie\s+(?:settings|preferences|consent)\b",
            re.I,
        ),
        ("cookie",),
    ),
    _Rule(
        "promo",
        re.compile(r"\b(?:sign up|subscribe)\b.{0,60}\b(?:newsletter|inbox|alerts|podcast)\b", re.I),
        ("sign up", "subscribe"),
    ),
    _Rule("promo", re.compile(r"^(?:sign up|subscribe|register now|log in|sign in)\b", re.I)),
    _Rule(
        "promo",
        re.compile(
            r"^(?:read|follow|explore|see|get|watch|listen to|catch up on|keep up with|stay up to date with)"
            r"\s+(?:all\s+)?(?:of\s+)?(?:our|the latest)\b",
            re.I,
        ),
    ),
    _Rule("promo", re.compile(r"^(?:click|tap) here\b|^follow (?:us|him|her|them|@)|^download (?:our|the)\b", re.I)),
    _Rule(
        "promo",
        re.compile(r"\bbelow (?:this )?advertisement$|^advertisement\b(?:\W+\w+){0,5}\W*$", re.I),
        ("advertisement",),
    ),
    _Rule(
        "related link",
        re.compile(
            r"^(?:related|read more|read also|also read|see also|more|recommended|related coverage"
            r"|related stories|watch|listen|more on this story|more from [\w ]{1,30})\s*:",
            re.I,
        ),
    ),
    _Rule("share bar", re.compile(r"^(?:share (?:on|via) \w+\s*)+$", re.I)),
    # "and" between names needs spaces round it: a name's own characters include "and", so
    # `\s*and\s*` let "XxandXxand..." split 2^k ways (catastrophic backtracking on one line).
    _Rule("byline", re.compile(rf"^[Bb][Yy]\s+{_NAME}(?:\s*[,&]\s*{_NAME}|\s+and\s+{_NAME})*\s*$")),
    _Rule(
        "timestamp",
        re.compile(
            r"^(?:published|updated|posted|last updated|first published|modified)\s*(?::\s*)?(?:on\s+|at\s+)?"
            rf"(?:\d|{_MONTHS}|{_DAYS}|today|yesterday|an? (?:hour|minute|day)s? ago)",
            re.I,
        ),
    ),
    _Rule("credit line", re.compile(r"^(?:additional )?reporting by\b|^(?:writing|editing) by\b", re.I)),
    _Rule(
        "credit line",
        re.compile(r"\bcontributed (?:reporting|to this (?:report|article|story))\.?$", re.I),
        ("contributed",),
    ),
]


# Every rule's `needs`, each searched for once per line rather than once per rule.
_ALL_NEEDS = tuple(dict.fromkeys(need for rule in _FURNITURE for need in rule.needs))

_ATTRIBUTION = re.compile(r"^(?:-{1,2}|—|–|―)\s*\S")
_BIO = re.compile(
    rf"^{_NAME}\s+(?:is|was|has been|covers|writes|reports)\b.{{0,120}}?"
    r"\b(?:journalist|reporter|correspondent|writer|editor|contributor|columnist|author|producer"
    r"|photographer|freelancer|bureau chief)\b"
)
_BULLETS = "•·▪►▶◦‣⁃◆■"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
# Tabs and Unicode spaces: each run of them and " " becomes one " ".
_ODD_SPACES = "\t\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"
# Two spaces, then any more. Starting with a two-space literal, it lets the regex engine jump from
# one "  " to the next instead of trying a match at every single space (as " {2,}" would).
_SPACE_RUN = re.compile("   *")
_PUNCTUATION = re.compile(r"[^\w\s]")
_LABEL_MAX_CHARS = 60  # the longest site label, "no media source currently available", is 35
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_PLAIN_WORD = re.compile(r"\w+(?:'\w+)*")  # _WORD, on text without "_" and "’" (and faster)
# Bytes table: every ASCII character that cannot be in a _PLAIN_WORD match becomes a space. "_" is
# one of them, as in _WORD. UTF-8 bytes of other characters are all >= 0x80 and are kept.
_ASCII_NON_WORD_TO_SPACE = bytes(
    byte if byte >= 0x80 or chr(byte).isalnum() or chr(byte) == "'" else ord(" ") for byte in range(256)
)
_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for from with as is are was were be been being it its
    this that these those he she they we you i his her their our your my me him them us not no so than
    then there here what which who whom whose when where why how all any each some such also just very
    into over under about after before more most other only own same too can will would should could
    has have had do does did said says say""".split()
)


@dataclass(frozen=True)
class LineDecision:
    """One input line (or hard-wrapped lines joined) and what clean_text did with it."""

    text: str
    kind: str  # "body", "title", or the reason it was dropped
    block: int  # index of the blank-line-separated block it came from

    @property
    def kept(self) -> bool:
        """True when the line is article body text."""
        return self.kind == "body"


def clean_text(raw: str) -> tuple[str, str | None]:
    """Return (article paragraphs joined by blank lines, headline or None) from pasted page text."""
    decisions = explain_lines(raw)
    title = next((d.text for d in decisions if d.kind == "title"), None)
    body = "\n\n".join(d.text for d in decisions if d.kept)
    return body, title


def explain_lines(raw: str) -> list[LineDecision]:
    """Judge every line of `raw`: kept as body, taken as the title, or dropped with a reason."""
    lines = _normalised_lines(raw)
    # Casefolded once: the furniture pass and the pull-quote words both read it.
    folds = {line: line.casefold() for line, _ in lines}
    decisions = _furniture_pass(lines, folds)
    decisions = _join_wrapped(decisions)
    return _structure_pass(decisions, folds)


def _normalised_lines(raw: str) -> list[tuple[str, int]]:
    """Non-empty lines with their block number; controls removed, spaces and bullets tidied."""
    text = unicodedata.normalize("NFC", raw.replace("\r\n", "\n").replace("\r", "\n"))
    # No step below touches "\n", so one pass over the whole text equals one per line.
    # Each run of spaces becomes one " ": odd spaces turn into " " (str.replace is far faster than a
    # regex over the page), controls go, then runs of " " shrink to one. The first two steps change
    # disjoint sets of characters one by one, so their order does not matter.
    for space in _ODD_SPACES:
        if space in text:
            text = text.replace(space, " ")
    # Every _CONTROL character is unprintable, and most pages have no unprintable one but "\n".
    if not text.replace("\n", " ").isprintable():
        text = _CONTROL.sub("", text)
    if "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    lines: list[tuple[str, int]] = []
    block = 0
    for line in text.split("\n"):
        line = line.strip().lstrip(_BULLETS).strip()
        if line:
            lines.append((line, block))
        else:
            block += 1
    return lines


def _label_key(line: str) -> str:
    return " ".join(_PUNCTUATION.sub(" ", line).casefold().split())


def _furniture_pass(lines: list[tuple[str, int]], folds: dict[str, str]) -> list[LineDecision]:
    # A line's key is its casefolded text with single spaces. Lines from _normalised_lines hold no
    # whitespace but single inner spaces and casefold makes none, so the casefolded line is its key.
    keys = [folds[line] for line, _ in lines]
    counts = Counter(keys)
    # A page pasted twice repeats most of its paragraphs: keep the first copy of each then.
    prose = [key for key in keys if key.count(" ") >= 7]  # 8+ words (keys are single-spaced)
    pasted_twice = bool(prose) and sum(counts[key] > 1 for key in prose) > len(prose) / 2
    seen: set[str] = set()
    decisions = []
    for (line, block), key in zip(lines, keys, strict=True):
        repeated = counts[key] > 1 and (not pasted_twice or key in seen)
        seen.add(key)
        if (len(line) <= _LABEL_MAX_CHARS and _label_key(line) in _UI_LABELS) or not _WORD.search(line):
            kind = "site label"
        elif repeated:
            # A line printed twice is a caption or widget echo; neither copy is article text.
            kind = "repeated line"
        else:
            kind = _furniture_reason(line, key)
            if kind != "body":
                decisions.extend(_bounded_removal(line, kind, block))
                continue
        decisions.append(LineDecision(line, kind, block))
    return decisions


def _bounded_removal(line: str, kind: str, block: int) -> list[LineDecision]:
    """What a furniture rule that matched `line` removes: the sentences it matches, when the rest of the
    line is article text (see `_BODY_MIN_WORDS`); else the whole line, as `kind`."""
    whole = [LineDecision(line, kind, block)]
    if not _has_words(line, _BODY_MIN_WORDS + 1):
        return whole
    sentences = segment(line)
    if len(sentences) <= _BODY_MIN_SENTENCES:
        return whole
    reasons = [_furniture_reason(s.text, s.text.casefold()) for s in sentences]
    body = [s.text for s, reason in zip(sentences, reasons, strict=True) if reason == "body"]
    if len(body) < _BODY_MIN_SENTENCES or sum(len(_words(text)) for text in body) < _BODY_MIN_WORDS:
        return whole
    # Runs of sentences with the same verdict, cut from the line as written (its spacing kept).
    pieces: list[LineDecision] = []
    run_start = 0
    for index, sentence in enumerate(sentences):
        last = index + 1 == len(sentences)
        if last or reasons[index + 1] != reasons[index]:
            pieces.append(LineDecision(line[sentences[run_start].start : sentence.end], reasons[index], block))
            run_start = index + 1
    return pieces


def _furniture_reason(line: str, folded: str) -> str:
    """The reason of the first furniture rule that `line` matches, or "body".

    A rule with `needs` applies only to lines holding one of them (cheap substring tests that spare
    most prose lines the rule's regex)."""
    present = {need for need in _ALL_NEEDS if need in folded}
    for rule in _FURNITURE:
        if (not rule.needs or not present.isdisjoint(rule.needs)) and _search(rule, line):
            return rule.reason
    return "body"


def _search(rule: _Rule, line: str) -> bool:
    """Whether the rule's pattern occurs in `line` (its `needs` aside)."""
    if rule.start is None:
        return rule.pattern.search(line) is not None
    # search(line, pos) still sees the characters before pos, so \b and lookbehinds are unchanged.
    start = rule.start(line)
    return start is not None and rule.pattern.search(line, start) is not None


def _ends_sentence(line: str) -> bool:
    stripped = line.rstrip(_CLOSERS + " ")
    return bool(stripped) and stripped[-1] in _SENTENCE_END


def _words(line: str) -> list[str]:
    return _WORD.findall(line)


def _has_words(line: str, n: int) -> bool:
    """len(_words(line)) >= n, without reading a long paragraph to its end."""
    return sum(1 for _ in islice(_WORD.finditer(line), n)) >= n


def _join_wrapped(decisions: list[LineDecision]) -> list[LineDecision]:
    """Join a kept line onto the previous one when the text was hard-wrapped mid-sentence."""
    # Each paragraph's lines are gathered in a list and joined once: joining onto the growing text
    # line by line copied it every time (quadratic: 34 s for a 1.9 MB body of short lines).
    joined: list[LineDecision] = []
    parts: list[list[str]] = []  # parts[i]: the lines joined into joined[i]
    length = 0  # len(" ".join(parts[-1]))
    for decision in decisions:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and previous.kept
            and decision.kept
            and previous.block == decision.block
            # The joined text ends as its last line does; only the length test needs the whole.
            and not _ends_sentence(parts[-1][-1])
            # A lower-case start means a sentence continues; a long line ending in a comma too.
            and (
                decision.text[0].islower()
                or (length >= 40 and parts[-1][-1][-1] in ",;")
            )
        ):
            parts[-1].append(decision.text)
            length += 1 + len(decision.text)
        else:
            joined.append(decision)
            parts.append([decision.text])
            length = len(decision.text)
    return [
        decision if len(lines) == 1 else LineDecision(" ".join(lines), "body", decision.block)
        for decision, lines in zip(joined, parts, strict=True)
    ]


def _looks_like_headline(line: str) -> bool:
    # Word count checked first without reading a paragraph to its end: most lines are too long.
    if _has_words(line, _TITLE_MAX_WORDS + 1) or _ends_sentence(line):
        return False
    words = _words(line)
    if len(words) < 3:
        return False
    significant = [w for w in words if len(w) >= 4 and w[0].isalpha()]
    capitalised = [w for w in significant if w[0].isupper()]
    return len(significant) >= 2 and len(capitalised) >= 0.75 * len(significant)


def _find_title(decisions: list[LineDecision]) -> int | None:
    """Index of the headline: the first Title-Case line without final punctuation near the top."""
    candidates: list[int] = []
    for index, decision in enumerate(decisions):
        if not decision.kept:
            continue
        if _ends_sentence(decision.text) and _has_words(decision.text, 8):
            break  # the article body has started
        candidates.append(index)
        if len(candidates) >= _TITLE_SEARCH_LINES:
            break
    for index in candidates:
        if _looks_like_headline(decisions[index].text):
            return index
    # Sentence-case headlines ("Putin has no good options") are common too.
    for index in candidates:
        text = decisions[index].text
        if _has_words(text, 4) and not _has_words(text, _TITLE_MAX_WORDS + 1) and not _ends_sentence(text):
            return index
    return None


def _content_words(folded: str) -> set[str]:
    """The distinct words of casefolded text (as _WORD finds them, "’" read as "'") that are not
    stopwords and have 3+ characters."""
    folded = folded.replace("’", "'")
    words: set[str] = set()
    # A regex pass over every paragraph was most of clean_text's time on long pages. Splitting on
    # ASCII non-word characters (a bytes table) gives the same words for the chunks that are all
    # letters and digits; the others (with "'" or non-ASCII punctuation) are few and go through the
    # pattern. Its matches never span a separator, so it finds in a chunk what it finds there in
    # the whole line.
    spaced = folded.encode("utf-8", "surrogatepass").translate(_ASCII_NON_WORD_TO_SPACE)
    for chunk in set(spaced.decode("utf-8", "surrogatepass").split()):
        if len(chunk) < 3:
            continue  # its words are no longer than it
        if chunk.isalnum():
            words.add(chunk)
        else:
            words.update(word for word in _PLAIN_WORD.findall(chunk) if len(word) >= 3)
    words -= _STOPWORDS
    return words


def _structure_pass(decisions: list[LineDecision], folds: dict[str, str]) -> list[LineDecision]:
    """Take the title, then drop headings, attribution lines, pull quotes and author bios.

    `folds` has the casefolded text of the lines before _join_wrapped joined any.
    """
    result = list(decisions)
    title_index = _find_title(result)
    if title_index is not None:
        result[title_index] = LineDecision(result[title_index].text, "title", result[title_index].block)

    for index, decision in enumerate(result):
        if not decision.kept or _ends_sentence(decision.text):
            continue  # both rules below are for lines that end no sentence
        short = not _has_words(decision.text, _HEADING_MAX_WORDS)
        if _ATTRIBUTION.match(decision.text) and not _has_words(decision.text, 9):
            result[index] = LineDecision(decision.text, "attribution line", decision.block)
        elif short:
            result[index] = LineDecision(decision.text, "heading or label", decision.block)

    _drop_pull_quotes(result, folds)
    _drop_author_bio(result)
    return result


def _drop_pull_quotes(result: list[LineDecision], folds: dict[str, str]) -> None:
    """Drop a line whose content words mostly appear in one longer body line nearby."""
    kept = [i for i, d in enumerate(result) if d.kept]
    texts = [result[i].text for i in kept]
    # Lines that _join_wrapped joined are the only ones not casefolded yet.
    words = [_content_words(folds[text] if text in folds else text.casefold()) for text in texts]
    # A pull quote repeats its source, figures included: lines that differ only in their numbers
    # (district-by-district reports, results) are distinct facts, not quotes of each other.
    numbers: dict[int, set[str]] = {}  # filled on demand: most lines are never compared

    def numbers_of(position: int) -> set[str]:
        if position not in numbers:
            numbers[position] = set(_NUMBER.findall(result[kept[position]].text))
        return numbers[position]

    frequency = Counter(chain.from_iterable(words))  # word -> how many kept lines hold it
    unique = {word for word, count in frequency.items() if count == 1}
    postings: dict[str, list[int]] | None = None  # built if needed (most pages do not), shared words only
    drop: list[int] = []
    for position, own in enumerate(words):
        if len(own) < _PULL_QUOTE_MIN_WORDS:
            continue
        # A container holds >= 80% of these words, so it holds one of the (missing + 1) rarest:
        # only lines sharing one of those need comparing, which keeps long pages fast.
        missing = len(own) - math.ceil(_PULL_QUOTE_CONTAINED * len(own))
        if len(own & unique) > missing:
            # The rarest are then words no other line holds: no container. This settles most
            # paragraphs of a long page before the costlier search below.
            continue
        if postings is None:
            postings = _postings([own - unique for own in words])
        # (Which words win a tie does not matter: any missing + 1 of them would do.)
        rarest = sorted(own, key=frequency.__getitem__)[: missing + 1]
        low, high = position - _PULL_QUOTE_WINDOW, position + _PULL_QUOTE_WINDOW
        candidates = {
            other
            # A word in no other line (no postings) adds no candidate: a line never contains itself.
            for positions in (postings.get(word, ()) for word in rarest)
            for other in positions[bisect_left(positions, low) : bisect_right(positions, high)]
        }
        own_length = len(result[kept[position]].text)
        for other in candidates:
            if (
                len(result[kept[other]].text) > own_length
                and len(own & words[other]) >= _PULL_QUOTE_CONTAINED * len(own)
                and numbers_of(position) <= numbers_of(other)
            ):
                drop.append(kept[position])
                break
    for index in drop:
        result[index] = LineDecision(result[index].text, "pull quote", result[index].block)


def _postings(words: list[set[str]]) -> dict[str, list[int]]:
    """Word -> positions in `words` of the sets holding it, ascending."""
    postings: dict[str, list[int]] = {}
    for position, own in enumerate(words):
        for word in own:
            postings.setdefault(word, []).append(position)
    return postings


def _drop_author_bio(result: list[LineDecision]) -> None:
    """Drop 'Name is a ... journalist' lines at the end of the page or right after a name line."""
    kept = [i for i, d in enumerate(result) if d.kept]
    tail = set(kept[-3:])
    for index in kept:
        previous = result[index - 1] if index > 0 else None
        after_name_line = (
            previous is not None and previous.kind == "heading or label" and bool(re.fullmatch(_NAME, previous.text))
        )
        text = result[index].text
        if (index in tail or after_name_line) and not _has_words(text, _BIO_MAX_WORDS + 1) and _BIO.search(text):
            result[index] = LineDecision(result[index].text, "author bio", result[index].block)
