"""Feature values → a support probability, with the weights and threshold shipped in service/data/verifier.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from service.verifier.features import FEATURE_NAMES

__all__ = ["VerifierModel", "load_model"]

MODEL_FILE = "data/verifier.json"
MODEL_PATH = Path(__file__).parent / MODEL_FILE
_LONGEST_RUN = FEATURE_NAMES.index("longest_run")


@dataclass(frozen=True)
class VerifierModel:
    """A logistic regression over FEATURE_NAMES plus the hard checks that veto support."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()
    veto: frozenset[str] = frozenset()
    search: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def probability(self, values: Sequence[float]) -> float:
        """The model's probability that the claim is supported, before vetoes."""
        z = self.bias
        for i, (w, x) in enumerate(zip(self.weights, values, strict=True)):
            if self.means:
                x = (x - self.means[i]) / self.scales[i]
            z += w * x
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def vetoed(self, values: Sequence[float]) -> bool:
        """True when a hard check failed (e.g. a number absent from the evidence)."""
        return any(values[FEATURE_NAMES.index(name)] > 0 for name in self.veto)

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
    )


@cache
def load_model() -> VerifierModel:
    """The shipped model, loaded once."""
    text = (Path(__file__).parent / MODEL_FILE).read_text(encoding="utf-8")
    return model_from_json(json.loads(text))
