"""Benchmark inputs: the seed article, a ~12,000-word long input and single articles from the dev data."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_ARTICLE = ROOT / "seeds" / "belarus-putin-options.txt"
# Dev files only: the held-out split is never read here.
FACTUALITY_DEV = ROOT.parent / "shared" / "data" / "factuality" / "frank_summary_dev.jsonl"
LONG_INPUT_WORDS = 12_000


def dev_data_missing() -> str | None:
    """Why the dev articles cannot be read, or None when they can."""
    if not FACTUALITY_DEV.is_file():
        return f"dev articles not found at {FACTUALITY_DEV} (the long input and fault articles come from there)"
    return None


def seed_text() -> str:
    """The seed article (~1,600 tokens)."""
    return SEED_ARTICLE.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def dev_articles() -> list[str]:
    """Distinct CNN/DM source articles from the FRANK dev file, in a fixed pseudo-random order."""
    by_cluster: dict[str, str] = {}
    with FACTUALITY_DEV.open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if row["dataset"] == "frank-cnndm":  # real articles; the XSum ones are lower-cased tokens
                by_cluster.setdefault(row["doc_cluster"], row["source"].strip())
    ordered = sorted(by_cluster.items(), key=lambda kv: hashlib.sha256(kv[0].encode()).hexdigest())
    return [text for _, text in ordered]


@lru_cache(maxsize=1)
def long_text(words: int = LONG_INPUT_WORDS) -> str:
    """Distinct dev articles, one paragraph each, until `words` words are reached."""
    parts: list[str] = []
    count = 0
    for article in dev_articles():
        parts.append(article)
        count += len(article.split())
        if count >= words:
            break
    return "\n\n".join(parts)


def fault_articles(n: int) -> list[str]:
    """The seed article plus `n - 1` dev articles not used in the long input."""
    used = len(long_text().split("\n\n"))
    return [seed_text(), *dev_articles()[used : used + n - 1]]
