"""`python -m bench [--quick]`: run every section side by side, write bench/results/latest.{json,md}.

The last line printed is one JSON object with the headline numbers (see bench/report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ServiceProcess, machine
from bench.report import headline, markdown, verdicts
from bench.sections import SECTIONS, Bench
from service.testing.sim_llm import SimConfig, SimProcess

RESULTS = Path(__file__).resolve().parent / "results"


def _start_server(env: dict[str, str], log: Path) -> tuple[ServiceProcess | None, str | None]:
    try:
        return ServiceProcess(env, log).start(), None
    except Exception as exc:  # the service may be mid-build: report, don't crash the other sections
        tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
        return None, f"{exc} {tail}".strip()


async def run_sections(bench: Bench, names: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = await SECTIONS[name](bench)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["section_s"] = round(time.perf_counter() - started, 1)
        print(f"[bench] {name} done in {results[name]['section_s']} s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown table, then the headline JSON as the last line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under three minutes)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    args = parser.parse_args(argv)
    names = args.only or list(SECTIONS)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    command = "python -m bench" + (" --quick" if args.quick else "") + "".join(f" --only {n}" for n in args.only or [])

    with tempfile.TemporaryDirectory(prefix="citesum-bench-") as tmp, SimProcess(SimConfig(seed=1)) as sim:
        workdir = Path(tmp)
        bench = Bench(quick=args.quick, sim=sim, workdir=workdir)
        needs_llm = set(names) & {"overhead", "throughput", "faults", "cache_hit", "streaming"}
        if needs_llm:
            bench.llm_server, bench.llm_server_error = _start_server(
                {
                    "OPENAI_BASE_URL": sim.base_url,
                    "OPENAI_API_KEY": "sim",
                    "CITESUM_JOB_DB_PATH": str(workdir / "jobs-llm.sqlite3"),
                },
                workdir / "server-llm.log",
            )
        try:
            sections = asyncio.run(run_sections(bench, names))
        finally:
            if bench.llm_server is not None:
                bench.llm_server.stop()

    summary = headline(sections)
    load_after = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    bench.notes.append(
        f"Load average (1 min) {load_before:.1f} at start, {load_after:.1f} at end, on {cores} cores"
        + (
            ": other work shared the CPU, so latency and throughput are pessimistic."
            if max(load_before, load_after) > cores
            else "."
        )
    )
    throughput = sections.get("throughput", {})
    if workers := throughput.get("workers"):
        bench.notes.append(
            f"Throughput: the server ran as `serve` does by default, {workers} worker process"
            f"{'' if workers == 1 else 'es'} (CITESUM_WORKERS unset: one per CPU); server CPU is the whole "
            "process tree's."
        )
    cpu = throughput.get("c64", {}).get("server_cpu_ms_per_request")
    ideal = throughput.get("c64", {}).get("ideal_rps")
    if cpu and ideal:
        bench.notes.append(
            f"The server spent {cpu} ms of CPU per seed request at 64 clients, so even with all {cores} cores "
            f"to itself it would top out near {cores * 1000 / cpu:.0f} req/s; the ideal is {ideal:.0f} req/s, "
            f"which allows at most {cores * 1000 / ideal:.1f} ms of CPU per request for the server, the "
            "simulated model and the load generator together (they share the same cores)."
        )
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "duration_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "verdicts": verdicts(summary),
        "sections": sections,
        "notes": bench.notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown(result)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    print(table)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
