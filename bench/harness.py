"""Benchmark plumbing: the citesum server as a child process, its peak RSS, LLM wait time, percentiles."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.testing.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def llm_wait_s(calls: list[dict[str, Any]], start: float, end: float) -> float:
    """Seconds within [start, end] during which at least one simulated LLM call was in progress."""
    spans = sorted((max(c["start"], start), min(c["end"], end)) for c in calls if c["end"] > start and c["start"] < end)
    total, cursor = 0.0, start
    for span_start, span_end in spans:
        span_start = max(span_start, cursor)
        if span_end > span_start:
            total += span_end - span_start
            cursor = span_end
    return total


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """No garbage collection in this (the client's) process inside the block, as `timeit` does.

    The bench process holds LangChain and every result so far: one of its collections took 67 ms,
    and even young-generation ones 10-14 ms, which landed inside a timed request now and then and
    counted as the service's overhead. Collections run between requests instead.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python of this machine."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


class RssSampler:
    """Samples the resident memory of a process tree in a thread; `peak_mb` is the maximum seen."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, self._sample())
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak_bytes = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


def tree_cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and all its descendants (e.g. uvicorn's workers)."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class ServiceProcess:
    """`python -m service serve` on a free loopback port with `env` settings; waits for /readyz.

    The worker count is `serve`'s default (CITESUM_WORKERS, else one per CPU), as the README tells
    users to run it, unless `env` sets CITESUM_WORKERS; `workers` is the resolved number.
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        from service.interfaces.cli import resolve_workers

        self.port = free_port()
        self.log_path = log_path
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CITESUM_", "OPENAI_"))}
        base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
        base.update({"CITESUM_LOG_LEVEL": "WARNING", "CITESUM_HOST": "127.0.0.1"})
        base.update(env)
        self.env = base
        self.workers = resolve_workers(int(base.get("CITESUM_WORKERS") or 0))
        self.workers_seen: set[int] = set()  # pids that answered /readyz
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServiceProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        # No keep-alive: a new connection each time, so any worker may answer; wait until every one has.
        with httpx.Client(timeout=2, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"citesum server exited with {self.process.returncode}; see {self.log_path}")
                try:
                    ready = client.get(f"{self.url}/readyz")
                    if ready.status_code == 200:
                        self.workers_seen.add(ready.json().get("pid"))
                        if len(self.workers_seen) >= self.workers:
                            return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        if self.workers_seen:  # some workers answered; which one accepts is the kernel's choice
            return self
        self.stop()
        raise RuntimeError(f"citesum server not ready after {timeout_s:g} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
            self._log.close()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
