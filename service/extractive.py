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
MMR_LAMBDA = 0.6
ADJACENT = 2
ADJACENCY_PENALTY = 0.25


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


def rank_sentences(sentences: list[Sentence], title: str | None = None) -> list[tuple[float, Sentence]]:
    """Score every eligible sentence by centrality (shared content words), position and the headline."""
    title_words = set(content_words(title or ""))
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
        lead_bonus = 1.0 + 0.35 * math.exp(-position / max(4.0, n / 8))
        # Direct quotations are colour, not the news: rank them a little lower.
        quote_penalty = 0.8 if sentence.text.lstrip()[:1] in "\"“'‘" else 1.0
        # The headline names the story: sentences that share its words carry it.
        title_bonus = 1.0 + 0.5 * len(title_words & set(bag)) / len(title_words) if title_words else 1.0
        ranked.append((weight * lead_bonus * quote_penalty * title_bonus, sentence))
    ranked.sort(key=lambda item: (-item[0], item[1].start))
    return ranked


def summarize_extractive(sentences: list[Sentence], max_sentences: int, title: str | None = None) -> list[Sentence]:
    """The best sentences by maximal marginal relevance (rank minus overlap with those already chosen),
    returned in article order, so the summary covers the article rather than repeating its lead."""
    ranked = rank_sentences(sentences, title)
    position = {s.id: i for i, s in enumerate(sentences)}
    if not ranked:
        return []
    top = ranked[0][0] or 1.0
    candidates = [(score / top, sentence, Counter(content_words(sentence.text))) for score, sentence in ranked]
    chosen: list[tuple[Sentence, Counter[str]]] = []
    while candidates and len(chosen) < max_sentences:
        best_index, best_value = -1, -math.inf
        for i, (relevance, sentence, bag) in enumerate(candidates):
            redundancy = max((_similarity(bag, other) for _, other in chosen), default=0.0)
            # Neighbours of a chosen sentence usually continue its point: prefer spread.
            if any(abs(position[sentence.id] - position[c.id]) <= ADJACENT for c, _ in chosen):
                redundancy += ADJACENCY_PENALTY
            if redundancy > 0.5 + ADJACENCY_PENALTY:
                continue  # a near-duplicate says nothing new
            value = MMR_LAMBDA * relevance - (1 - MMR_LAMBDA) * redundancy
            if value > best_value:
                best_index, best_value = i, value
        if best_index < 0:
            break
        _, sentence, bag = candidates.pop(best_index)
        chosen.append((sentence, bag))
    return sorted((s for s, _ in chosen), key=lambda s: s.start)
