"""Scoring: the two-regime switch, the word-overlap term, the copied-claim span veto, and the JSON round trip."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from service.verifier.features import FEATURE_NAMES
from service.verifier.scoring import Regime, VerifierModel, model_from_json

N = len(FEATURE_NAMES)
RUN, SPAN, RECALL = (FEATURE_NAMES.index(n) for n in ("longest_run", "unsupported_span", "recall"))


def values(**named: float) -> list[float]:
    out = [0.0] * N
    for name, value in named.items():
        out[FEATURE_NAMES.index(name)] = value
    return out


def two_regimes() -> VerifierModel:
    weights = [0.0] * N
    weights[RECALL] = 4.0
    # The abstractive regression ignores recall and always says 'no'.
    return VerifierModel(tuple(weights), -2.0, 0.5, abstractive=Regime((0.0,) * N, -5.0), regime_cut=0.3,
                         regime_feature="longest_run", regime_below=True, span_veto=3.0)


@pytest.mark.parametrize(("run", "abstractive"), [(0.1, True), (0.29, True), (0.3, False), (0.9, False)])
def test_the_regime_follows_the_cut(run: float, abstractive: bool) -> None:
    model = two_regimes()
    v = values(recall=1.0, longest_run=run)
    assert model.is_abstractive(v) is abstractive
    assert (model.probability(v) < 0.01) is abstractive


@pytest.mark.parametrize(("run", "span", "vetoed"), [(0.5, 3, True), (0.5, 2, False), (0.2, 4, False), (0.35, 3, True)])
def test_an_invented_span_vetoes_only_a_claim_that_copies_its_evidence(run: float, span: float, vetoed: bool) -> None:
    assert two_regimes().vetoed(values(recall=1.0, longest_run=run, unsupported_span=span)) is vetoed


def test_the_overlap_term_adds_its_weight_times_the_overlap_to_either_regression() -> None:
    model = replace(two_regimes(), overlap_weight=2.0)
    plain = two_regimes()
    for v in (values(recall=0.5, longest_run=0.9), values(recall=0.5, longest_run=0.1)):
        low = dict(zip(FEATURE_NAMES, v, strict=True)) | {"clause_overlap": 0.25}
        high = low | {"clause_overlap": 1.0}
        for regime_values in (low, high):
            row = [regime_values[n] for n in FEATURE_NAMES]
            expected = plain.probability(row)
            z = math.log(expected / (1 - expected)) + 2.0 * regime_values["clause_overlap"]
            assert model.probability(row) == pytest.approx(1 / (1 + math.exp(-z)))
        assert model.probability([high[n] for n in FEATURE_NAMES]) > model.probability([low[n] for n in FEATURE_NAMES])


def test_json_round_trip_keeps_both_regimes() -> None:
    model = replace(two_regimes(), overlap_weight=1.5)
    again = model_from_json(model.to_json())
    v = values(recall=0.7, longest_run=0.2)
    assert again.to_json() == model.to_json() and again.score(v) == model.score(v)
