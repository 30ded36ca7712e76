"""bench.judge_verdicts: the statistics docs/verifier.md quotes, recomputed from the committed verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from bench.judge_verdicts import balanced_accuracy, mcnemar_p

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def test_mcnemar_is_exact_and_two_sided() -> None:
    rows = [{"label": 1, "judge": "supported", "verifier": "unsupported"}] * 3
    assert mcnemar_p(rows) == (3, 0, 0.25)  # 2 * (1/2)^3
    assert mcnemar_p([]) == (0, 0, 1.0)


def test_committed_verdicts_give_the_documented_numbers() -> None:
    rows = json.loads((RESULTS / "judge_verdicts_1.5b.json").read_text(encoding="utf-8"))["rows"]
    assert len(rows) == 48
    assert (balanced_accuracy(rows, "verifier"), balanced_accuracy(rows, "judge")) == (0.583, 0.729)
    assert mcnemar_p(rows) == (16, 9, 0.23)
    small = json.loads((RESULTS / "judge_verdicts_0.5b.json").read_text(encoding="utf-8"))["rows"]
    assert all(r["judge"] == "supported" for r in small)


def test_the_larger_sample_gives_the_documented_numbers() -> None:
    rows = json.loads((RESULTS / "judge_verdicts_1.5b_144.json").read_text(encoding="utf-8"))["rows"]
    assert len(rows) == 144
    assert (balanced_accuracy(rows, "verifier"), balanced_accuracy(rows, "judge")) == (0.611, 0.604)
    assert mcnemar_p(rows) == (36, 37, 1.0)
