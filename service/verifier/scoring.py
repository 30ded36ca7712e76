"""Feature values → a support probability, with the weights and threshold shipped in service/data/verifier.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from service.verifier.features import COPIES, FEATURE_NAMES, OVERLAP_TERM

__all__ = ["Regime", "VerifierModel", "adds_clause", "load_model"]

MODEL_FILE = "data/verifier.json"
MODEL_PATH = Path(__file__).parent / MODEL_FILE
_LONGEST_RUN = FEATURE_NAMES.index("longest_run")
_SPAN = FEATURE_NAMES.index("unsupported_span")
_OVERLAP = FEATURE_NAMES.index(OVERLAP_TERM)
# A claim 'copies its evidence' when at least this share of its tokens is one verbatim run of it.
SPAN_VETO_COPIED = COPIES


def adds_clause(values: Sequence[float], span_veto: float) -> bool:
    """The span veto: the claim copies its evidence (a verbatim run of SPAN_VETO_COPIED of its tokens) yet
    adds a run of at least `span_veto` content words the evidence lacks (an invented clause); 0 turns it off."""
    return 0 < span_veto <= values[_SPAN] and values[_LONGEST_RUN] >= SPAN_VETO_COPIED


@dataclass(frozen=True)
class Regime:
    """One logistic regression over FEATURE_NAMES (standardised by its own means and scales)."""

    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()

    def logit(self, values: Sequence[float]) -> float:
        """The regression's log-odds that the claim is supported."""
        z = self.bias
        for i, (w, x) in enumerate(zip(self.weights, values, strict=True)):
            if self.means:
                x = (x - self.means[i]) / self.scales[i]
            z += w * x
        return z

    def to_json(self) -> dict[str, Any]:
        """JSON form: weights, bias, means, scales."""
        return {"weights": list(self.weights), "bias": self.bias, "means": list(self.means),
                "scales": list(self.scales)}


@dataclass(frozen=True)
class VerifierModel:
    """Logistic regressions over FEATURE_NAMES plus the hard checks that veto support.

    Two regimes: a claim whose content words are mostly in the source ('extractive', the main
    weights) and one with more than `regime_cut` of them new to the source ('abstractive', the
    `abstractive` regression), each fitted and thresholded on its own; both biases are shifted so
    that one threshold reads for both. Either regression's log-odds gets `overlap_weight` × the
    claim's clause-by-clause word overlap with the source (features.OVERLAP_TERM), a term chosen by
    the training objective rather than fitted inside the regressions.
    """

    weights: tuple[float, ...]
    bias: float
    threshold: float
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()
    veto: frozenset[str] = frozenset()
    search: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    abstractive: Regime | None = None
    regime_cut: float = 1.0
    regime_feature: str = "novel_in_source"
    regime_below: bool = False  # True: abstractive when the feature is below the cut (e.g. longest_run)
    span_veto: float = 0.0  # in a claim that copies its evidence, this many unsupported content words in a row veto (0: off)
    overlap_weight: float = 0.0  # added to either regression's log-odds × the claim's word overlap with the source

    @cached_property
    def extractive(self) -> Regime:
        """The main regression, for claims mostly made of the source's words."""
        return Regime(self.weights, self.bias, self.means, self.scales)

    def is_abstractive(self, values: Sequence[float]) -> bool:
        """True when the claim's share of words new to the source puts it in the abstractive regime."""
        if self.abstractive is None:
            return False
        value = values[self._regime_column]
        return value < self.regime_cut if self.regime_below else value > self.regime_cut

    @cached_property
    def _regime_column(self) -> int:
        return FEATURE_NAMES.index(self.regime_feature)

    def probability(self, values: Sequence[float]) -> float:
        """The model's probability that the claim is supported, before vetoes."""
        regime = self.abstractive if self.abstractive is not None and self.is_abstractive(values) else self.extractive
        z = regime.logit(values) + self.overlap_weight * values[_OVERLAP]
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def vetoed(self, values: Sequence[float]) -> bool:
        """True when a hard check failed (e.g. a number absent from the evidence), or when a claim that
        otherwise copies its evidence adds a run of words the evidence lacks (an invented clause)."""
        if any(values[i] > 0 for i in self._veto_columns):
            return True
        return adds_clause(values, self.span_veto)

    @cached_property
    def _veto_columns(self) -> tuple[int, ...]:
        return tuple(FEATURE_NAMES.index(name) for name in sorted(self.veto))

    def score(self, values: Sequence[float]) -> float:
        """Support score in [0, 1]: a vetoed claim is pushed below the threshold (keeping its order);
        a claim found word for word inside one evidence sentence scores 1.0."""
        if self.vetoed(values):
            return self.probability(values) * self.threshold * 0.5
        if values[_LONGEST_RUN] >= 1.0:
            return 1.0
        return self.probability(values)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to service/data/verifier.json."""
        return {
            "features": list(FEATURE_NAMES),
            "weights": list(self.weights),
            "bias": self.bias,
            "means": list(self.means),
            "scales": list(self.scales),
            "threshold": self.threshold,
            "veto": sorted(self.veto),
            "search": self.search,
            "regime_feature": self.regime_feature,
            "regime_below": self.regime_below,
            "regime_cut": self.regime_cut,
            "span_veto": self.span_veto,
            "overlap_weight": self.overlap_weight,
            "abstractive": self.abstractive.to_json() if self.abstractive is not None else None,
            "info": self.info,
        }


def model_from_json(raw: dict[str, Any]) -> VerifierModel:
    """Build a model from its JSON form, refusing one trained on a different feature list."""
    if tuple(raw["features"]) != FEATURE_NAMES:
        raise ValueError("verifier weights were trained on a different feature list; retrain them")
    return VerifierModel(
        weights=tuple(float(w) for w in raw["weights"]),
        bias=float(raw["bias"]),
        threshold=float(raw["threshold"]),
        means=tuple(float(m) for m in raw.get("means", ())),
        scales=tuple(float(s) for s in raw.get("scales", ())),
        veto=frozenset(raw.get("veto", ())),
        search={k: int(v) for k, v in raw.get("search", {}).items()},
        info=dict(raw.get("info", {})),
        abstractive=_regime(raw.get("abstractive")),
        regime_cut=float(raw.get("regime_cut", 1.0)),
        regime_feature=str(raw.get("regime_feature", "novel_in_source")),
        regime_below=bool(raw.get("regime_below", False)),
        span_veto=float(raw.get("span_veto", 0.0)),
        overlap_weight=float(raw.get("overlap_weight", 0.0)),
    )


def _regime(raw: dict[str, Any] | None) -> Regime | None:
    if raw is None:
        return None
    return Regime(tuple(float(w) for w in raw["weights"]), float(raw["bias"]),
                  tuple(float(m) for m in raw.get("means", ())), tuple(float(s) for s in raw.get("scales", ())))


@cache
def load_model() -> VerifierModel:
    """The shipped model, loaded once."""
    text = (Path(__file__).parent / MODEL_FILE).read_text(encoding="utf-8")
    return model_from_json(json.loads(text))
