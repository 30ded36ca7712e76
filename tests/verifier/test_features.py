"""Features: the claim-level abstractiveness measure that picks the scoring regime, and clause-by-clause overlap."""

from __future__ import annotations

import pytest

from service.verifier.analysis import analyze
from service.verifier.features import (
    FEATURE_NAMES,
    OVERLAP_TERM,
    REGIME_ONLY,
    SourceVocabulary,
    clause_overlap,
    compare,
)
from service.verifier.scoring import load_model

SOURCE = [
    "The city council voted on Tuesday to close the old bridge for repairs.",
    "Engineers found cracks in two of its steel supports last month.",
]


def novel_bigrams(claim: str) -> float:
    analyses = [analyze(s) for s in SOURCE]
    values = compare(analyze(claim), analyses[:1], SourceVocabulary.of(analyses)).as_dict()
    return values["novel_bigrams"]


@pytest.mark.parametrize(
    ("claim", "low", "high"),
    [
        ("The city council voted on Tuesday to close the old bridge for repairs.", 0.0, 0.0),  # copied
        ("Engineers found cracks in two of its steel supports.", 0.0, 0.0),  # copied from another sentence
        ("Councillors shut a cracked crossing after inspectors raised safety fears.", 0.8, 1.0),  # reworded
    ],
)
def test_novel_bigrams_measures_word_pairs_absent_from_the_whole_source(claim: str, low: float, high: float) -> None:
    assert low <= novel_bigrams(claim) <= high


def test_the_regime_measure_carries_no_weight_and_splits_copied_from_reworded_claims() -> None:
    model = load_model()
    assert set(FEATURE_NAMES) >= REGIME_ONLY and model.regime_feature in REGIME_ONLY
    copied = [0.0] * len(FEATURE_NAMES)
    reworded = list(copied)
    reworded[FEATURE_NAMES.index("novel_bigrams")] = 0.9
    assert not model.is_abstractive(copied) and model.is_abstractive(reworded)


def overlap(claim: str) -> float:
    return clause_overlap(analyze(claim), SourceVocabulary.of([analyze(s) for s in SOURCE]))


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        # copied, and a sentence fused from both source sentences clause by clause: every clause is in one sentence
        ("The city council voted to close the old bridge for repairs.", 1.0),
        ("The council voted to close the old bridge; engineers had found cracks in its steel supports.", 1.0),
        ("The council voted to close the old bridge, after engineers found cracks in its steel supports.", 1.0),
        # spliced: one clause mixing both sentences ("council" and "bridge" from one, "found cracks" from the other)
        ("The council found cracks in the old bridge.", 0.6),
        # words the source lacks
        ("The mayor praised the new tram line.", 0.0),
    ],
)
def test_clause_overlap_takes_each_clause_from_one_source_sentence(claim: str, expected: float) -> None:
    assert overlap(claim) == pytest.approx(expected)


def test_clause_overlap_leaves_names_to_the_name_check() -> None:
    # 'Mayor Jane Smith' is in no source sentence: the name check rejects it, the overlap does not count it.
    assert overlap("The council voted on Tuesday, Mayor Jane Smith said, to close the old bridge.") == 1.0
    assert overlap("The council voted on Tuesday, the mayor said, to close the old bridge.") == pytest.approx(5 / 6)
    assert OVERLAP_TERM in FEATURE_NAMES and OVERLAP_TERM == "clause_overlap"
