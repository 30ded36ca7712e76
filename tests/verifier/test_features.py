"""Features: the claim-level abstractiveness measure that picks the scoring regime."""

from __future__ import annotations

import pytest

from service.verifier.analysis import analyze
from service.verifier.features import FEATURE_NAMES, REGIME_ONLY, SourceVocabulary, compare
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
