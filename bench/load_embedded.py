"""Load: N concurrent clients against `python -m service serve` (embedded default) on 127.0.0.1.

Run: .venv/bin/python -m bench.load_embedded --clients 64 --seconds 30 [--large-seconds 15] [--no-cache]

Phase 1 posts the seed article in a closed loop; the optional phase 2 floods the server with large
bodies (a 380k-character article, just under CITESUM_MAX_ARTICLE_CHARS, and 1.9 MB bodies that
must be refused). Prints requests/s, p50/p99 latency, status counts (5xx counted apart) and the
server's peak RSS, sampled with psutil every 100 ms (server process and its children). The result
cache is on by default, so repeats of one article are cache hits; --no-cache makes every request
summarize.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from service.testing.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "belarus-putin-options.txt"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RssSampler:
    """Peak resident memory of a process tree, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = self.first = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval_s)

    def start(self) -> RssSampler:
        self.first = self.rss()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def closed_loop(base_url: str, clients: int, seconds: float, bodies: list[bytes]) -> dict[str, object]:
    """`clients` workers post bodies (round robin) back to back for `seconds`; latency and statuses."""
    latencies: list[float] = []
    failures: list[str] = []
    began = time.monotonic()
    statuses: Counter[str] = Counter()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def worker(index: int) -> None:
            n = index
            while time.monotonic() < stop_at:
                body = bodies[n % len(bodies)]
                n += clients
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/summaries", content=body, headers=headers)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    failures.append(f"{time.monotonic() - began:.1f}s {type(exc).__name__}: {exc!r}"[:200])
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.monotonic() - began
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(count / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 1) if latencies else None,
        "statuses": dict(sorted(statuses.items())),
        "5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "errors": sum(v for k, v in statuses.items() if not k.isdigit()),
        "first_errors": failures[:5],
    }


def start_server(port: int, workdir: Path, *, cache: bool = True) -> subprocess.Popen[bytes]:
    """`python -m service serve` on 127.0.0.1 with the embedded default (no LLM variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CITESUM_", "SLACK_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        CITESUM_JOB_DB_PATH=str(workdir / "jobs.sqlite3"),
        CITESUM_LOG_LEVEL="WARNING",  # uvicorn's access log would cost more than the requests
    )
    if not cache:
        env["CITESUM_CACHE_ENABLED"] = "false"
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_ready(base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def large_bodies() -> list[bytes]:
    """A 380k-character article (accepted) and a ~1.9 MB one (refused), alternating."""
    seed = SEED.read_text(encoding="utf-8")
    accepted = (seed + "\n\n") * (380_000 // (len(seed) + 2))
    refused = (seed + "\n\n") * (1_900_000 // (len(seed) + 2))
    return [json.dumps({"text": accepted}).encode(), json.dumps({"text": refused}).encode()]


def main(argv: list[str] | None = None) -> int:
    """Run the phases and print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--large-seconds", type=float, default=0, help="then flood with large bodies this long")
    parser.add_argument("--no-cache", action="store_true", help="CITESUM_CACHE_ENABLED=false on the server")
    args = parser.parse_args(argv)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="citesum-load-") as tmp:
        server = start_server(port, Path(tmp), cache=not args.no_cache)
        try:
            wait_ready(base_url)
            sampler = RssSampler(server.pid).start()
            seed_body = json.dumps({"text": SEED.read_text(encoding="utf-8")}).encode()
            report: dict[str, object] = {
                "clients": args.clients,
                "cache": not args.no_cache,
                "rss_mb_at_start": round(sampler.first / 2**20, 1),
            }
            report["seed"] = asyncio.run(closed_loop(base_url, args.clients, args.seconds, [seed_body]))
            report["rss_mb_peak_seed"] = round(sampler.peak / 2**20, 1)
            if args.large_seconds > 0:
                report["large"] = asyncio.run(closed_loop(base_url, args.clients, args.large_seconds, large_bodies()))
            sampler.stop()
            report["rss_mb_peak"] = round(sampler.peak / 2**20, 1)
            report["rss_mb_at_end"] = round(sampler.rss() / 2**20, 1)
        finally:
            stop_process(server)
            log_lines = (Path(tmp) / "server.log").read_text(encoding="utf-8", errors="replace").splitlines()
    report["server_log_warnings"] = [line[:300] for line in log_lines if '"INFO"' not in line][-10:]
    print(json.dumps(report, indent=2))
    failed = report["seed"]["5xx"] + report["seed"]["errors"]  # type: ignore[index, operator]
    if "large" in report:
        failed += report["large"]["5xx"] + report["large"]["errors"]  # type: ignore[index, operator]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
