"""Meaning-change faults for the verifier: a source sentence rewritten so that it says something else.

Two generators with disjoint word lists and templates: TRAIN is for developing the checks (try a list
change against it as often as you like), TEST is what `python -m bench` scores, and no list in it is
used by the unit tests (tests/verifier/test_meaning.py) or by TRAIN. Never tune on TEST.

Each fault kind is a function (sentence, rng) → changed sentence or None when the sentence offers no
place for that kind; a clean copy is the sentence itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KINDS", "TEST", "TRAIN", "FaultGenerator", "make_faults"]


@dataclass(frozen=True)
class FaultGenerator:
    """Word lists for every kind; `name` says which generator produced a fault."""

    name: str
    antonyms: tuple[tuple[str, str], ...]
    modals: tuple[tuple[str, str], ...]  # (hedged, asserted): 'could' → 'will'
    dropped_hedges: tuple[str, ...]  # adverbs removed outright
    bounds: tuple[tuple[str, str], ...]  # 'at least' → 'at most'
    scales: tuple[tuple[str, str], ...]  # 'million' → 'billion', attached to a numeral
    currencies: tuple[tuple[str, str], ...]
    units: tuple[tuple[str, str], ...]
    invented: tuple[str, ...]  # clauses appended before the final full stop


TRAIN = FaultGenerator(
    name="train",
    antonyms=(("best", "worst"), ("before", "after"), ("opened", "closed"), ("banned", "allowed"), ("rose", "fell"),
              ("won", "lost"), ("higher", "lower"), ("bought", "sold"), ("increase", "decrease")),
    modals=(("could", "will"), ("is expected to", "will"), ("are expected to", "will"), ("may", "will")),
    dropped_hedges=("allegedly ", "reportedly "),
    bounds=(("at least", "at most"), ("more than", "fewer than"), ("nearly", "more than"), ("over", "under")),
    scales=(("million", "billion"), ("m", "bn")),
    currencies=(("£", "$"), ("$", "€")),
    units=(("miles", "kilometres"), ("per cent", "points")),
    invented=(" and later resigned amid protests over rising costs", " after a secret meeting with foreign bankers"),
)

TEST = FaultGenerator(
    name="test",
    antonyms=(("raised", "lowered"), ("approved", "rejected"), ("accepted", "rejected"), ("largest", "smallest"),
              ("first", "last"), ("earlier", "later"), ("gained", "lost"), ("support", "oppose"), ("strong", "weak"),
              ("victory", "defeat"), ("guilty", "innocent"), ("arrived", "left")),
    modals=(("might", "will"), ("would", "will"), ("is likely to", "will"), ("are likely to", "will"),
            ("plans to", "will"), ("is set to", "has")),
    dropped_hedges=("probably ", "apparently ", "possibly "),
    bounds=(("up to", "at least"), ("almost", "over"), ("about", "more than"), ("under", "above"),
            ("less than", "more than"), ("as many as", "at least")),
    scales=(("billion", "million"), ("thousand", "million"), ("bn", "m")),
    currencies=(("$", "£"), ("£", "€"), ("€", "$")),
    units=(("km", "miles"), ("kilometres", "miles"), ("feet", "metres"), ("years", "months"), ("days", "weeks"),
           ("hours", "minutes"), ("kg", "tonnes")),
    invented=(", prompting an emergency inquiry by parliament", " despite strong objections from local residents",
              ", according to leaked internal documents"),
)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _swap(sentence: str, pairs: tuple[tuple[str, str], ...], rng: random.Random, both_ways: bool = True) -> str | None:
    options = []
    for a, b in pairs:
        options.append((a, b))
        if both_ways:
            options.append((b, a))
    rng.shuffle(options)
    for old, new in options:
        pattern = re.compile(rf"(?<![\w£$€]){re.escape(old)}(?!\w)", re.IGNORECASE if old[0].isalpha() else 0)
        match = pattern.search(sentence)
        if match and old == "may" and match.group() == "May" and match.start() > 0:
            continue  # the month, not the modal
        if match:
            written = match.group()
            replacement = new.capitalize() if written[0].isupper() and new[0].isalpha() else new
            return sentence[: match.start()] + replacement + sentence[match.end() :]
    return None


def _antonym(g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    return _swap(s, g.antonyms, rng)


def _modality(g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    changed = _swap(s, g.modals, rng, both_ways=False)
    if changed is not None:
        return changed
    for hedge in g.dropped_hedges:
        at = s.lower().find(hedge)
        if at >= 0:
            return s[:at] + s[at + len(hedge) :]
    return None


def _bound(g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    pairs = tuple((a, b) for a, b in g.bounds)
    for old, new in rng.sample(pairs, len(pairs)):
        match = re.search(rf"\b{re.escape(old)} (?=[£$€]?\d)", s, re.IGNORECASE)
        if match:
            replacement = new.capitalize() if match.group()[0].isupper() else new
            return s[: match.start()] + replacement + " " + s[match.end() :]
    return None


def _unit(g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    for group in rng.sample([g.scales, g.currencies, g.units], 3):
        for old, new in rng.sample(group, len(group)):
            if old in "£$€":
                pattern = re.compile(rf"{re.escape(old)}(?=\s?\d)")
            else:
                pattern = re.compile(rf"(?<=\d)(\s?){re.escape(old)}\b")
            match = pattern.search(s)
            if match:
                space = match.group(1) if match.groups() else ""
                return s[: match.start()] + space + new + s[match.end() :]
    return None


def _date(_g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    for names in (MONTHS, WEEKDAYS):
        for name in names:
            match = re.search(rf"\b{name}\b", s)
            if match and not (name == "May" and match.start() == 0):
                other = rng.choice([n for n in names if n != name])
                return s[: match.start()] + other + s[match.end() :]
    return None


def _invented(g: FaultGenerator, s: str, rng: random.Random) -> str | None:
    stripped = s.rstrip()
    if not stripped.endswith(".") or stripped.endswith('."'):
        return None
    return stripped[:-1] + rng.choice(g.invented) + "."


KINDS: dict[str, Callable[[FaultGenerator, str, random.Random], str | None]] = {
    "antonym": _antonym,
    "modality": _modality,
    "quantifier": _bound,
    "unit": _unit,
    "date": _date,
    "invented_clause": _invented,
}


def make_faults(sentence: str, generator: FaultGenerator, rng: random.Random) -> dict[str, str]:
    """Every kind that applies to `sentence` → its changed text."""
    out = {}
    for kind, make in KINDS.items():
        changed = make(generator, sentence, rng)
        if changed is not None and changed != sentence:
            out[kind] = changed
    return out
