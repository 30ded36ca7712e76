"""The six benchmark sections; each returns a dict of results, or {"skipped": reason}."""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.harness import RssSampler, ServiceProcess, client_gc_paused, llm_wait_s, median, percentile, tree_cpu_s
from bench.hostile import hostile
from bench.inputs import dev_data_missing, fault_articles, long_text, seed_text
from service.testing.sim_llm import LATENCY_PROFILES, SimProcess

# The sections before issue 15 keep their latency model, so their numbers stay comparable: nothing
# charged for decoding. The streaming section uses the model that charges for it.
LATENCY_400 = LATENCY_PROFILES["prefill-only"]
LATENCY_0 = LATENCY_PROFILES["instant"]
LATENCY_DECODE = LATENCY_PROFILES["decode"]
NO_FAULTS = {"fault_rate": 0.0, "transport_rates": {}}


@dataclass
class Bench:
    """What every section may use: the simulated model, the citesum servers, the run size."""

    quick: bool
    sim: SimProcess
    workdir: Path
    llm_server: ServiceProcess | None = None
    llm_server_error: str | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full


def unique(text: str) -> str:
    """`text` made distinct with a short trailing line, so no cache can answer it."""
    return f"{text}\n\nRef {uuid.uuid4().hex[:8]}."


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def post_summary(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[int, Any, float, float]:
    """POST /v1/summaries; (status, JSON or None, start, end) with wall-clock times (time.time)."""
    start = time.time()
    try:
        response = await client.post(f"{url}/v1/summaries", json=body)
    except httpx.HTTPError as exc:
        return 0, {"error": repr(exc)}, start, time.time()
    end = time.time()
    try:
        payload = response.json()
    except ValueError:
        payload = None
    return response.status_code, payload, start, end


def http_client(connections: int = 128) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=300, limits=limits)


def need_llm_server(bench: Bench) -> str | None:
    if bench.llm_server is None:
        return f"citesum API server (LLM mode) unavailable: {bench.llm_server_error}"
    return None


# ---------------------------------------------------------------------------------------------
# 1. Service overhead
# ---------------------------------------------------------------------------------------------


async def overhead(bench: Bench) -> dict[str, Any]:
    """End-to-end time minus time waiting on the LLM, seed and long input, at 0 ms and 400 ms + 20 ms/1k."""
    if reason := need_llm_server(bench):
        return {"skipped": reason}
    assert bench.llm_server is not None
    url = bench.llm_server.url
    # CPU seconds of the server's process tree: unlike wall time, not inflated by a busy machine.
    server = psutil.Process(bench.llm_server.process.pid) if bench.llm_server.process is not None else None
    results: dict[str, Any] = {}
    async with http_client() as client:
        for latency_name, latency in (("0ms", LATENCY_0), ("400ms", LATENCY_400)):
            bench.sim.configure(**latency, **NO_FAULTS)
            cases = [("seed", seed_text(), bench.n(8, 30))]
            if not dev_data_missing():
                cases.append(("long", long_text(), bench.n(3, 10)))
            for input_name, text, runs in cases:
                for _ in range(3):  # warm-up
                    await post_summary(client, url, {"text": unique(text)})
                bench.sim.reset()
                windows, errors = [], 0
                server_timings: dict[str, list[float]] = {}
                cpu_before = tree_cpu_s(server) if server is not None else None
                for _ in range(runs):
                    body = {"text": unique(text)}
                    with client_gc_paused():
                        status, payload, start, end = await post_summary(client, url, body)
                    errors += status != 200
                    windows.append((start, end))
                    for key, value in (payload or {}).get("timings_ms", {}).items():
                        server_timings.setdefault(key, []).append(value)
                cpu_ms = ms((tree_cpu_s(server) - cpu_before) / runs) if server and cpu_before is not None else None
                calls = bench.sim.calls()
                e2e = [end - start for start, end in windows]
                waits = [llm_wait_s(calls, start, end) for start, end in windows]
                over = [total - wait for total, wait in zip(e2e, waits, strict=True)]
                ratios = [o / t for o, t in zip(over, e2e, strict=True) if t > 0]
                results[f"{input_name}_{latency_name}"] = {
                    "runs": runs,
                    "errors": errors,
                    "llm_calls_per_request": round(len(calls) / runs, 2),
                    "e2e_p50_ms": ms(median(e2e)),
                    "e2e_p99_ms": ms(percentile(e2e, 99)),
                    "llm_wait_p50_ms": ms(median(waits)),
                    "overhead_p50_ms": ms(median(over)),
                    "overhead_p99_ms": ms(percentile(over, 99)),
                    "overhead_ratio_p50": round(median(ratios), 4),
                    # The pipeline's own clock (timings_ms); the rest of e2e is HTTP, framework, LLM I/O.
                    "server_timings_p50_ms": {k: round(median(v), 1) for k, v in server_timings.items()},
                    "server_cpu_ms_per_request": cpu_ms,
                }
    bench.notes.append(
        "Overhead section, server CPU per request (psutil, process tree, mean): "
        + ", ".join(f"{k} {v['server_cpu_ms_per_request']} ms" for k, v in results.items())
        + "."
    )
    results["overhead_ratio_seed"] = results["seed_400ms"]["overhead_ratio_p50"]
    results["overhead_ratio_long"] = results.get("long_400ms", {}).get("overhead_ratio_p50")
    return results


# ---------------------------------------------------------------------------------------------
# 2. Long input: citesum vs LangChain
# ---------------------------------------------------------------------------------------------


# The prompt budget (CITESUM_PROMPT_TOKEN_BUDGET) the long input needs to reach 0.6x LangChain's wall time
# under the latency model: 400 ms + 20 ms x ~6.2k tokens, plus the pipeline's own time.
EXCERPT_BUDGET_TOKENS = 6_000


async def _citesum_long(base_url: str, text: str, **overrides: Any) -> dict[str, Any]:
    """One in-process summarize_request on `text`; wall seconds, what the summary cited and kept, what was sent."""
    from service.core.config import Settings
    from service.core.schema import SummaryRequest
    from service.pipeline.llm import LLMClient
    from service.pipeline.summarize import summarize_request

    settings = Settings(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sim", cache_enabled=False, **overrides)
    llm = LLMClient(settings)
    try:
        started = time.perf_counter()
        response = await summarize_request(SummaryRequest(text=text), settings=settings, llm=llm)
        wall = time.perf_counter() - started
    finally:
        await llm.aclose()
    return {
        "wall_s": wall,
        "chunks": response.chunks,
        "summary_sentences": len(response.summary),
        "dropped_sentences": len(response.dropped),
        "cited_ids": sorted({c.sentence_id for s in response.summary for c in s.citations}),
        "sentence_count": response.document.sentence_count,
        "excerpt_ids": getattr(response, "excerpt_ids", None),  # absent before the field existed
    }


async def long_input(bench: Bench) -> dict[str, Any]:
    """Wall time, LLM calls and tokens on the ~12,000-word input: citesum (defaults, small budget), LangChain."""
    if reason := dev_data_missing():
        return {"skipped": reason}
    try:
        import service.pipeline.summarize  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"service.pipeline.summarize not importable: {exc}"}
    try:
        from bench import peer
    except ImportError as exc:
        return {"skipped": f"LangChain (the bench extra) not installed: {exc}"}

    text = long_text()
    base_url = bench.sim.base_url
    bench.sim.configure(**LATENCY_400, **NO_FAULTS)

    async def citesum_default() -> dict[str, Any]:
        return await _citesum_long(base_url, unique(text))

    async def citesum_excerpt() -> dict[str, Any]:
        return await _citesum_long(base_url, unique(text), prompt_token_budget=EXCERPT_BUDGET_TOKENS)

    async def citesum_small() -> dict[str, Any]:
        return await _citesum_long(base_url, unique(text), chunk_tokens=3000)

    async def citesum_small_c8() -> dict[str, Any]:
        return await _citesum_long(base_url, unique(text), chunk_tokens=3000, map_concurrency=8)

    async def lc_map_reduce() -> dict[str, Any]:
        wall, _ = await peer.run_chain(base_url, text, "map_reduce")
        return {"wall_s": wall}

    async def lc_refine() -> dict[str, Any]:
        wall, _ = await peer.run_chain(base_url, text, "refine")
        return {"wall_s": wall}

    async def lc_map_reduce_sync() -> dict[str, Any]:
        wall, _ = await peer.run_chain(base_url, text, "map_reduce", use_async=False)
        return {"wall_s": wall}

    variants = {
        "citesum_default": (citesum_default, bench.n(3, 5)),
        f"citesum_excerpt_{EXCERPT_BUDGET_TOKENS}": (citesum_excerpt, bench.n(3, 5)),
        "citesum_small_budget": (citesum_small, bench.n(3, 5)),
        "citesum_small_budget_map8": (citesum_small_c8, bench.n(2, 5)),
        "langchain_map_reduce": (lc_map_reduce, bench.n(3, 5)),
        "langchain_refine": (lc_refine, bench.n(1, 2)),
    }
    if not bench.quick:
        variants["langchain_map_reduce_sync"] = (lc_map_reduce_sync, 2)

    # Warm-up, untimed: imports, the verifier's lexicons, LangChain's first client.
    bench.sim.configure(**LATENCY_0)
    await _citesum_long(base_url, unique(seed_text()))
    await peer.run_chain(base_url, seed_text(), "map_reduce")
    bench.sim.configure(**LATENCY_400)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for round_index in range(max(runs for _, runs in variants.values())):
        for name, (run, runs) in variants.items():  # interleaved, so drift hits every variant alike
            if round_index >= runs:
                continue
            bench.sim.reset()
            sample = await run()
            calls = bench.sim.calls()
            sample.update(
                llm_calls=len(calls),
                prompt_tokens=sum(c["prompt_tokens"] for c in calls),
                completion_tokens=sum(c["completion_tokens"] for c in calls),
            )
            samples[name].append(sample)

    results: dict[str, Any] = {"input_words": len(text.split()), "input_tokens_chars_over_4": len(text) // 4}
    for name, runs in samples.items():
        results[name] = {
            "runs": len(runs),
            "wall_p50_s": round(median([r["wall_s"] for r in runs]), 3),
            "wall_max_s": round(max(r["wall_s"] for r in runs), 3),
            "llm_calls": runs[0]["llm_calls"],
            "prompt_tokens": runs[0]["prompt_tokens"],
            "completion_tokens": runs[0]["completion_tokens"],
            **({"chunks": runs[0]["chunks"]} if "chunks" in runs[0] else {}),
        }
    peer_mr = results["langchain_map_reduce"]
    results["long_wall_vs_langchain_map_reduce"] = round(
        results["citesum_default"]["wall_p50_s"] / peer_mr["wall_p50_s"], 3
    )
    results["long_prompt_tokens_vs_langchain_map_reduce"] = round(
        results["citesum_default"]["prompt_tokens"] / peer_mr["prompt_tokens"], 3
    )
    results["small_budget_wall_vs_langchain_map_reduce"] = round(
        results["citesum_small_budget"]["wall_p50_s"] / peer_mr["wall_p50_s"], 3
    )
    results["small_budget_prompt_tokens_vs_langchain_map_reduce"] = round(
        results["citesum_small_budget"]["prompt_tokens"] / peer_mr["prompt_tokens"], 3
    )
    results["small_budget_map8_wall_vs_langchain_map_reduce"] = round(
        results["citesum_small_budget_map8"]["wall_p50_s"] / peer_mr["wall_p50_s"], 3
    )
    results.update(_excerpt_effect(samples, results, peer_mr))
    if "excerpt_wall_vs_langchain_map_reduce" in results:
        bench.notes.append(
            f"Long input with CITESUM_PROMPT_TOKEN_BUDGET={EXCERPT_BUDGET_TOKENS} (not the default): wall"
            f" {results['excerpt_wall_vs_langchain_map_reduce']}x and prompt tokens"
            f" {results['excerpt_prompt_tokens_vs_langchain_map_reduce']}x LangChain map_reduce;"
            f" {results['excerpt_sentences_sent']} of {results['excerpt_sentences_total']} sentences sent;"
            f" {results['excerpt_default_citations_sent']} of the default summary's"
            f" {results['default_cited_sentences']} cited sentences were among them; summary sentences kept"
            f" {results['excerpt_kept']} (dropped {results['excerpt_dropped']}), default"
            f" {results['default_kept']} (dropped {results['default_dropped']})."
        )
    return results


def _excerpt_effect(
    samples: dict[str, list[dict[str, Any]]], results: dict[str, Any], peer_mr: dict[str, Any]
) -> dict[str, Any]:
    """What condensing the prompt did: time and tokens against LangChain, and the summary it led to."""
    excerpt_runs = samples.get(f"citesum_excerpt_{EXCERPT_BUDGET_TOKENS}") or []
    default_runs = samples.get("citesum_default") or []
    if not excerpt_runs or not default_runs or not excerpt_runs[0]["excerpt_ids"]:
        return {}
    excerpt, default = excerpt_runs[0], default_runs[0]
    sent = set(excerpt["excerpt_ids"])
    row = results[f"citesum_excerpt_{EXCERPT_BUDGET_TOKENS}"]
    return {
        "excerpt_wall_vs_langchain_map_reduce": round(row["wall_p50_s"] / peer_mr["wall_p50_s"], 3),
        "excerpt_prompt_tokens_vs_langchain_map_reduce": round(row["prompt_tokens"] / peer_mr["prompt_tokens"], 3),
        "excerpt_sentences_sent": len(sent),
        "excerpt_sentences_total": excerpt["sentence_count"],
        "default_cited_sentences": len(default["cited_ids"]),
        "excerpt_default_citations_sent": sum(i in sent for i in default["cited_ids"]),
        "excerpt_kept": excerpt["summary_sentences"],
        "excerpt_dropped": excerpt["dropped_sentences"],
        "default_kept": default["summary_sentences"],
        "default_dropped": default["dropped_sentences"],
    }


# ---------------------------------------------------------------------------------------------
# 3 + 5. Throughput and peak RSS
# ---------------------------------------------------------------------------------------------


async def _load(url: str, clients: int, per_client: int, text: str) -> dict[str, Any]:
    """`clients` concurrent clients, each sending `per_client` requests back to back."""
    latencies: list[float] = []
    errors: list[str] = []
    # Each client is its own httpx client with one keep-alive connection, as separate users are.
    # One shared pool of 64 connections cost the load generator 4-8x more CPU per request
    # (httpcore scans every connection for every queued request), CPU taken from the 2 cores the
    # server shares with it. One TLS context for all: each new one loads the CA bundle (~80 ms).
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def one_client() -> None:
        async with httpx.AsyncClient(timeout=300, limits=limits, verify=tls) as client:
            for _ in range(per_client):
                status, payload, start, end = await post_summary(client, url, {"text": unique(text)})
                if status == 200:
                    latencies.append(end - start)
                else:
                    errors.append(f"{status}: {str(payload)[:120]}")

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": clients * per_client,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "wall_s": round(wall, 3),
        "rps": round(clients * per_client / wall, 2),
        "p50_ms": ms(median(latencies)),
        "p99_ms": ms(percentile(latencies, 99)),
    }


async def _throughput_with_env(
    bench: Bench, env: dict[str, str], clients: int, per_client: int, text: str
) -> dict[str, Any]:
    """One load level against a second LLM-mode server started with extra settings `env`."""
    env = {
        "OPENAI_BASE_URL": bench.sim.base_url,
        "OPENAI_API_KEY": "sim",
        "CITESUM_JOB_DB_PATH": str(bench.workdir / "jobs-variant.sqlite3"),
        **env,
    }
    try:
        server = ServiceProcess(env, bench.workdir / "server-variant.log").start()
    except Exception as exc:
        return {"skipped": f"variant server unavailable: {exc}"}
    try:
        await _load(server.url, 4 * server.workers, 2, text)  # warm-up, every worker (see throughput)
        bench.sim.reset()
        run = await _load(server.url, clients, per_client, text)
        calls = bench.sim.calls()
        sim_latency = median([c["end"] - c["start"] for c in calls]) if calls else float("nan")
        run.update(
            settings=env | {"OPENAI_API_KEY": "…"},
            workers=server.workers,
            sim_latency_p50_ms=ms(sim_latency),
            ideal_rps=round(clients / sim_latency, 2),
        )
        run["throughput_ratio"] = round(run["rps"] / run["ideal_rps"], 4)
        return run
    finally:
        server.stop()


async def throughput(bench: Bench) -> dict[str, Any]:
    """Requests/s with 1, 16 and 64 clients at 400 ms + 20 ms/1k, against the ideal; peak server RSS."""
    if reason := need_llm_server(bench):
        return {"skipped": reason}
    assert bench.llm_server is not None and bench.llm_server.process is not None
    bench.sim.configure(**LATENCY_400, **NO_FAULTS)
    text = seed_text()
    # The server runs as `serve` does by default (CITESUM_WORKERS unset: one worker per CPU); its
    # CPU is the whole process tree's, the workers' included.
    results: dict[str, Any] = {"workers": bench.llm_server.workers}
    with RssSampler(bench.llm_server.process.pid) as rss:
        # Warm-up: a fresh worker's first requests cost several times the CPU of later ones, and
        # each client's connection lands on whichever worker accepts it: enough clients to reach all.
        await _load(bench.llm_server.url, 4 * bench.llm_server.workers, 2, text)
        server = psutil.Process(bench.llm_server.process.pid)
        for clients, per_client in ((1, bench.n(8, 20)), (16, bench.n(2, 8)), (64, bench.n(2, 6))):
            bench.sim.reset()
            cpu_before = tree_cpu_s(server)
            run = await _load(bench.llm_server.url, clients, per_client, text)
            run["server_cpu_ms_per_request"] = ms((tree_cpu_s(server) - cpu_before) / run["requests"])
            run["workers"] = bench.llm_server.workers
            calls = bench.sim.calls()
            sim_latency = median([c["end"] - c["start"] for c in calls]) if calls else float("nan")
            run["llm_calls"] = len(calls)
            run["sim_latency_p50_ms"] = ms(sim_latency)
            run["ideal_rps"] = round(clients / sim_latency, 2)
            run["throughput_ratio"] = round(run["rps"] / run["ideal_rps"], 4)
            results[f"c{clients}"] = run
    bench.peak_rss_mb = rss.peak_mb
    results["peak_rss_mb"] = rss.peak_mb
    results["c64_llm_slots_64"] = await _throughput_with_env(
        bench, {"CITESUM_MAX_INFLIGHT_LLM_CALLS": "64"}, 64, bench.n(2, 6), text
    )
    results["throughput_ratio_c64"] = results["c64"]["throughput_ratio"]
    results["server_cpu_ms_per_request_c64"] = results["c64"]["server_cpu_ms_per_request"]
    results["p99_over_single_c64"] = round(results["c64"]["p99_ms"] / results["c1"]["p50_ms"], 3)
    results["errors_total"] = sum(results[f"c{c}"]["errors"] for c in (1, 16, 64))
    return results


async def embedded_throughput(bench: Bench) -> dict[str, Any]:
    """Requests/s for the seed article on the embedded default (no LLM), 1 and 16 clients."""
    env = {"CITESUM_PROVIDER": "embedded", "CITESUM_JOB_DB_PATH": str(bench.workdir / "jobs-embedded.sqlite3")}
    log = bench.workdir / "server-embedded.log"
    try:
        server = ServiceProcess(env, log).start()
    except Exception as exc:  # the service may be mid-build
        return {"skipped": f"embedded citesum server unavailable: {exc}"}
    try:
        text = seed_text()
        # Warm-up of every worker (see throughput): with 2 clients, one worker could get none and
        # pay its first-request costs inside the measured runs (a 290 ms p99 at one client).
        await _load(server.url, 4 * server.workers, 2, text)
        runs: dict[str, Any] = {
            f"c{clients}": await _load(server.url, clients, per_client, text)
            for clients, per_client in ((1, bench.n(10, 30)), (16, bench.n(3, 8)))
        }
        return {"workers": server.workers, **runs}
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# 4. Verifier end to end
# ---------------------------------------------------------------------------------------------


def classify(sentence: dict[str, Any], kept: dict[str, dict[str, Any]], dropped: set[str]) -> str:
    """What the service did with one simulated sentence: caught, missed, kept, lost (not in any answer)."""
    text = " ".join(sentence["text"].split())
    if text in dropped:
        return "caught" if sentence["fault"] else "dropped"
    summary = kept.get(text)
    if summary is None:
        return "lost"
    if summary["verdict"] != "supported":
        return "caught" if sentence["fault"] else "dropped"
    if sentence["fault"] == "citation":
        cited = {c["sentence_id"] for c in summary["citations"]}
        if summary.get("recited") and not cited & set(sentence["citations"]):
            return "caught"  # re-cited to better evidence: the wrong citation never reaches the reader
    return "missed" if sentence["fault"] else "kept"


async def faults(bench: Bench) -> dict[str, Any]:
    """Injected content faults caught (recall) and clean sentences kept, at the default policy."""
    if reason := need_llm_server(bench) or dev_data_missing():
        return {"skipped": reason}
    assert bench.llm_server is not None
    articles = fault_articles(bench.n(30, 100))
    bench.sim.configure(**LATENCY_0, fault_rate=0.3, transport_rates={}, seed=5)
    bench.sim.reset()
    gate = asyncio.Semaphore(8)
    async with http_client() as client:

        async def one(index: int, text: str) -> tuple[int, Any, float, float]:
            # A fixed suffix, not unique(): the simulator draws its faults from the prompt, so every
            # run scores the same faults and a change in recall is the verifier's, not the draw's.
            # (No earlier section sends these texts, and the server's cache is new each run.)
            async with gate:
                return await post_summary(client, bench.llm_server.url, {"text": f"{text}\n\nRef faults-{index}."})

        answers = await asyncio.gather(*(one(index, text) for index, text in enumerate(articles)))
    calls = bench.sim.calls()
    bench.sim.configure(**NO_FAULTS)
    kept: dict[str, dict[str, Any]] = {}
    dropped: set[str] = set()
    errors = 0
    for status, payload, _, _ in answers:
        if status != 200:
            errors += 1
            continue
        for item in payload["summary"]:
            kept[" ".join(item["text"].split())] = item
        dropped.update(" ".join(d["text"].split()) for d in payload["dropped"])
    outcomes: dict[str, dict[str, int]] = {}
    examples: list[dict[str, str]] = []
    for call in calls:
        for sentence in call.get("sentences", []):
            kind = sentence["fault"] or "clean"
            outcome = classify(sentence, kept, dropped)
            if outcome in ("missed", "dropped") and len(examples) < 12:
                examples.append(
                    {
                        "kind": kind,
                        "outcome": outcome,
                        "detail": sentence.get("detail", ""),
                        "text": sentence["text"][:240],
                    }
                )
            outcomes.setdefault(kind, {}).setdefault(outcome, 0)
            outcomes[kind][outcome] += 1
    faulted = {k: v for k, v in outcomes.items() if k != "clean"}
    caught = sum(v.get("caught", 0) for v in faulted.values())
    missed = sum(v.get("missed", 0) for v in faulted.values())
    clean = outcomes.get("clean", {})
    kept_clean, dropped_clean = clean.get("kept", 0), clean.get("dropped", 0)
    return {
        "articles": len(articles),
        "errors": errors,
        "llm_calls": len(calls),
        "fault_rate": 0.3,
        "outcomes": outcomes,
        "recall_by_kind": {
            k: round(v.get("caught", 0) / max(1, v.get("caught", 0) + v.get("missed", 0)), 3)
            for k, v in sorted(faulted.items())
        },
        "fault_recall": round(caught / max(1, caught + missed), 4),
        "clean_kept": round(kept_clean / max(1, kept_clean + dropped_clean), 4),
        "faults_scored": caught + missed,
        "examples_missed_or_dropped": examples,
        "clean_scored": kept_clean + dropped_clean,
    }


# ---------------------------------------------------------------------------------------------
# 5. Meaning changes, verifier in process (test generator only)
# ---------------------------------------------------------------------------------------------


def _lowercase_name_fault(sentence: str, names: list[str], rng: random.Random) -> str | None:
    """The sentence lower-cased with one of its names swapped for another name of the article."""
    words = re.findall(r"(?<=[a-z,] )[A-Z][a-z]{2,}", sentence)
    others = [n for n in names if n not in sentence]
    if not words or not others:
        return None
    old = rng.choice(words)
    return sentence.replace(old, rng.choice(others), 1).lower()


async def meaning_faults(bench: Bench) -> dict[str, Any]:
    """Meaning changes (antonym, hedge, bound, unit, date, invented clause, lower-cased name) made by the
    TEST generator of bench/meaning_faults.py on article sentences, each verified twice: cited to the
    sentence it came from, and uncited (the verifier searches the whole source, as it does when a
    citation fails and as `eval-verifier` does); and the human-label numbers the shipped weights were
    chosen by, first."""
    if reason := dev_data_missing():
        return {"skipped": reason}
    from bench.meaning_faults import TEST, make_faults
    from service.pipeline.segment import segment
    from service.verifier.scoring import load_model
    from service.verifier.verify import SourceIndex, verify_claim

    human = load_model().info.get("grouped_cv_out_of_fold", {})
    outcomes: dict[str, dict[str, int]] = {}
    uncited: dict[str, dict[str, int]] = {}
    examples: list[dict[str, str]] = []

    def record(kind: str, text: str, index: SourceIndex, cited: str, shown: str | None = None) -> None:
        """Verify `text` cited to `cited` and uncited; count each outcome (examples: the cited misses)."""
        for counts, cited_ids in ((outcomes, [cited]), (uncited, [])):
            result = verify_claim(text, cited_ids, index)
            supported = result.verdict == "supported"
            outcome = ("kept" if supported else "dropped") if kind.startswith("clean") else (
                "missed" if supported else "caught")
            counts.setdefault(kind, {}).setdefault(outcome, 0)
            counts[kind][outcome] += 1
            if counts is outcomes and outcome in ("missed", "dropped") and sum(
                    e["kind"] == kind for e in examples) < 2:
                examples.append({"kind": kind, "outcome": outcome, "text": (shown or text)[:200],
                                 "reason": result.reason or ""})

    for number, article in enumerate(fault_articles(bench.n(30, 100))):
        rng = random.Random(f"meaning-{number}")
        index = SourceIndex(segment(article))
        names = sorted(set(re.findall(r"(?<=[a-z,] )[A-Z][a-z]{2,}", article)))
        for sentence in index.sentences[:15]:
            if len(sentence.text.split()) < 6:
                continue
            record("clean", sentence.text, index, sentence.id)
            faults = make_faults(sentence.text, TEST, rng)
            lowered = _lowercase_name_fault(sentence.text, names, rng)
            if lowered is not None:
                faults["lowercase_name"] = lowered
                record("clean_lowercase", sentence.text.lower(), index, sentence.id, shown=sentence.text)
            for kind, text in faults.items():
                record(kind, text, index, sentence.id)

    def recall(counts: dict[str, dict[str, int]]) -> tuple[dict[str, float], float, float]:
        faulted = {k: v for k, v in counts.items() if not k.startswith("clean")}
        caught = sum(v.get("caught", 0) for v in faulted.values())
        missed = sum(v.get("missed", 0) for v in faulted.values())
        clean = counts.get("clean", {})
        by_kind = {k: round(v.get("caught", 0) / max(1, v.get("caught", 0) + v.get("missed", 0)), 3)
                   for k, v in sorted(faulted.items())}
        return (by_kind, round(caught / max(1, caught + missed), 4),
                round(clean.get("kept", 0) / max(1, clean.get("kept", 0) + clean.get("dropped", 0)), 4))

    by_kind, overall, kept = recall(outcomes)
    by_kind_uncited, overall_uncited, kept_uncited = recall(uncited)
    return {
        "human_labels_out_of_fold": human,
        "generator": TEST.name,
        "outcomes": outcomes,
        "recall_by_kind": by_kind,
        "meaning_recall": overall,
        "meaning_clean_kept": kept,
        "outcomes_uncited": uncited,
        "recall_by_kind_uncited": by_kind_uncited,
        "meaning_recall_uncited": overall_uncited,
        "meaning_clean_kept_uncited": kept_uncited,
        "examples_missed_or_dropped": examples,
    }


# ---------------------------------------------------------------------------------------------
# 6. Cache hit
# ---------------------------------------------------------------------------------------------


async def cache_hit(bench: Bench) -> dict[str, Any]:
    """A repeated request: LLM calls and service time of the repeat (POST /v1/jobs and /v1/summaries)."""
    if reason := need_llm_server(bench):
        return {"skipped": reason}
    assert bench.llm_server is not None
    url = bench.llm_server.url
    bench.sim.configure(**LATENCY_400, **NO_FAULTS)
    body = {"text": unique(seed_text())}
    results: dict[str, Any] = {}
    async with http_client() as client:
        first = await client.post(f"{url}/v1/jobs", json=body)
        if first.status_code == 404:
            return {"skipped": "POST /v1/jobs not found"}
        job = first.json()
        deadline = time.monotonic() + 60
        while job.get("status") not in ("succeeded", "failed") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            job = (await client.get(f"{url}{job['url']}")).json()
        if job.get("status") != "succeeded":
            return {"skipped": f"first job did not succeed: {str(job)[:200]}"}
        times, statuses, service_ms = [], [], []
        bench.sim.reset()
        for _ in range(bench.n(10, 50)):
            started = time.perf_counter()
            again = await client.post(f"{url}/v1/jobs", json=body)
            times.append(time.perf_counter() - started)
            payload = again.json()
            statuses.append(payload.get("status"))
            result = payload.get("result") or {}
            if (lookup := (result.get("timings_ms") or {}).get("cache_ms")) is not None:
                service_ms.append(lookup)
        calls = bench.sim.calls()
        results["jobs"] = {
            "repeats": len(times),
            "born_succeeded": statuses.count("succeeded"),
            "llm_calls": len(calls),
            "post_p50_ms": ms(median(times)),
            "post_p99_ms": ms(percentile(times, 99)),
            "cache_lookup_p50_ms": round(median(service_ms), 3) if service_ms else None,
        }
        # The synchronous endpoint: the same body again and again after a first answer.
        summaries_body = {"text": unique(seed_text())}
        await post_summary(client, url, summaries_body)
        bench.sim.reset()
        repeats = []
        for _ in range(bench.n(10, 50)):
            _, payload, start, end = await post_summary(client, url, summaries_body)
            repeats.append((end - start, (payload or {}).get("timings_ms", {}).get("total_ms")))
        results["summaries_repeat"] = {
            "repeats": len(repeats),
            "llm_calls": len(bench.sim.calls()),
            "e2e_p50_ms": ms(median([r[0] for r in repeats])),
            "e2e_p99_ms": ms(percentile([r[0] for r in repeats], 99)),
            "service_total_p50_ms": median([r[1] for r in repeats if r[1] is not None]),
        }
    results["cache_hit_llm_calls"] = results["jobs"]["llm_calls"] + results["summaries_repeat"]["llm_calls"]
    return results


# ---------------------------------------------------------------------------------------------
# 7. Streaming: time to the first verified sentence, under a model that charges for decoding
# ---------------------------------------------------------------------------------------------


async def _citesum_streamed(base_url: str, text: str, **overrides: Any) -> dict[str, Any]:
    """One in-process streamed summary (summarize_request with events): first sentence and total, seconds."""
    from service.core.config import Settings
    from service.core.schema import SummaryRequest
    from service.pipeline.llm import LLMClient
    from service.pipeline.summarize import summarize_request

    settings = Settings(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sim", cache_enabled=False, **overrides)
    llm = LLMClient(settings)
    first: list[float] = []
    try:
        started = time.perf_counter()

        def on_event(event: Any) -> None:
            if event.kind in ("sentence", "dropped") and not first:
                first.append(time.perf_counter() - started)

        response = await summarize_request(SummaryRequest(text=text), settings=settings, llm=llm, events=on_event)
        wall = time.perf_counter() - started
    finally:
        await llm.aclose()
    return {"wall_s": wall, "first_sentence_s": first[0] if first else wall, "chunks": response.chunks}


async def _post_streamed(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/summaries with Accept: text/event-stream; seconds to the first sentence event and to the end."""
    started = time.perf_counter()
    first = None
    kinds: list[str] = []
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", f"{url}/v1/summaries", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
                if first is None and line[7:] in ("sentence", "dropped"):
                    first = time.perf_counter() - started
    wall = time.perf_counter() - started
    ok = response.status_code == 200 and kinds[-1:] == ["done"]
    return {"ok": ok, "wall_s": wall, "first_sentence_s": first if first is not None else wall}


async def streaming(bench: Bench) -> dict[str, Any]:
    """Streamed summaries at 300 ms + 20 ms/1k + 10 ms per output token: first verified sentence, total wall."""
    results: dict[str, Any] = {"latency_model": dict(LATENCY_DECODE)}
    base_url = bench.sim.base_url
    bench.sim.configure(**LATENCY_DECODE, **NO_FAULTS)
    try:
        if not dev_data_missing():
            results.update(await _streaming_long(bench, base_url))
        if reason := need_llm_server(bench):
            results["seed"] = {"skipped": reason}
        else:
            results.update(await _streaming_seed(bench))
    finally:
        bench.sim.configure(**LATENCY_400)  # the model the other sections were measured under
    return results


async def _streaming_long(bench: Bench, base_url: str) -> dict[str, Any]:
    """The long input, in process: citesum streamed (first sentence, total) and LangChain async map_reduce."""
    from bench import peer

    text = long_text()
    await _citesum_streamed(base_url, unique(seed_text()))  # warm-up, untimed
    ours: list[dict[str, Any]] = []
    one_call: list[dict[str, Any]] = []
    excerpt: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(bench.n(3, 5)):  # interleaved, so drift hits every variant alike
        bench.sim.reset()
        sample = await _citesum_streamed(base_url, unique(text))
        calls = bench.sim.calls()
        sample["prompt_tokens"] = sum(c["prompt_tokens"] for c in calls)
        sample["first_call_model_s"] = _first_sentence_call_s(calls)
        ours.append(sample)
        bench.sim.reset()
        sample = await _citesum_streamed(base_url, unique(text), parallel_write_tokens=0)
        sample["prompt_tokens"] = sum(c["prompt_tokens"] for c in bench.sim.calls())
        one_call.append(sample)
        bench.sim.reset()
        sample = await _citesum_streamed(base_url, unique(text), prompt_token_budget=EXCERPT_BUDGET_TOKENS)
        sample["prompt_tokens"] = sum(c["prompt_tokens"] for c in bench.sim.calls())
        excerpt.append(sample)
        bench.sim.reset()
        wall, _ = await peer.run_chain(base_url, text, "map_reduce")
        theirs.append({"wall_s": wall, "prompt_tokens": sum(c["prompt_tokens"] for c in bench.sim.calls())})
    peer_wall = median([r["wall_s"] for r in theirs])
    long = {
        "runs": len(ours),
        "chunks": ours[0]["chunks"],
        "citesum_first_sentence_p50_s": round(median([r["first_sentence_s"] for r in ours]), 3),
        "citesum_wall_p50_s": round(median([r["wall_s"] for r in ours]), 3),
        "citesum_prompt_tokens": ours[0]["prompt_tokens"],
        "citesum_calls": ours[0]["chunks"],
        # The model's own time for the call that writes the first sentence (latency model only).
        "citesum_first_sentence_call_p50_s": round(median([r["first_call_model_s"] for r in ours]), 3),
        "one_call_first_sentence_p50_s": round(median([r["first_sentence_s"] for r in one_call]), 3),
        "one_call_wall_p50_s": round(median([r["wall_s"] for r in one_call]), 3),
        "one_call_prompt_tokens": one_call[0]["prompt_tokens"],
        "langchain_map_reduce_wall_p50_s": round(peer_wall, 3),
        "langchain_map_reduce_prompt_tokens": theirs[0]["prompt_tokens"],
        f"excerpt_{EXCERPT_BUDGET_TOKENS}_first_sentence_p50_s": round(
            median([r["first_sentence_s"] for r in excerpt]), 3
        ),
        f"excerpt_{EXCERPT_BUDGET_TOKENS}_wall_p50_s": round(median([r["wall_s"] for r in excerpt]), 3),
        f"excerpt_{EXCERPT_BUDGET_TOKENS}_prompt_tokens": excerpt[0]["prompt_tokens"],
    }
    return {
        "long": long,
        "long_first_sentence_vs_langchain_map_reduce": round(long["citesum_first_sentence_p50_s"] / peer_wall, 3),
        "long_stream_wall_vs_langchain_map_reduce": round(long["citesum_wall_p50_s"] / peer_wall, 3),
        "long_first_sentence_floor_vs_langchain_map_reduce": round(
            long["citesum_first_sentence_call_p50_s"] / peer_wall, 3
        ),
        "long_stream_prompt_tokens_vs_langchain_map_reduce": round(
            long["citesum_prompt_tokens"] / long["langchain_map_reduce_prompt_tokens"], 3
        ),
        "excerpt_first_sentence_vs_langchain_map_reduce": round(
            long[f"excerpt_{EXCERPT_BUDGET_TOKENS}_first_sentence_p50_s"] / peer_wall, 3
        ),
        "excerpt_stream_wall_vs_langchain_map_reduce": round(
            long[f"excerpt_{EXCERPT_BUDGET_TOKENS}_wall_p50_s"] / peer_wall, 3
        ),
    }


def _first_sentence_call_s(calls: list[dict[str, Any]]) -> float:
    """Start to end of the simulated call that wrote the sentence citing the earliest source line."""

    def first_cited(call: dict[str, Any]) -> int:
        ids = [int(i[1:]) for s in call.get("sentences", []) for i in s["citations"] if i[1:].isdigit()]
        return min(ids, default=1 << 30)

    call = min(calls, key=first_cited)
    return call["end"] - call["start"]


async def _streaming_seed(bench: Bench) -> dict[str, Any]:
    """The seed over HTTP: plain JSON answers and SSE answers, interleaved pairs."""
    assert bench.llm_server is not None
    url = bench.llm_server.url
    plain_walls: list[float] = []
    streamed: list[dict[str, Any]] = []
    errors = 0
    async with http_client() as client:
        for _ in range(3):  # warm-up, both kinds
            await post_summary(client, url, {"text": unique(seed_text())})
            await _post_streamed(client, url, {"text": unique(seed_text())})
        for _ in range(bench.n(8, 20)):
            status, _, start, end = await post_summary(client, url, {"text": unique(seed_text())})
            errors += status != 200
            plain_walls.append(end - start)
            sample = await _post_streamed(client, url, {"text": unique(seed_text())})
            errors += not sample["ok"]
            streamed.append(sample)
    # 64 clients, two streamed requests each: the server's CPU per streamed request (process tree).
    server = psutil.Process(bench.llm_server.process.pid) if bench.llm_server.process is not None else None
    clients, per_client = 64, bench.n(1, 2)
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def one_client() -> int:
        failed = 0
        async with httpx.AsyncClient(timeout=300, limits=limits, verify=tls) as client:
            for _ in range(per_client):
                failed += not (await _post_streamed(client, url, {"text": unique(seed_text())}))["ok"]
        return failed

    cpu_before = tree_cpu_s(server) if server is not None else None
    c64_errors = sum(await asyncio.gather(*(one_client() for _ in range(clients))))
    c64_cpu = ms((tree_cpu_s(server) - cpu_before) / (clients * per_client)) if server and cpu_before else None
    plain = median(plain_walls)
    seed = {
        "runs": len(streamed),
        "errors": errors,
        "plain_wall_p50_s": round(plain, 3),
        "streamed_first_sentence_p50_s": round(median([s["first_sentence_s"] for s in streamed]), 3),
        "streamed_wall_p50_s": round(median([s["wall_s"] for s in streamed]), 3),
        "c64_streamed_requests": clients * per_client,
        "c64_streamed_errors": c64_errors,
        "c64_streamed_server_cpu_ms_per_request": c64_cpu,
    }
    return {
        "seed": seed,
        "seed_first_sentence_vs_plain_wall": round(seed["streamed_first_sentence_p50_s"] / plain, 3),
        "seed_stream_wall_vs_plain_wall": round(seed["streamed_wall_p50_s"] / plain, 3),
    }


SECTIONS = {
    "overhead": overhead,
    "long_input": long_input,
    "throughput": throughput,
    "embedded_throughput": embedded_throughput,
    "faults": faults,
    "meaning_faults": meaning_faults,
    "cache_hit": cache_hit,
    "hostile": hostile,
    "streaming": streaming,
}
