"""The verifier's caches are bounded by size (issue 19: sentence-keyed lru_caches took RSS 99 -> 717 MB
over 60 large requests). Kept apart from test_analysis.py, which is about what analysis finds."""

from __future__ import annotations

import random
import tracemalloc

from service.verifier import analysis

WORDS = "council voted rates water budget mayor river bridge school police court judge election".split()


def _sentence(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(10**6)}" for _ in range(chars // 14))


def test_long_words_are_not_kept_by_the_word_caches() -> None:
    analysis.lemma("warm")
    before = (analysis.lemma.cache_info().currsize, analysis.is_dictionary_word.cache_info().currsize)
    for i in range(2_000):
        word = f"{'x' * 40}{i}"
        assert analysis.lemma(word) and analysis.is_dictionary_word(word) is False
    after = (analysis.lemma.cache_info().currsize, analysis.is_dictionary_word.cache_info().currsize)
    assert after == before


def test_sentence_analyses_are_bounded_by_their_text_size() -> None:
    """Sentences over the budget: the cache's total stays under it and memory stops growing."""
    analysis.analyze.cache_clear()  # type: ignore[attr-defined]
    size = 200_000  # five of them fill the 1M-character budget
    tracemalloc.start()
    try:
        retained = []
        for seed in range(8):  # 8/5 of the budget
            analysis.analyze(_sentence(size, seed))
            retained.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    per_sentence = retained[3] - retained[2]  # what one more cached sentence holds while there is room
    assert per_sentence > 0
    # Past the budget, each new sentence evicts an old one: the last three add (about) nothing.
    assert retained[7] - retained[4] < per_sentence
    assert 5 * size == analysis._ANALYSIS_CACHE_CHARS
    assert analysis.analyze.cache.currsize <= analysis._ANALYSIS_CACHE_CHARS  # type: ignore[attr-defined]
    analysis.analyze.cache_clear()  # type: ignore[attr-defined]
