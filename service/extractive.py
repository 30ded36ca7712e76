"""The embedded default summarizer: offline, deterministic extractive ranking with citations."""

from __future__ import annotations

import math
import re
from collections import Counter

from service.schema import Sentence

MODEL_NAME = "extractive-centroid-v1"
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
# A small English stop list: ranking only, so a missing word merely adds a little noise.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own said same says she
    should so some such than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will with would you your
    yours yourself told one two may might must us new like get got""".split()
)
MIN_WORDS = 8
MAX_WORDS = 60


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stop words, no one-letter words)."""
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if len(w) > 1 and w not in STOPWORDS]


def _eligible(sentence: Sentence) -> bool:
    words = sentence.text.split()
    if not (MIN_WORDS <= len(words) <= MAX_WORDS):
        return False
    if sentence.text.rstrip()[-1:] not in ".!?\"'”’)":
        return False  # headings, captions and fragments carry no full statement
    return not sentence.text.endswith("?")


def _similarity(a: Counter[str], b: Counter[str]) -> float:
    shared = sum((a & b).values())
    return shared / math.sqrt(max(1, sum(a.values())) * max(1, sum(b.values())))


def rank_sentences(sentences: list[Sentence]) -> list[tuple[float, Sentence]]:
    """Score every eligible sentence by centrality (shared content words) and position."""
    bags = [Counter(content_words(s.text)) for s in sentences]
    document_frequency: Counter[str] = Counter()
    for bag in bags:
        document_frequency.update(set(bag))
    n = len(sentences)
    idf = {w: math.log(1 + n / df) for w, df in document_frequency.items()}
    centroid: Counter[str] = Counter()
    for bag in bags:
        centroid.update(bag)
    ranked = []
    for position, (sentence, bag) in enumerate(zip(sentences, bags, strict=True)):
        if not _eligible(sentence) or not bag:
            continue
        weight = sum(idf[w] * min(centroid[w] - bag[w], 5) for w in bag) / (len(bag) ** 0.5 * 10)
        lead_bonus = 1.0 + 0.6 * math.exp(-position / max(4.0, n / 8))
        # Direct quotations are colour, not the news: rank them a little lower.
        quote_penalty = 0.8 if sentence.text.lstrip()[:1] in "\"“'‘" else 1.0
        ranked.append((weight * lead_bonus * quote_penalty, sentence))
    ranked.sort(key=lambda item: (-item[0], item[1].start))
    return ranked


def summarize_extractive(sentences: list[Sentence], max_sentences: int) -> list[Sentence]:
    """The top sentences by rank, skipping near-duplicates, returned in article order."""
    chosen: list[Sentence] = []
    chosen_bags: list[Counter[str]] = []
    for _, sentence in rank_sentences(sentences):
        bag = Counter(content_words(sentence.text))
        if any(_similarity(bag, other) > 0.5 for other in chosen_bags):
            continue
        chosen.append(sentence)
        chosen_bags.append(bag)
        if len(chosen) == max_sentences:
            break
    return sorted(chosen, key=lambda s: s.start)
