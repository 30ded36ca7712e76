"""Rewrite the generated sections of README.md and docs/*.md from the code and the latest measurements.

A generated section sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; everything
between the markers belongs to this script. Sections and their sources:

    settings            docs/settings.md     service.core.config.Settings (scripts/settings_table.py)
    verifier-accuracy   docs/verifier.md     python -m service eval-verifier <dev files> --json
    verifier-headline   README.md            the same run
    bench-latest        docs/benchmarks.md   the newest bench/results/*.json, through bench.report.markdown
    bench-headline      README.md            the same file
    cli-example         README.md            citesum summarize seeds/belarus-putin-options.txt -n 4

    python scripts/docs_sections.py            # rewrite every section (about 15 s: the verifier eval)
    python scripts/docs_sections.py --check    # exit 1 naming each stale section, write nothing
    python scripts/docs_sections.py --only settings --only bench-latest
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python scripts/docs_sections.py`
    sys.path.insert(0, str(ROOT))

from bench.report import markdown as bench_markdown  # noqa: E402
from scripts.settings_table import settings_table  # noqa: E402

COMMAND = "python scripts/docs_sections.py"
FACTUALITY_DIR = Path(os.environ.get("CITESUM_FACTUALITY_DIR", ROOT.parent / "shared" / "data" / "factuality"))
BENCH_RESULTS = ROOT / "bench" / "results"
VERIFIER_WEIGHTS = ROOT / "service" / "verifier" / "data" / "verifier.json"
CLI_EXAMPLE_ARGS = ["summarize", "seeds/belarus-putin-options.txt", "-n", "4"]
# Report order of eval-verifier's datasets (others follow alphabetically).
DATASET_ORDER = ["frank-cnndm", "frank-xsum", "faithbench", "qags-cnndm", "qags-xsum"]
# The project's balanced-accuracy targets at the shipped threshold (issue 16; eval-verifier's report keys).
VERIFIER_TARGETS = {
    "frank-cnndm": 0.85, "frank-xsum": 0.70, "faithbench": 0.63, "frank-cnndm (summary)": 0.75,
    "frank-xsum (summary)": 0.68,
}


class SourceMissing(Exception):
    """What a section is generated from is not on this machine (e.g. the factuality dev files)."""


@dataclass(frozen=True)
class Section:
    name: str
    file: str  # relative to the repository root
    render: Callable[[], str]


# ---------------------------------------------------------------------------------------------
# Sources (each computed once per run)
# ---------------------------------------------------------------------------------------------


@cache
def verifier_eval() -> dict[str, Any]:
    """The JSON line of `python -m service eval-verifier <every dev file> --json`."""
    files = sorted(FACTUALITY_DIR.glob("*.jsonl"))
    if not files:
        raise SourceMissing(f"no factuality dev files in {FACTUALITY_DIR} (set CITESUM_FACTUALITY_DIR)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITESUM_", "OPENAI_"))}
    run = subprocess.run(
        [sys.executable, "-m", "service", "eval-verifier", *map(str, files), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"eval-verifier failed ({run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


@cache
def latest_bench() -> tuple[str, dict[str, Any]]:
    """(file name, result) of the newest benchmark result in bench/results/, newest by its own `date`."""
    results = []
    for path in BENCH_RESULTS.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if {"date", "summary", "sections"} <= data.keys():
            results.append((datetime.strptime(data["date"], "%Y-%m-%d %H:%M UTC"), path.name, data))
    if not results:
        raise SourceMissing(f"no benchmark results in {BENCH_RESULTS} (run `python -m bench`)")
    _, name, data = max(results, key=lambda r: (r[0], r[1]))
    return name, data


# ---------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------


def _dataset_order(name: str) -> tuple[int, str, int]:
    base, summary = name.removesuffix(" (summary)"), name.endswith(" (summary)")
    rank = DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER)
    return rank, base, int(summary)


def render_verifier_accuracy() -> str:
    """The per-dataset table: shipped threshold, FRANK out-of-fold (from training), best threshold on the rows."""
    result = verifier_eval()
    weights = json.loads(VERIFIER_WEIGHTS.read_text(encoding="utf-8"))
    oof = weights.get("info", {}).get("grouped_cv_out_of_fold", {})
    rows = [
        f"Shipped threshold {result['threshold']:g}; {sum(d['n'] for d in result['datasets'].values()):,} claims; "
        "a claim is one summary sentence, or a whole summary (supported iff every sentence is).",
        "",
        "| dataset | granularity | n | balanced accuracy (AUC) | target | FRANK out-of-fold (AUC) "
        "| best on these rows (threshold) | word overlap, best on these rows (AUC) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(result["datasets"], key=_dataset_order):
        d = result["datasets"][name]
        base = name.removesuffix(" (summary)")
        kind = "summary" if name.endswith(" (summary)") else "sentence"
        o = oof.get(name)
        held_out = f"{o['balanced_accuracy']:.3f} ({o['auc']:.3f})" if o else "—"
        target = VERIFIER_TARGETS.get(name)
        verdict = "—" if target is None else f"{target:.2f} {'met' if d['balanced_accuracy'] >= target else 'not met'}"
        rows.append(
            f"| {base} | {kind} | {d['n']} | **{d['balanced_accuracy']:.3f}** ({d['auc']:.3f}) | {verdict} | {held_out} | "
            f"{d['tuned_balanced_accuracy']:.3f} ({d['tuned_threshold']:.3f}) | "
            f"{d['overlap_tuned_balanced_accuracy']:.3f} ({d['overlap_auc']:.3f}) |"
        )
    return "\n".join(rows)


def render_verifier_headline() -> str:
    datasets = verifier_eval()["datasets"]
    values = [d["balanced_accuracy"] for d in datasets.values()]
    claims = sum(d["n"] for d in datasets.values())
    met = sum(datasets[k]["balanced_accuracy"] >= t for k, t in VERIFIER_TARGETS.items() if k in datasets)
    return _bullets([
        f"- **Verifier on labelled data**: balanced accuracy {min(values):.2f}–{max(values):.2f} at the shipped "
        f"threshold on the FRANK, QAGS and FaithBench development files ({claims:,} labelled sentences and "
        f"summaries); {met} of its {len(VERIFIER_TARGETS)} accuracy targets met "
        "([table](docs/verifier.md#accuracy-development-files))."
    ])


def render_bench_latest() -> str:
    """bench.report.markdown of the newest result, its headings moved one level down under ours."""
    name, result = latest_bench()
    body = bench_markdown(result).strip().splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    body = ["#" + line if line.startswith("#") else line for line in body]
    return "\n".join([f"From `bench/results/{name}`:", *body]).strip()


def _bullets(lines: list[str]) -> str:
    """Markdown bullets wrapped at 100 columns, like the hand-written text around them."""
    return "\n".join(
        textwrap.fill(line, width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        for line in lines
    )


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def render_bench_headline() -> str:
    name, result = latest_bench()
    summary, sections = result["summary"], result["sections"]
    lines = []
    if summary.get("fault_recall") is not None:
        lines.append(
            f"- **Faults caught end to end**: {_pct(summary['fault_recall'])} of the wrong numbers, swapped names, "
            f"flipped negations and wrong citations a simulated model injected, with {_pct(summary['clean_kept'])} "
            "of clean sentences kept (policy `drop`)."
        )
    if summary.get("meaning_recall_uncited") is not None:
        lines.append(
            f"- **Meaning changes caught**: {_pct(summary['meaning_recall'])} of the antonyms, dropped hedges, "
            "flipped bounds, changed units and dates, invented clauses and swapped lower-case names a test "
            "generator wrote into article sentences when the sentence cites its source, and "
            f"{_pct(summary['meaning_recall_uncited'])} with no citation (the verifier then searches the whole "
            f"article); faithful sentences kept {_pct(summary['meaning_clean_kept_uncited'])}."
        )
    if summary.get("overhead_ratio_seed") is not None:
        lines.append(
            "- **Speed**: with a model answering in 400 ms + 20 ms per 1k prompt tokens, the service adds "
            f"{_pct(summary['overhead_ratio_seed'])} (seed article) and {_pct(summary['overhead_ratio_long'])} "
            "(12,000-word article) to the end-to-end time."
        )
    long_input = sections.get("long_input", {})
    ours, theirs = long_input.get("citesum_default"), long_input.get("langchain_map_reduce")
    if isinstance(ours, dict) and isinstance(theirs, dict):
        lines.append(
            f"- **Long articles**: the 12,000-word article goes to the model in {ours['llm_calls']} call"
            f"{'' if ours['llm_calls'] == 1 else 's'} against LangChain map_reduce's {theirs['llm_calls']}: "
            f"{summary['long_wall_vs_langchain_map_reduce']}× its wall time, "
            f"{summary['long_prompt_tokens_vs_langchain_map_reduce']}× its prompt tokens."
        )
    streaming = sections.get("streaming", {})
    seed, long = streaming.get("seed"), streaming.get("long")
    if isinstance(seed, dict) and "streamed_first_sentence_p50_s" in seed:
        text = (
            "- **Streaming**: with a model that also charges 10 ms per output token, the seed article's first "
            f"verified sentence arrives after {seed['streamed_first_sentence_p50_s']} s, "
            f"{summary['seed_first_sentence_vs_plain_wall']}× the wait for the whole answer "
            f"({seed['plain_wall_p50_s']} s), for {summary['seed_stream_wall_vs_plain_wall']}× the total time"
        )
        if isinstance(long, dict):
            parts = long.get("citesum_calls", 1)
            text += (
                f"; on the 12,000-word article{f' (written in {parts} parallel parts)' if parts > 1 else ''} after "
                f"{long['citesum_first_sentence_p50_s']} s, {summary['long_first_sentence_vs_langchain_map_reduce']}× "
                f"LangChain map_reduce's whole run, and the whole summary after {long['citesum_wall_p50_s']} s, "
                f"{summary['long_stream_wall_vs_langchain_map_reduce']}×"
            )
        lines.append(text + ".")
    throughput = sections.get("throughput", {}).get("c64")
    if isinstance(throughput, dict):
        lines.append(
            f"- **Load**: {throughput['rps']} summaries/s at 64 concurrent clients on {result['machine']['cores']} "
            f"cores, {throughput['errors']} errors, {throughput['server_cpu_ms_per_request']} ms of server CPU "
            "per summary (the simulated model and the load generator share those cores)."
        )
    lines.append(
        f"- Measured {result['date']} with `{result['command']}` ([all figures](docs/benchmarks.md#latest-results))."
    )
    return _bullets(lines)


def render_cli_example() -> str:
    """The first command's output, as a reader sees it (embedded default, no key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITESUM_", "OPENAI_"))}
    run = subprocess.run(
        [sys.executable, "-m", "service", *CLI_EXAMPLE_ARGS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"citesum {' '.join(CLI_EXAMPLE_ARGS)} failed: {run.stderr[-2000:]}")
    return "\n".join(["```text", f"$ citesum {' '.join(CLI_EXAMPLE_ARGS)}", run.stdout.rstrip(), "```"])


SECTIONS = [
    Section("cli-example", "README.md", render_cli_example),
    Section("bench-headline", "README.md", render_bench_headline),
    Section("verifier-headline", "README.md", render_verifier_headline),
    Section("settings", "docs/settings.md", settings_table),
    Section("verifier-accuracy", "docs/verifier.md", render_verifier_accuracy),
    Section("bench-latest", "docs/benchmarks.md", render_bench_latest),
]
BY_NAME = {s.name: s for s in SECTIONS}


# ---------------------------------------------------------------------------------------------
# Markers
# ---------------------------------------------------------------------------------------------


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(^<!-- generated:{re.escape(name)} -->\n)(.*?)(^<!-- /generated:{re.escape(name)} -->$)", re.DOTALL | re.M
    )


def section_names(text: str) -> list[str]:
    """Every generated section opened in `text` (a marker alone on its line), in order."""
    return re.findall(r"^<!-- generated:([\w-]+) -->$", text, re.M)


def read_section(text: str, name: str) -> str:
    """The current body of section `name` (without its markers)."""
    match = _pattern(name).search(text)
    if match is None:
        raise ValueError(f"no <!-- generated:{name} --> … <!-- /generated:{name} --> pair")
    return match.group(2)


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name`'s body replaced by `body` (one trailing newline, markers kept)."""
    read_section(text, name)  # raises when the markers are missing or unpaired
    if len(_pattern(name).findall(text)) > 1:
        raise ValueError(f"section {name} appears more than once")
    body = body.strip("\n") + "\n"
    return _pattern(name).sub(lambda m: m.group(1) + body + m.group(3), text)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _rendered(names: list[str], root: Path, skipped: list[str]) -> Iterator[tuple[str, Path, str, str]]:
    """(name, file path, file text, fresh body) of each section in `names` whose source is at hand;
    the others are added to `skipped` with the reason."""
    for name in names:
        section = BY_NAME[name]
        try:
            body = section.render()
        except SourceMissing as exc:
            skipped.append(f"{name}: {exc}")
            continue
        path = root / section.file
        yield name, path, path.read_text(encoding="utf-8"), body


def stale_sections(names: list[str], root: Path | None = None) -> tuple[list[str], list[str]]:
    """(stale, skipped) among `names`: stale when the file's body differs from a fresh render."""
    root = root or ROOT
    stale: list[str] = []
    skipped: list[str] = []
    for name, _path, text, body in _rendered(names, root, skipped):
        if read_section(text, name) != body.strip("\n") + "\n":
            stale.append(f"{BY_NAME[name].file}: {name}")
    return stale, skipped


def write_sections(names: list[str], root: Path | None = None) -> tuple[list[str], list[str]]:
    """Rewrite the sections `names`; (changed, skipped)."""
    root = root or ROOT
    changed: list[str] = []
    skipped: list[str] = []
    for name, path, text, body in _rendered(names, root, skipped):
        new = replace_section(text, name, body)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(f"{BY_NAME[name].file}: {name}")
    return changed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale sections (exit 1), write nothing")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="only these sections")
    args = parser.parse_args(argv)
    names = args.only or list(BY_NAME)
    if args.check:
        stale, skipped = stale_sections(names)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        for line in stale:
            print(f"stale {line}: run `{COMMAND}`")
        return 1 if stale else 0
    changed, skipped = write_sections(names)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    for line in changed:
        print(f"rewrote {line}")
    if not changed:
        print("every section is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
