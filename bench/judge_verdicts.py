"""`python -m bench.judge_verdicts MODEL OUT.json [COUNT]`: the LLM judge's verdict on each claim, one call per claim.

`python -m bench.real_model --judge 48` reports the judge's totals per dataset; this runs the same
48-claim sample (`bench.real_model.judge_sample`, same seed, band 0.5; COUNT draws a larger one) against
the same local model,
one claim at a time, and keeps every verdict and raw reply, so that pooled balanced accuracy, an exact
McNemar test against the verifier alone, and the effect of a narrower band can be computed
(`python -m bench.judge_verdicts --analyse OUT.json`). docs/verifier.md quotes both for the 0.5B and
1.5B models (bench/results/judge_verdicts_*.json).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections import defaultdict
from math import comb
from pathlib import Path
from typing import Any

import httpx

from bench.real_model import Recorder, judge_sample
from service.core.config import Settings
from service.evaluation.evaluate import claim_sentences, load_claims, source_index
from service.pipeline.judge import JudgeCost, judge_verifications
from service.pipeline.llm import LLMClient, build_openai_client
from service.testing.local_llm import MODELS, serve
from service.verifier.verify import DEFAULT_THRESHOLD, verify_claim

BAND = 0.5  # every claim the judge may overturn is sent, as in bench.real_model's judge run


async def _verdicts(base_url: str, model: str, rows: list[Any]) -> tuple[list[dict[str, Any]], JudgeCost]:
    settings = Settings(OPENAI_BASE_URL=base_url, model=model, structured_output="json_object_schema",
                        verify_judge_band=BAND, llm_timeout_s=600, llm_retry_deadline_s=1200, map_concurrency=1,
                        completion_max_tokens=300)
    recorder = Recorder()
    http = httpx.AsyncClient(timeout=600, event_hooks={"response": [recorder]})
    llm = LLMClient(settings, build_openai_client(settings, http))
    out, cost = [], JudgeCost()
    try:
        for row in rows:
            index = source_index(row.source)
            claims = claim_sentences(row)
            checked = [verify_claim(c, [], index, threshold=DEFAULT_THRESHOLD) for c in claims]
            before = len(recorder.replies)
            judged = await judge_verifications(claims, checked, index, llm, threshold=DEFAULT_THRESHOLD, band=BAND,
                                               cost=cost)
            out.append({"dataset": row.dataset, "label": row.label, "claim": row.claim,
                        "verifier": checked[0].verdict, "verifier_score": checked[0].score,
                        "judge": judged[0].verdict, "reason": judged[0].reason,
                        "replies": [r["body"] for r in recorder.replies[before:]]})
            print(len(out), row.dataset, row.label, checked[0].verdict, judged[0].verdict, flush=True)
    finally:
        await llm.aclose()
    return out, cost


def balanced_accuracy(rows: list[dict[str, Any]], key: str) -> float:
    """Balanced accuracy of the verdicts under `key` ("verifier", "judge")."""
    pos = [r for r in rows if r["label"] == 1]
    neg = [r for r in rows if r["label"] == 0]
    tpr = sum(r[key] == "supported" for r in pos) / len(pos)
    tnr = sum(r[key] != "supported" for r in neg) / len(neg)
    return round((tpr + tnr) / 2, 3)


def mcnemar_p(rows: list[dict[str, Any]]) -> tuple[int, int, float]:
    """(judge right where the verifier was wrong, the reverse, exact two-sided McNemar p)."""
    def right(r: dict[str, Any], key: str) -> bool:
        return (r[key] == "supported") == (r["label"] == 1)
    b = sum(right(r, "judge") and not right(r, "verifier") for r in rows)
    c = sum(right(r, "verifier") and not right(r, "judge") for r in rows)
    n = b + c
    p = min(1.0, 2 * sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n) if n else 1.0
    return b, c, round(p, 3)


def analyse(path: Path) -> None:
    """Print per-dataset and pooled balanced accuracy, McNemar, and the verdicts at narrower bands."""
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["dataset"]].append(r)
    for name, group in sorted(by.items()):
        print(f"{name}: verifier {balanced_accuracy(group, 'verifier')} judge {balanced_accuracy(group, 'judge')}")
    said = sum(r["judge"] == "supported" for r in rows)
    print(f"pooled: verifier {balanced_accuracy(rows, 'verifier')} judge {balanced_accuracy(rows, 'judge')}; "
          f"judge says supported to {said} of {len(rows)}")
    b, c, p = mcnemar_p(rows)
    print(f"judge right / verifier wrong {b}, the reverse {c}, exact McNemar p {p}")
    for band in (0.15, 0.3):
        for r in rows:
            r["banded"] = r["judge"] if abs(r["verifier_score"] - DEFAULT_THRESHOLD) <= band else r["verifier"]
        inside = sum(abs(r["verifier_score"] - DEFAULT_THRESHOLD) <= band for r in rows)
        print(f"band {band}: {inside} claims inside, pooled {balanced_accuracy(rows, 'banded')}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--analyse"] and len(argv) == 2:
        analyse(Path(argv[1]))
        return 0
    if len(argv) not in (2, 3) or argv[0] not in MODELS or not (len(argv) == 2 or argv[2].isdigit()):
        print(f"usage: python -m bench.judge_verdicts {{{','.join(sorted(MODELS))}}} OUT.json [COUNT] "
              "| --analyse OUT.json", file=sys.stderr)
        return 2
    key, out = argv[0], argv[1]
    sample = judge_sample(int(argv[2]) if len(argv) == 3 else 48)
    rows = load_claims([sample])
    shutil.rmtree(sample.parent)  # judge_sample's own temporary folder
    with serve(MODELS[key], n_threads=1) as server:
        verdicts, cost = asyncio.run(_verdicts(server.base_url, server.model, rows))
    Path(out).write_text(json.dumps({"cost": cost.as_dict(), "rows": verdicts}, indent=1) + "\n", encoding="utf-8")
    analyse(Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
