"""chunk_sentences(): whole sentences, in order, under budget, as few chunks as fit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.schema import Sentence
from service.pipeline.chunking import (
    chunk_budget,
    chunk_sentences,
    estimate_tokens,
    sentence_tokens,
    split_at_anchors,
)
from service.pipeline.segment import segment


def make_sentences(lengths: list[int]) -> list[Sentence]:
    out, start = [], 0
    for i, n in enumerate(lengths, 1):
        out.append(Sentence(id=f"s{i}", start=start, end=start + n, text="x" * n))
        start += n + 1
    return out


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_tokens_rounds_up(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@pytest.mark.parametrize(
    ("window", "reserved", "explicit", "expected"),
    [(128_000, 2_000, 0, 126_000), (8_000, 2_000, 0, 6_000), (8_000, 2_000, 3_000, 3_000), (1_000, 2_000, 0, 256)],
)
def test_chunk_budget_follows_the_context_window(window: int, reserved: int, explicit: int, expected: int) -> None:
    assert chunk_budget(window, reserved, explicit) == expected


def test_an_article_that_fits_is_one_chunk(seed_text: str) -> None:
    sentences = segment(seed_text)
    chunks = chunk_sentences(sentences, 100_000)
    assert len(chunks) == 1 and list(chunks[0].sentences) == sentences


def test_small_budget_splits_evenly_without_a_sliver(seed_text: str) -> None:
    sentences = segment(seed_text)
    total = sum(sentence_tokens(s) for s in sentences)
    chunks = chunk_sentences(sentences, 500)
    assert len(chunks) == math.ceil(total / 500)
    assert min(c.tokens for c in chunks) > 500 / 4


def test_oversized_sentence_gets_its_own_chunk() -> None:
    chunks = chunk_sentences(make_sentences([40, 4000, 40]), 200)
    assert [c.ids for c in chunks] == [["s1"], ["s2"], ["s3"]]


def test_empty_input_and_bad_budget() -> None:
    assert chunk_sentences([], 100) == []
    with pytest.raises(ValueError):
        chunk_sentences(make_sentences([10]), 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=80), st.integers(min_value=50, max_value=5000))
def test_chunks_keep_every_sentence_in_order_under_budget(lengths: list[int], budget: int) -> None:
    sentences = make_sentences(lengths)
    chunks = chunk_sentences(sentences, budget)
    assert [s for c in chunks for s in c.sentences] == sentences
    for chunk in chunks:
        assert chunk.tokens == sum(sentence_tokens(s) for s in chunk.sentences)
        assert chunk.tokens <= budget or len(chunk.sentences) == 1


@pytest.mark.parametrize(
    ("count", "anchors", "parts"),
    [
        (10, [0, 3, 9], [[0, 1], [2, 3, 4, 5, 6], [7, 8, 9]]),  # cut halfway between anchors
        (10, [9, 3, 0], [[0, 1], [2, 3, 4, 5, 6], [7, 8, 9]]),  # any order
        (6, [2, 3], [[0, 1, 2], [3, 4, 5]]),  # neighbours: the earlier keeps the first half
        (5, [2, 2], [[0, 1, 2, 3, 4]]),  # one anchor given twice: one part
        (4, [1], [[0, 1, 2, 3]]),
        (4, [], []),
    ],
)
def test_split_at_anchors_covers_every_sentence_once(count: int, anchors: list[int], parts: list[list[int]]) -> None:
    sentences = make_sentences([40 + i for i in range(count)])
    split = split_at_anchors(sentences, anchors)
    assert [[int(s.id[1:]) - 1 for s in part.sentences] for part in split] == parts
    assert [part.index for part in split] == list(range(len(parts)))
    assert all(part.tokens == sum(sentence_tokens(s) for s in part.sentences) for part in split)
    for anchor in set(anchors):  # each anchor sits in a part of its own
        assert sum(sentences[anchor] in part.sentences for part in split) == 1


@pytest.mark.parametrize("anchors", [[-1], [3], [0, 7]])
def test_split_at_anchors_refuses_an_index_outside(anchors: list[int]) -> None:
    with pytest.raises(ValueError, match="anchor"):
        split_at_anchors(make_sentences([40, 40, 40]), anchors)
