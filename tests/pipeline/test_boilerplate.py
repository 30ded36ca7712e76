"""clean_text's bound: a furniture rule removes a line, or the sentences of it that it matches, never the article."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from service.pipeline.boilerplate import clean_text, explain_lines

ROOT = Path(__file__).resolve().parents[2]
FACTUALITY_DIR = Path(os.environ.get("CITESUM_FACTUALITY_DIR", ROOT.parent / "shared" / "data" / "factuality"))

# A one-paragraph article: the whole text on one line, as agencies' feeds and datasets often give it.
ARTICLE = (
    "Rescuers in Nepal pulled a man from the wreckage of a seven-storey hotel on Sunday, five days after "
    "the earthquake. The man, who was trapped under concrete slabs, was flown to a hospital in Kathmandu. "
    "Officials said more than 7,000 people had died across the country and thousands more were missing. "
    "Aid agencies warned that villages in the mountains had not yet been reached."
)

# (name, furniture sentence added to the paragraph, reason explain_lines gives for it)
TAILS = [
    ("credit line", "CNN's Moni Basu and Tim Hume contributed to this report.", "credit line"),
    ("file picture", "Rescue teams at work in Kathmandu (file picture).", "caption"),
    ("newsletter plug", "Sign up to our newsletter to get the top stories in your inbox every morning.", "promo"),
    ("copyright", "©2015 The Hollywood Reporter. All rights reserved.", "copyright"),
]


@pytest.mark.parametrize(("tail", "reason"), [t[1:] for t in TAILS], ids=[t[0] for t in TAILS])
def test_a_one_paragraph_article_loses_only_its_furniture_sentence(tail: str, reason: str) -> None:
    body, _ = clean_text(f"{ARTICLE} {tail}")
    assert body == ARTICLE
    dropped = [d for d in explain_lines(f"{ARTICLE} {tail}") if not d.kept]
    assert [(d.text, d.kind) for d in dropped] == [(tail, reason)]


def test_furniture_in_the_middle_of_a_paragraph_leaves_the_text_around_it() -> None:
    first, second = ARTICLE.split(" The man, ", 1)
    body, _ = clean_text(f"{first} Sign up to our newsletter to get the top stories in your inbox. The man, {second}")
    assert body == f"{first}\n\nThe man, {second}"


@pytest.mark.parametrize("line", [
    "Engineers walk along the closed Harbour Bridge deck in Halvik on Tuesday. (Photo: Reuters)",
    "Sign up for our newsletter. It is free and lands in your inbox every morning before seven.",
    "Jane Okafor and Tom Hale contributed to this report.",
])
def test_a_furniture_line_with_little_else_still_goes_whole(line: str) -> None:
    body, _ = clean_text(f"{ARTICLE}\n\n{line}")
    assert body == ARTICLE


def _dev_sources() -> list[str]:
    sources: dict[str, None] = {}
    for path in sorted(FACTUALITY_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as rows:
            for line in rows:
                sources.setdefault(json.loads(line)["source"], None)
    return list(sources)


@pytest.mark.skipif(not FACTUALITY_DIR.is_dir(), reason=f"factuality dev files not at {FACTUALITY_DIR}")
def test_every_dev_source_keeps_its_body() -> None:
    """All 896 distinct dev sources: cleaning keeps at least 3/4 of each (the least kept is ~0.90;
    10 came out empty before the bound, among them one-paragraph CNN articles ending in a credit line)."""
    sources = _dev_sources()
    assert len(sources) > 800
    lost = []
    for source in sources:
        body, title = clean_text(source)
        if len(body) + len(title or "") < 0.75 * len(source.strip()):
            lost.append(source[:80])
    assert lost == []
