"""Every regex that reads user text runs in linear time (issue 19: catastrophic backtracking).

Each page-furniture rule, run the way clean_text runs it, and every module-level pattern of the
modules that read an article (or a model's reply about it) meets adversarial lines — a prefix that
lets the pattern start, a pump it can match in many ways, a suffix that makes it fail at the end —
at two sizes, SCALE apart. A pattern whose time grows much faster than its input fails, whichever
module it is in: new patterns in these modules are picked up without editing this file.
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from service.pipeline import boilerplate, extractive, fetch, language, llm, segment
from service.verifier import analysis, features
from tests.growth import Case, pumped_pairs, super_linear

# Prefixes that start the furniture rules and the other patterns; pumps that those patterns can
# match in more than one way (names and "and", spaces, digits and separators, brackets, quotes).
PREFIXES = [
    "", "By ", "BY Xx, ", "advertisement ", "share on x ", "(", "(AP ", "photo: ", "Photo credit: ",
    "REUTERS/", "© ", "published ", "subscribe ", "Related: ", "more from ", "12:34 ", "image 1 of ",
    "- ", "Xx Yy is a ", "we use ", "reporting by ", "read our ", "\u201c", '"', "<meta ", "```",
]
PUMPS = [
    "Xxand", "Xx and ", "Xx, ", "Xx & ", "Xx ", "a", "a ", " ", "1:2", "12:34 ", "1.", "1,", "1,000.",
    "share on x ", "photo ", "(", ")", "<", ">", "|", "'", "\u2019", "A'", "a'a", ".", "-", "/", ":",
    '"', "\u201c", "n't ", "\u00e9", "_", "```", "\n",
]
SUFFIXES = ["!"]
SIZE = 400

LINES = pumped_pairs(PREFIXES, PUMPS, SUFFIXES, SIZE)

# The modules whose patterns see an article's text, a fetched page, or the model's reply about them.
MODULES: list[ModuleType] = [boilerplate, segment, extractive, language, llm, fetch, analysis, features]


def _module_patterns() -> list[tuple[str, re.Pattern[str] | re.Pattern[bytes]]]:
    found = [
        (f"{module.__name__}.{name}", value)
        for module in MODULES
        for name, value in vars(module).items()
        if isinstance(value, re.Pattern)
    ]
    # Patterns kept as source strings and compiled where they are used.
    found.append(("boilerplate._NAME (fullmatch)", re.compile(boilerplate._NAME)))
    return found


def _count_matches(pattern: re.Pattern[str] | re.Pattern[bytes]):
    if isinstance(pattern.pattern, bytes):
        return lambda line: sum(1 for _ in pattern.finditer(line.encode("utf-8")))  # type: ignore[arg-type]
    return lambda line: sum(1 for _ in pattern.finditer(line))  # type: ignore[arg-type]


def test_adversarial_lines_are_long_enough_to_tell_linear_from_quadratic() -> None:
    assert len(LINES) > 500
    assert all(len(large) > 7 * len(small) - 100 for _, small, large in LINES)


@pytest.mark.parametrize("rule", boilerplate._FURNITURE, ids=lambda rule: f"{rule.reason}:{rule.pattern.pattern[:40]}")
def test_every_furniture_rule_runs_in_linear_time(rule: boilerplate._Rule) -> None:
    """The rule as clean_text runs it (its start bound included), with its `needs` ignored."""
    cases = (
        Case(label, lambda line, rule=rule: boilerplate._search(rule, line), small, large)
        for label, small, large in LINES
    )
    assert super_linear(cases) == []


@pytest.mark.parametrize("name,pattern", _module_patterns(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_module_pattern_runs_in_linear_time(name: str, pattern: re.Pattern[str]) -> None:
    """Every match the pattern finds in the line (finditer tries every start: search's worst case)."""
    count = _count_matches(pattern)
    assert super_linear(Case(label, count, small, large) for label, small, large in LINES) == []


def test_the_byline_that_hung_a_worker_is_judged_in_linear_time() -> None:
    """The reported line: 24 blocks took 11 s, 36 never finished (2^k ways to split it)."""
    line = "By " + "Xxand" * 12 + "!"
    large = "By " + "Xxand" * 12 * 8 + "!"
    assert super_linear([Case("byline", boilerplate.explain_lines, line, large)]) == []
    assert boilerplate._furniture_reason("By Jane Doe and John Roe", "by jane doe and john roe") == "byline"
    assert boilerplate._furniture_reason("By Jane Doe, John Roe & Ann Poe", "") == "byline"
    assert boilerplate._furniture_reason("By JaneandJohn", "") == "byline"


def test_joining_wrapped_lines_grows_linearly() -> None:
    """_join_wrapped once copied the growing paragraph for every wrapped line: a 1.9 MB body of short
    lines cost 34 s. Short distinct lines in one block, every one continuing the sentence before."""

    def wrapped(lines: int) -> list[boilerplate.LineDecision]:
        return [boilerplate.LineDecision(f"w{i}", "body", 0) for i in range(lines)]

    small, large = wrapped(16_000), wrapped(128_000)
    assert len(boilerplate._join_wrapped(small)) == 1
    assert boilerplate._join_wrapped(small)[0].text == " ".join(d.text for d in small)
    assert super_linear([Case("one wrapped paragraph", boilerplate._join_wrapped, small, large)]) == []
