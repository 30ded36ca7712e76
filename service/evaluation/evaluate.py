"""`eval-verifier`: the shipped verifier measured on labelled (source, claim, label) JSONL files."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from service.pipeline.segment import segment
from service.verifier.analysis import analyze
from service.verifier.verify import DEFAULT_THRESHOLD, SourceIndex, verify_claim, warm_up

__all__ = [
    "LabelledClaim", "auc", "balanced_accuracy", "best_threshold", "eval_verifier_main", "load_claims", "score_claim",
]


@dataclass(frozen=True)
class LabelledClaim:
    """One row of the factuality schema (see docs/verifier.md)."""

    id: str
    dataset: str
    granularity: str
    source: str
    claim: str
    label: int
    doc_id: str


def load_claims(paths: Iterable[str | Path]) -> list[LabelledClaim]:
    """Read JSONL rows with at least source, claim and label; missing fields get harmless defaults."""
    rows: list[LabelledClaim] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                raw = json.loads(line)
                rows.append(
                    LabelledClaim(
                        id=str(raw.get("id", f"{path}:{number}")),
                        dataset=str(raw.get("dataset", Path(path).stem)),
                        granularity=str(raw.get("granularity", "sentence")),
                        source=raw["source"],
                        claim=raw["claim"],
                        label=int(raw["label"]),
                        doc_id=str(raw.get("doc_id", raw["source"][:200])),
                    )
                )
    return rows


@lru_cache(maxsize=512)
def source_index(source: str) -> SourceIndex:
    """Segment and index a source once: many claims share an article."""
    return SourceIndex(segment(source))


def claim_sentences(row: LabelledClaim) -> list[str]:
    """The sentences to verify: the claim itself, or each sentence of a whole-summary claim."""
    if row.granularity != "summary":
        return [row.claim]
    return [s.text for s in segment(row.claim)] or [row.claim]


def score_claim(row: LabelledClaim, *, threshold: float | None = None) -> float:
    """Verifier score of a row with no citations (the verifier searches the whole source); summaries take the min."""
    index = source_index(row.source)
    return min(verify_claim(text, [], index, threshold=threshold).score for text in claim_sentences(row))


def overlap_score(row: LabelledClaim) -> float:
    """Plain word overlap, the reference baseline: the best share of a claim sentence's content words
    found in any one source sentence (a summary takes its lowest sentence)."""
    index = source_index(row.source)
    scores = []
    for text in claim_sentences(row):
        content = analyze(text).content
        if not content:
            scores.append(1.0)
            continue
        scores.append(max((len(content & a.content) / len(content) for a in index.analyses), default=0.0))
    return min(scores)


def balanced_accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Mean of the recall on positives and the recall on negatives (0.5 = chance)."""
    recalls = []
    for cls in (0, 1):
        members = [p for y, p in zip(labels, predictions, strict=True) if y == cls]
        if members:
            recalls.append(sum(1 for p in members if p == cls) / len(members))
    return sum(recalls) / len(recalls) if recalls else float("nan")


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC via the Mann-Whitney rank statistic, ties counted as half."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(1 for y in labels if y == 1)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y == 1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def best_threshold(labels: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """(balanced accuracy, threshold) of the best `score >= threshold` rule on these very rows.

    Optimistic by construction (tuned on what it is measured on), like the data README's baselines: it
    tells how much of a gap is the threshold and how much the scores.
    """
    positives = sum(1 for y in labels if y == 1)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan"), float("nan")
    pairs = sorted(zip(scores, labels, strict=True))
    # Threshold at pairs[i][0]: rows from i on are predicted supported.
    best = (-1.0, pairs[0][0])
    below_neg = below_pos = 0
    for i, (score, label) in enumerate(pairs):
        if i == 0 or score != pairs[i - 1][0]:
            value = 0.5 * ((positives - below_pos) / positives + below_neg / negatives)
            if value > best[0]:
                best = (value, score)
        below_pos += label == 1
        below_neg += label != 1
    return best


def group_key(row: LabelledClaim) -> str:
    """Report key: the dataset, split by granularity so sentence and summary numbers never mix."""
    return row.dataset if row.granularity == "sentence" else f"{row.dataset} (summary)"


def _shipped_score(row: LabelledClaim) -> float:
    return score_claim(row)


def score_rows(rows: Sequence[LabelledClaim], workers: int) -> list[float]:
    """Shipped-verifier scores of every row, on `workers` processes (rows of one article stay together)."""
    if workers <= 1 or len(rows) < 200:
        return [score_claim(row) for row in rows]
    import multiprocessing

    # Sorting by source keeps each worker's SourceIndex cache warm; results go back in input order.
    order = sorted(range(len(rows)), key=lambda i: rows[i].doc_id)
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(workers, initializer=warm_up) as pool:
        ordered = pool.map(_shipped_score, [rows[i] for i in order], chunksize=64)
    scores = [0.0] * len(rows)
    for position, i in enumerate(order):
        scores[i] = ordered[position]
    return scores


def evaluate(
    rows: Sequence[LabelledClaim], score_all: Callable[[Sequence[LabelledClaim]], list[float]], threshold: float
) -> tuple[dict[str, dict[str, float]], float]:
    """Per-dataset n, balanced accuracy and AUC, plus claims per second over all rows (wall clock)."""
    started = time.perf_counter()
    scores = score_all(rows)
    elapsed = time.perf_counter() - started
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[group_key(row)].append(i)
    report: dict[str, dict[str, float]] = {}
    for name, members in groups.items():
        labels = [rows[i].label for i in members]
        group_scores = [scores[i] for i in members]
        predictions = [int(s >= threshold) for s in group_scores]
        tuned, at = best_threshold(labels, group_scores)
        overlap = [overlap_score(rows[i]) for i in members]
        report[name] = {
            "overlap_tuned_balanced_accuracy": round(best_threshold(labels, overlap)[0], 4),
            "overlap_auc": round(auc(labels, overlap), 4),
            "n": len(members),
            "balanced_accuracy": round(balanced_accuracy(labels, predictions), 4),
            "auc": round(auc(labels, group_scores), 4),
            "tuned_balanced_accuracy": round(tuned, 4),
            "tuned_threshold": round(at, 4),
        }
    return report, (len(rows) / elapsed if elapsed > 0 else float("inf"))


def eval_verifier_main(argv: list[str]) -> int:
    """Entry point of `python -m service eval-verifier FILE.jsonl [FILE ...] [--json] [--llm]`."""
    parser = argparse.ArgumentParser(
        prog="citesum eval-verifier",
        description="Measure the shipped verifier on labelled JSONL (fields: source, claim, label; "
        "optional dataset, granularity=sentence|summary, id, doc_id).",
    )
    parser.add_argument("files", nargs="+", help="JSONL files in the factuality schema")
    parser.add_argument("--json", action="store_true", help="end with one JSON object with every number")
    parser.add_argument("--threshold", type=float, default=None, help="override the shipped threshold")
    parser.add_argument("--llm", action="store_true", help="let the configured LLM judge the unsure band")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for the embedded verifier (default: up to 2)")
    args = parser.parse_args(argv)

    warm_up()
    rows = load_claims(args.files)
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    cost: Callable[[], dict[str, object]] | None = None
    if args.llm:
        score_all, cost = judged_scorer(threshold)
    else:
        def score_all(batch: Sequence[LabelledClaim]) -> list[float]:
            return score_rows(batch, args.workers)
    report, rate = evaluate(rows, score_all, threshold)
    print(f"threshold {threshold:.3f}, {len(rows)} claims, {rate:.0f} claims/s")
    print(f"{'dataset':<28} {'n':>6} {'bal.acc':>8} {'auc':>7}   {'tuned on these rows (optimistic)':>32}"
          f"   {'word overlap, tuned (reference)':>31}")
    for name in sorted(report):
        r = report[name]
        print(f"{name:<28} {r['n']:>6} {r['balanced_accuracy']:>8.3f} {r['auc']:>7.3f}   "
              f"{r['tuned_balanced_accuracy']:>20.3f} at {r['tuned_threshold']:.3f}"
              f"   {r['overlap_tuned_balanced_accuracy']:>18.3f} (auc {r['overlap_auc']:.3f})")
    if cost is not None:
        print(f"llm: {cost()}")
    if args.json:
        result: dict[str, object] = {"datasets": report, "claims_per_s": round(rate, 1), "threshold": threshold}
        if cost is not None:
            result["llm"] = cost()
        print(json.dumps(result))
    return 0


def judged_scorer(threshold: float) -> tuple[Callable[[Sequence[Any]], list[float]], Callable[[], dict[str, int]]]:
    """For `eval-verifier --llm`: a row scorer that runs the embedded verifier, then the judge, and its cost."""
    from service.core.config import get_settings
    from service.pipeline.judge import JudgeCost, judge_verifications
    from service.pipeline.llm import LLMClient  # imported lazily: it needs the openai client

    settings = get_settings()
    if not settings.llm_configured:
        raise SystemExit("eval-verifier --llm needs an LLM: set OPENAI_BASE_URL and/or OPENAI_API_KEY")
    band = settings.verify_judge_band
    cost = JudgeCost()

    async def score_all(rows: Sequence[Any]) -> list[float]:
        llm = LLMClient(settings)
        limit = asyncio.Semaphore(settings.map_concurrency)

        async def one(row: Any) -> float:
            index = source_index(row.source)
            claims = claim_sentences(row)
            checked = [verify_claim(c, [], index, threshold=threshold) for c in claims]
            async with limit:
                judged = await judge_verifications(
                    claims, checked, index, llm, threshold=threshold, band=band, cost=cost
                )
            return min(v.score for v in judged)

        try:
            return list(await asyncio.gather(*(one(row) for row in rows)))
        finally:
            await llm.aclose()

    return (lambda rows: asyncio.run(score_all(rows))), cost.as_dict
