"""GET /metrics with `serve --workers N`: every worker's metrics, merged through PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from service.core import metrics
from service.core.config import Settings
from service.interfaces.api import create_app
from tests.process_helpers import free_port, service_env, start_api, stop, wait_for, worker_pids

STARTUP_S = 120  # two fresh interpreters importing the app on a busy 2-core machine
ENV = metrics.MULTIPROC_DIR_ENV
READYZ = {"route": "/readyz", "method": "GET", "status": "200"}


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None if absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == (labels or {}):
                return s.value
    return None


@pytest.fixture
def no_multiproc_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def _write_counter(directory: Path, pid: int, route: str, value: float) -> None:
    """What a worker process writes for `citesum_http_requests_total{route=...}` in multiprocess mode."""
    key = mmap_key(
        "citesum_http_requests", "citesum_http_requests_total", ["route", "method", "status"], [route, "GET", "200"],
        metrics.HTTP_REQUESTS._documentation,
    )
    values = MmapedDict(str(directory / f"counter_{pid}.db"))
    values.write_value(key, value, 0.0)
    values.close()


@pytest.mark.usefixtures("no_multiproc_dir")
async def test_metrics_merge_the_workers_files_only_when_the_directory_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write_counter(tmp_path, 101, "/from/the/files", 4)
    _write_counter(tmp_path, 102, "/from/the/files", 3)
    file_labels = {"route": "/from/the/files", "method": "GET", "status": "200"}
    app = create_app(Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await client.get("/healthz")
        assert metrics.metrics_registry() is REGISTRY
        alone = (await client.get("/metrics")).text
        monkeypatch.setenv(ENV, str(tmp_path))
        assert metrics.metrics_registry() is not REGISTRY
        merged = (await client.get("/metrics")).text
    # One process: this process's own counters, nothing from the directory.
    assert sample(alone, "citesum_http_requests_total", file_labels) is None
    assert sample(alone, "citesum_http_requests_total", {"route": "/healthz", "method": "GET", "status": "200"})
    # Multiprocess: the sum of every worker's file (this test process writes none: its values are in memory).
    assert sample(merged, "citesum_http_requests_total", file_labels) == 7
    assert sample(merged, "citesum_http_requests_total", {"route": "/healthz", "method": "GET", "status": "200"}) is None


@pytest.mark.usefixtures("no_multiproc_dir")
def test_the_supervisor_makes_a_private_directory_and_removes_it() -> None:
    with metrics.shared_metrics_dir() as path:
        assert os.environ[ENV] == path and os.path.isdir(path)
        Path(path, "counter_1.db").write_bytes(b"")
    assert ENV not in os.environ and not os.path.exists(path)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        pass  # leaving the block waits for it
    return child.pid


@pytest.mark.usefixtures("no_multiproc_dir")
def test_a_start_removes_the_directories_of_supervisors_that_are_gone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temp dir mkdtemp and the sweep use
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f"citesum-metrics-{dead}-k3x9_a2b"  # a SIGKILLed supervisor's
    (stale / "sub").mkdir(parents=True)
    (stale / f"counter_{dead}.db").write_bytes(b"")
    kept = {
        "running": tmp_path / f"citesum-metrics-{alive}-q8w2_e4r",  # its supervisor still runs
        "orphaned workers": tmp_path / f"citesum-metrics-{dead}-z7y6_x5w",  # a worker outlived the supervisor
        "no pid in the name": tmp_path / "citesum-metrics-m1n2o3p4",  # made before pids were recorded
        "not ours": tmp_path / f"other-metrics-{dead}-abc",
        "symlink target": tmp_path / "target",
    }
    for directory in kept.values():
        directory.mkdir()
    (kept["orphaned workers"] / f"counter_{alive}.db").write_bytes(b"")
    (kept["symlink target"] / "keep").write_bytes(b"")
    link = tmp_path / f"citesum-metrics-{dead}-l1n2_k3s"
    link.symlink_to(kept["symlink target"], target_is_directory=True)

    with metrics.shared_metrics_dir() as path:
        assert not stale.exists()
        assert [name for name, directory in kept.items() if not directory.is_dir()] == []
        assert link.is_symlink() and (kept["symlink target"] / "keep").exists()
        assert Path(path).parent == tmp_path and Path(path).name.startswith(f"citesum-metrics-{alive}-")
    assert not os.path.exists(path)


def test_a_directory_the_user_set_is_used_and_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    with metrics.shared_metrics_dir() as path:
        assert path == str(tmp_path)
        (tmp_path / "counter_1.db").write_bytes(b"")
    assert os.environ[ENV] == str(tmp_path) and (tmp_path / "counter_1.db").exists()


def _started(log: Path, workers: int) -> bool:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return len(worker_pids(log)) >= workers and text.count("Application startup complete") >= workers


def _readyz_until_both_workers_answer(port: int, at_least: int) -> tuple[int, set[int]]:
    """GET /readyz, each on a new connection, until both workers have answered; (requests sent, pids)."""
    pids: set[int] = set()
    sent = 0
    while sent < at_least or len(pids) < 2:
        assert sent < 200, f"only worker(s) {pids} answered {sent} connections"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            answer = client.get("/readyz")
        assert answer.status_code == 200, answer.text
        pids.add(answer.json()["pid"])
        sent += 1
    return sent, pids


def _scrape(port: int) -> tuple[str, int]:
    """GET /metrics, then on the same connection (so the same worker) GET /readyz; (exposition, that worker's pid)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        text = client.get("/metrics").text
        pid = client.get("/readyz").json()["pid"]
    return text, pid


def _supervisor_dir(log: Path) -> str:
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and "share metrics through" in (message := json.loads(line)["message"]):
            return message.rsplit(" ", 1)[1]
    raise AssertionError("serve did not say where its workers share metrics")


def test_every_scrape_counts_the_requests_of_both_workers(tmp_path: Path) -> None:
    env = service_env({"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"), "CITESUM_PROVIDER": "embedded"})
    env.pop(ENV, None)  # the supervisor makes its own directory
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log, workers=2)
    try:
        wait_for(lambda: _started(log, 2), STARTUP_S, "two worker processes to start", watch=process)
        workers = worker_pids(log)
        sent, answered = _readyz_until_both_workers_answer(port, 20)
        assert answered == workers
        scraped_by: set[int] = set()
        scrapes = 0
        while scrapes < 8 or len(scraped_by) < 2:
            assert scrapes < 60, f"every scrape went to worker(s) {scraped_by}"
            time.sleep(0.1)  # the previous scrape's /readyz is counted once its response is sent
            text, pid = _scrape(port)
            # Per process, each worker would report only its own share of the requests.
            assert sample(text, "citesum_http_requests_total", READYZ) == sent, (scrapes, pid)
            assert sample(text, "citesum_http_requests_in_flight") == 1  # this scrape, in whichever worker
            assert sample(text, "citesum_llm_breaker_state") == 0
            sent += 1  # the /readyz that named the worker
            scraped_by.add(pid)
            scrapes += 1
        assert scraped_by == workers
        shared = _supervisor_dir(log)
        assert sorted(p.name for p in Path(shared).glob("counter_*.db")) == sorted(f"counter_{p}.db" for p in workers)
    finally:
        assert stop(process, timeout_s=30) == 0
    assert not os.path.exists(shared)  # private to this run: removed at shutdown


def test_a_killed_worker_keeps_its_counts_and_loses_its_live_gauges(tmp_path: Path) -> None:
    shared = tmp_path / "prom"
    shared.mkdir()  # prometheus_client needs it to exist (the supervisor, importing it, writes there too)
    env = service_env(
        {"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"), "CITESUM_PROVIDER": "embedded", ENV: str(shared)}
    )
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log, workers=2)
    try:
        wait_for(lambda: _started(log, 2), STARTUP_S, "two worker processes to start", watch=process)
        sent, workers = _readyz_until_both_workers_answer(port, 10)
        victim = min(workers)
        assert (shared / f"gauge_livesum_{victim}.db").exists() and (shared / f"gauge_livemax_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)  # no shutdown path of its own runs: the supervisor must mark it dead
        wait_for(lambda: _started(log, 3), STARTUP_S, "uvicorn to replace the killed worker", watch=process)
        wait_for(lambda: not list(shared.glob(f"gauge_live*_{victim}.db")), 20, "the dead worker's live gauges to go")
        assert (shared / f"counter_{victim}.db").exists()
        for _ in range(6):
            text, _pid = _scrape(port)
            assert sample(text, "citesum_http_requests_total", READYZ) == sent  # the dead worker's share stays
            sent += 1
            time.sleep(0.1)
    finally:
        assert stop(process, timeout_s=30) == 0
    assert shared.is_dir() and list(shared.glob("counter_*.db"))  # the user's directory is kept
    assert not list(shared.glob("gauge_live*.db"))  # every worker marked dead at shutdown
