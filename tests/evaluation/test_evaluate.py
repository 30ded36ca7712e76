"""eval-verifier and train-verifier: metrics, the JSONL schema, the command's output, the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.evaluation.evaluate import (
    LabelledClaim,
    auc,
    balanced_accuracy,
    best_threshold,
    claim_sentences,
    load_claims,
)
from service.evaluation.training import fit_logistic
from service.interfaces.cli import main as cli_main
from service.pipeline.segment import segment
from service.verifier.features import FEATURE_NAMES
from service.verifier.scoring import MODEL_PATH, load_model
from tests.conftest import SEED_ARTICLE


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1], [0.5, 0.5], 0.5),  # a tie counts half
        ([0, 0, 1, 1], [0.1, 0.7, 0.5, 0.9], 0.75),
        ([1, 1], [0.1, 0.2], None),  # one class only: undefined
    ],
)
def test_auc(labels: list[int], scores: list[float], expected: float | None) -> None:
    value = auc(labels, scores)
    assert value != value if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("labels", "predictions", "expected"),
    [([0, 0, 1, 1], [0, 0, 1, 1], 1.0), ([0, 0, 0, 1], [1, 1, 1, 1], 0.5), ([0, 0, 1, 1], [0, 1, 1, 0], 0.5),
     ([0, 0, 0, 0, 1], [0, 0, 0, 1, 1], 0.875)],
)
def test_balanced_accuracy(labels: list[int], predictions: list[int], expected: float) -> None:
    assert balanced_accuracy(labels, predictions) == pytest.approx(expected)


def seed_rows() -> list[dict[str, object]]:
    source = SEED_ARTICLE.read_text(encoding="utf-8")
    sentences = [s.text for s in segment(source)]
    trucks = next(s for s in sentences if "400km" in s)
    evidence = next(s for s in sentences if "did not give any evidence" in s)
    return [
        {"id": "a", "dataset": "seed", "granularity": "sentence", "source": source, "claim": trucks, "label": 1},
        {"id": "b", "dataset": "seed", "granularity": "sentence", "source": source,
         "claim": trucks.replace("400km", "500km"), "label": 0},
        {"id": "c", "dataset": "seed", "granularity": "sentence", "source": source, "claim": evidence, "label": 1},
        {"id": "d", "dataset": "seed", "granularity": "sentence", "source": source,
         "claim": evidence.replace("did not give any evidence", "gave evidence"), "label": 0},
        {"id": "e", "dataset": "seed", "granularity": "summary", "source": source,
         "claim": f"{trucks} {evidence}", "label": 1},
        {"id": "f", "dataset": "seed", "granularity": "summary", "source": source,
         "claim": f"{trucks} {evidence.replace('did not give any evidence', 'gave evidence')}", "label": 0},
    ]



@pytest.mark.parametrize(
    ("labels", "scores"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]),
        ([1, 0, 1, 0, 1, 1, 0], [0.9, 0.8, 0.7, 0.3, 0.3, 0.2, 0.1]),
        ([0, 1, 0, 1, 1], [0.5, 0.5, 0.4, 0.9, 0.1]),
    ],
)
def test_best_threshold_is_the_best_of_every_cut(labels: list[int], scores: list[float]) -> None:
    value, threshold = best_threshold(labels, scores)
    brute = max(balanced_accuracy(labels, [int(s >= t) for s in scores]) for t in scores)
    assert value == pytest.approx(brute)
    assert balanced_accuracy(labels, [int(s >= threshold) for s in scores]) == pytest.approx(value)

def test_summary_rows_are_split_into_sentences() -> None:
    rows = load_claims_from(seed_rows())
    assert len(claim_sentences(rows[4])) == 2 and claim_sentences(rows[0]) == [rows[0].claim]


def load_claims_from(rows: list[dict[str, object]]) -> list[LabelledClaim]:
    return [LabelledClaim(str(r["id"]), str(r["dataset"]), str(r["granularity"]), str(r["source"]),
                          str(r["claim"]), int(str(r["label"])), "doc") for r in rows]


def test_load_claims_fills_defaults(tmp_path: Path) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"source": "A cat sat.", "claim": "A cat sat.", "label": 1}) + "\n\n", encoding="utf-8")
    (row,) = load_claims([data])
    assert (row.dataset, row.granularity, row.label) == ("mine", "sentence", 1)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_eval_verifier_json_on_seed_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    data = tmp_path / "seed.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in seed_rows() * 40) + "\n", encoding="utf-8")
    assert cli_main(["eval-verifier", str(data), "--json", "--workers", workers]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) >= {"datasets", "claims_per_s"} and result["claims_per_s"] > 0
    for name, n in (("seed", 160), ("seed (summary)", 80)):
        numbers = result["datasets"][name]
        assert {k: numbers[k] for k in ("n", "balanced_accuracy", "auc", "tuned_balanced_accuracy")} == {
            "n": n, "balanced_accuracy": 1.0, "auc": 1.0, "tuned_balanced_accuracy": 1.0}
    assert any(line.startswith("seed ") for line in lines)


def test_fit_logistic_separates_a_separable_toy_set() -> None:
    x = [[0.0, 1.0], [0.1, 0.9], [0.2, 1.0], [0.9, 0.0], [1.0, 0.1], [0.8, 0.0]]
    y = [0, 0, 0, 1, 1, 1]
    coef, bias, means, scales = fit_logistic(x, y, [1.0] * 6, l2=1.0)
    assert coef[0] > 0 > coef[1]
    assert fit_logistic(x, y, [1.0] * 6, l2=1.0) == (coef, bias, means, scales)  # deterministic


def test_fit_logistic_keeps_an_excluded_feature_at_zero() -> None:
    # Column 1 separates the labels perfectly, but it only chooses the regime: it must not be weighted.
    x = [[0.0, 1.0], [0.1, 0.9], [0.2, 1.0], [0.9, 0.0], [1.0, 0.1], [0.8, 0.0]]
    y = [0, 0, 0, 1, 1, 1]
    coef, _, _, _ = fit_logistic(x, y, [1.0] * 6, l2=1.0, exclude=[1])
    assert coef[1] == 0.0 and coef[0] > 0


# Out-of-fold balanced accuracy of the one-regime model shipped before issue 16's calibration (its
# verifier.json "grouped_cv_out_of_fold"): one threshold traded CNN/DM for XSum.
ONE_REGIME_OUT_OF_FOLD = {"frank-cnndm": 0.68, "frank-cnndm (summary)": 0.6263, "frank-xsum": 0.6899,
                          "frank-xsum (summary)": 0.6763}


def test_the_shipped_model_calibrates_extractive_and_abstractive_claims_apart() -> None:
    """Issue 16: the shipped model has two regimes split by how abstractive the claim is (a measure that
    carries no weight), and its recorded out-of-fold balanced accuracy beats the one-regime model's on all
    four FRANK groups, CNN/DM and XSum alike (by 0.01 on average)."""
    model = load_model()
    assert model.abstractive is not None and model.regime_feature == "novel_bigrams" and 0 < model.regime_cut < 1
    regime_only = FEATURE_NAMES.index("novel_bigrams")
    assert model.weights[regime_only] == 0.0 and model.abstractive.weights[regime_only] == 0.0
    oof = model.info["grouped_cv_out_of_fold"]
    gains = {g: round(oof[g]["balanced_accuracy"] - before, 4) for g, before in ONE_REGIME_OUT_OF_FOLD.items()}
    assert all(gain > 0 for gain in gains.values()) and sum(gains.values()) / len(gains) >= 0.01, gains


def test_shipped_model_matches_features_and_records_its_procedure() -> None:
    model = load_model()
    assert len(model.weights) == len(FEATURE_NAMES) and model.threshold == 0.5
    assert model.info["trained_on"] == ["frank_sentence_dev.jsonl"]
    assert set(model.veto) == {"missing_numbers", "missing_names", "missing_quote", "negation_flip", "antonym_flip",
                               "modality_shift", "bound_flip", "unit_mismatch", "date_mismatch"}
    assert model.span_veto == 3 and model.info["regime_cut"] == model.regime_cut
    assert "frank-xsum" in model.info["grouped_cv_out_of_fold"]


FRANK_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "factuality"


@pytest.mark.skipif(not (FRANK_DEV / "frank_sentence_dev.jsonl").is_file(), reason="FRANK dev files not found")
def test_train_verifier_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    """`train-verifier` on the FRANK dev files writes service/verifier/data/verifier.json byte for byte (~3 min)."""
    out = tmp_path / "verifier.json"
    assert cli_main(["train-verifier", "--data", str(FRANK_DEV), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == MODEL_PATH.read_text(encoding="utf-8")
