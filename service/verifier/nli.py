"""Entailment probability of a claim given its evidence, from an operator's own ONNX NLI model (the `[nli]` extra).

Off unless `CITESUM_NLI_MODEL_PATH` is set; then onnxruntime and tokenizers are imported here, once, and
nowhere else. Nothing is downloaded: the operator supplies the ONNX file and its `tokenizer.json`.
How a probability changes a verdict is `NliRule` (docs/verifier.md, "Bring your own NLI model").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from service.core.config import Settings, get_settings

__all__ = ["NliModelError", "NliRule", "NliScorer", "configured_scorer"]

# Session inputs we know how to fill (Hugging Face exports name them so); `token_type_ids` is optional.
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INTEGER_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32"}


class NliModelError(RuntimeError):
    """The configured NLI model or tokenizer cannot be used (the message says which file and why)."""


@dataclass(frozen=True)
class NliRule:
    """How the entailment probability changes the combiner's verdict (thresholds in [0, 1])."""

    veto_below: float = 0.1
    lift_above: float = 0.9
    lift_band: float = 0.15


class NliScorer:
    """One ONNX sequence-pair classifier and its tokenizer, loaded once."""

    def __init__(
        self, model_path: Path, tokenizer_path: Path, *, entailment_index: int = 2, max_length: int = 256,
        rule: NliRule | None = None,
    ) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:  # config.py checks this at start-up; here for callers that build one directly
            raise NliModelError(f"the NLI model needs onnxruntime and tokenizers: pip install 'citesum[nli]' ({exc})") from exc
        self.rule = rule or NliRule()
        self.entailment_index = entailment_index
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise NliModelError(f"NLI tokenizer {str(tokenizer_path)!r} cannot be read: {exc}") from exc
        self.tokenizer.enable_truncation(max_length=max_length)
        if self.tokenizer.padding is None:
            pad = next((t for t in ("<pad>", "[PAD]") if self.tokenizer.token_to_id(t) is not None), None)
            # Padded positions are masked out by attention_mask, so the id only has to be a valid one.
            self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad) if pad else 0, pad_token=pad or "[PAD]")
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types are not public
            raise NliModelError(f"NLI model {str(model_path)!r} cannot be loaded by onnxruntime: {exc}") from exc
        self._inputs: dict[str, str] = {}
        for node in self.session.get_inputs():
            if node.name not in _INPUTS or node.type not in _INTEGER_TYPES:
                raise NliModelError(
                    f"NLI model {str(model_path)!r} has input {node.name!r} ({node.type}); expected int64 or int32 "
                    f"inputs named {', '.join(_INPUTS)}"
                )
            self._inputs[node.name] = _INTEGER_TYPES[node.type]
        if "input_ids" not in self._inputs:
            raise NliModelError(f"NLI model {str(model_path)!r} has no 'input_ids' input")
        classes = self.session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and not 0 <= entailment_index < classes:
            raise NliModelError(
                f"CITESUM_NLI_ENTAILMENT_INDEX={entailment_index} but the model has {classes} output classes"
            )

    def entailment(self, premises: Sequence[str], hypothesis: str) -> float:
        """The highest probability, over `premises`, that the premise entails `hypothesis` (0.0 for none)."""
        if not premises:
            return 0.0
        import numpy as np

        encodings = self.tokenizer.encode_batch([(premise, hypothesis) for premise in premises])
        columns = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                   "token_type_ids": [e.type_ids for e in encodings]}
        feed = {name: np.asarray(columns[name], dtype=dtype) for name, dtype in self._inputs.items()}
        logits = np.asarray(self.session.run(None, feed)[0], dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] <= self.entailment_index:
            raise NliModelError(f"NLI model returned logits of shape {logits.shape}; expected [batch, classes]")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted[:, self.entailment_index] / shifted.sum(axis=1)
        return float(probabilities.max())


def configured_scorer(settings: Settings | None = None) -> NliScorer | None:
    """The scorer the settings name, loaded on first use and kept; None when no NLI model is set."""
    settings = settings or get_settings()
    if settings.nli_model_path is None or settings.nli_tokenizer_file is None:
        return None
    rule = NliRule(settings.nli_veto_below, settings.nli_lift_above, settings.nli_lift_band)
    return _load(settings.nli_model_path, settings.nli_tokenizer_file, settings.nli_entailment_index,
                 settings.nli_max_length, rule)


@cache
def _load(model: Path, tokenizer: Path, entailment_index: int, max_length: int, rule: NliRule) -> NliScorer:
    return NliScorer(model, tokenizer, entailment_index=entailment_index, max_length=max_length, rule=rule)
