"""Sentences → token-budgeted chunks of whole sentences (pure functions, counted offline)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.core.schema import Sentence

# tiktoken downloads its encodings on first use, which fails offline. len/4 overestimates
# cl100k by ~20% on English news, so budgets computed with it are conservative.
CHARS_PER_TOKEN = 4.0
# Per-line overhead of the "[s12] " prefix and newline in the prompt.
LINE_OVERHEAD_TOKENS = 3


def estimate_tokens(text: str) -> int:
    """A conservative, offline token estimate (chars/4, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def sentence_tokens(sentence: Sentence) -> int:
    """Tokens one sentence costs as a prompt line."""
    return estimate_tokens(sentence.text) + LINE_OVERHEAD_TOKENS


@dataclass(frozen=True)
class Chunk:
    """A run of whole, consecutive sentences that fits the token budget."""

    index: int
    sentences: tuple[Sentence, ...]
    tokens: int

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.sentences]


def chunk_budget(context_window_tokens: int, reserved_tokens: int, chunk_tokens: int = 0) -> int:
    """Tokens of article per chunk: the explicit `chunk_tokens`, else what the context window leaves.

    `reserved_tokens` covers the prompt template and the completion.
    """
    if chunk_tokens > 0:
        return chunk_tokens
    return max(256, context_window_tokens - reserved_tokens)


def chunk_sentences(sentences: list[Sentence], budget: int) -> list[Chunk]:
    """Pack whole sentences, in order, into as few chunks as fit `budget` tokens each.

    A single sentence longer than the budget gets a chunk of its own (it is never split,
    so citations stay whole). When more than one chunk is needed, the sentences are spread
    evenly so that the last chunk is not a sliver.
    """
    if not sentences:
        return []
    if budget <= 0:
        raise ValueError("budget must be positive")
    costs = [sentence_tokens(s) for s in sentences]
    total = sum(costs)
    if total <= budget:
        return [Chunk(0, tuple(sentences), total)]
    # Balance: aim for the fewest chunks, each about total/n tokens.
    n_chunks = math.ceil(total / budget)
    target = min(budget, math.ceil(total / n_chunks))
    chunks: list[Chunk] = []
    current: list[Sentence] = []
    current_tokens = 0
    for sentence, cost in zip(sentences, costs, strict=True):
        if current and (current_tokens + cost > budget or current_tokens >= target):
            chunks.append(Chunk(len(chunks), tuple(current), current_tokens))
            current, current_tokens = [], 0
        current.append(sentence)
        current_tokens += cost
    if current:
        chunks.append(Chunk(len(chunks), tuple(current), current_tokens))
    return chunks


def split_at_anchors(sentences: list[Sentence], anchors: list[int]) -> list[Chunk]:
    """Consecutive parts that together hold every sentence, one part per anchor (an index into `sentences`).

    A part runs from halfway after the previous anchor to halfway before the next one (the first
    starts at the first sentence, the last ends at the last), so each anchor sits inside its own
    part and no sentence is left out or shown twice.
    """
    points = sorted(set(anchors))
    if not sentences or not points:
        return []
    if points[0] < 0 or points[-1] >= len(sentences):
        raise ValueError("an anchor is not an index into sentences")
    bounds = [0, *((a + b) // 2 + 1 for a, b in zip(points, points[1:], strict=False)), len(sentences)]
    parts = []
    for index, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        members = tuple(sentences[start:end])
        parts.append(Chunk(index, members, sum(sentence_tokens(s) for s in members)))
    return parts
