"""`citesum serve --workers N`: N uvicorn worker processes on one port, started and stopped for real."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.interfaces import cli
from tests.conftest import SEED_ARTICLE
from tests.jobs_fakes import slow_summarizer_env
from tests.process_helpers import (
    free_port,
    pid_alive,
    run_events,
    service_env,
    start_api,
    stop,
    wait_for,
    worker_pids,
)

STARTUP_S = 120  # two fresh interpreters importing the app on a busy 2-core machine


def test_zero_workers_means_one_per_cpu(tmp_path: Path) -> None:
    no_quota = tmp_path / "absent"
    assert cli.resolve_workers(3, no_quota) == 3
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cli.resolve_workers(0, no_quota) == cpus >= 1


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("junk", None)]
)
def test_a_cgroup_cpu_quota_caps_the_default(tmp_path: Path, cpu_max: str, limit: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max, encoding="ascii")
    assert cli.cgroup_cpu_limit(path) == limit
    cpus = cli.resolve_workers(0, tmp_path / "absent")
    assert cli.resolve_workers(0, path) == (min(cpus, limit) if limit else cpus)
    assert cli.resolve_workers(4, path) == 4  # an explicit count is taken as given


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """`cmd_serve` configures logging for the process it runs in: put pytest's back afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names]
    propagate = {n: logging.getLogger(n).propagate for n in names}
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate[logger.name if logger.name != "root" else ""]


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize(
    ("env", "argv", "workers"),
    [({"CITESUM_WORKERS": "3"}, [], 3), ({"CITESUM_WORKERS": "3"}, ["--workers", "2"], 2), ({}, ["--workers", "1"], 1)],
)
def test_serve_hands_uvicorn_the_factory_and_the_worker_count(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str], workers: int
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(cli, "run_server", lambda app, **kwargs: calls.append((app, kwargs)))
    assert cli.main(["serve", "--port", "9", *argv]) == 0
    [(app, kwargs)] = calls
    assert app == "service.interfaces.cli:serving_app"
    assert kwargs["workers"] == workers and kwargs["port"] == 9


def _worker_sockets(count: int) -> tuple[socket.socket, list[socket.socket]]:
    """The supervisor's socket for `serve --workers 2`, and `count` workers' copies of it, as multiprocessing makes them."""
    supervisor = cli._TcpConfig("service.interfaces.cli:serving_app", factory=True, host="127.0.0.1", port=0, workers=2)
    sock = supervisor.bind_socket()
    return sock, [pickle.loads(ForkingPickler.dumps(sock)) for _ in range(count)]


async def _accept(listeners: list[socket.socket], connections: int) -> list[list[int]]:
    """Open `connections` to the listeners' port; per listener, the TCP_NODELAY of each accepted socket."""
    accepted: list[list[int]] = [[] for _ in listeners]

    def protocol(index: int) -> type[asyncio.Protocol]:
        class Report(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted[index].append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        return Report

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(protocol(i), sock=sock) for i, sock in enumerate(listeners)]
    port = listeners[0].getsockname()[1]
    writers = [(await asyncio.open_connection("127.0.0.1", port))[1] for _ in range(connections)]
    while sum(map(len, accepted)) < connections:
        await asyncio.sleep(0.01)
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()
    return accepted


def test_worker_sockets_give_connections_tcp_nodelay() -> None:
    """Kludex/uvicorn#3149: uvicorn's own shared socket is proto 0, so asyncio leaves Nagle on."""
    supervisor, [worker] = _worker_sockets(1)
    assert worker.proto == socket.IPPROTO_TCP
    [seen] = asyncio.run(asyncio.wait_for(_accept([worker], 1), 10))
    supervisor.close()
    assert seen == [1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only")
def test_each_worker_listens_on_its_own_socket_and_connections_are_spread() -> None:
    supervisor, workers = _worker_sockets(2)
    assert len({w.fileno() for w in workers}) == 2 and {w.getsockname() for w in workers} == {supervisor.getsockname()}
    per_worker = asyncio.run(asyncio.wait_for(_accept(workers, 40), 20))
    supervisor.close()
    # The kernel hashes each new connection to one listener: both get some (all 40 to one: 2 in 2**40).
    assert sorted(map(len, per_worker))[0] > 0 and sum(map(len, per_worker)) == 40
    assert {flag for flags in per_worker for flag in flags} == {1}


def test_a_negative_worker_count_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--workers", "-1"])
    assert exited.value.code == 2 and "must be 0 or more" in capsys.readouterr().err


def _started(log: Path, workers: int) -> bool:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return len(worker_pids(log)) == workers and text.count("Application startup complete") == workers


def test_two_workers_answer_and_shut_down_cleanly(tmp_path: Path) -> None:
    env = service_env({"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"), "CITESUM_PROVIDER": "embedded"})
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log, workers=2)
    try:
        wait_for(lambda: _started(log, 2), STARTUP_S, "two worker processes to start", watch=process)
        pids = worker_pids(log)
        assert process.pid not in pids  # the supervisor only supervises
        text = SEED_ARTICLE.read_text(encoding="utf-8")
        # A new connection per request, so the kernel may hand them to either worker.
        for n in range(6):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                answer = client.post("/v1/summaries", json={"text": f"{text}\n\nRef {n}.", "max_sentences": 2})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["summary"] and all(
                    body["document"]["text"][c["start"] : c["end"]] == c["quote"]
                    for s in body["summary"]
                    for c in s["citations"]
                )
                assert client.get("/readyz").json()["checks"] == {"prompts": "ok", "job_store": "ok"}
    finally:
        code = stop(process, timeout_s=30)
    assert code == 0
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 15, "the worker processes to exit")
    lines = log.read_text(encoding="utf-8")
    assert all(f"Finished server process [{pid}]" in lines for pid in pids)  # each shut down gracefully
    assert '"level": "ERROR"' not in lines and "Traceback" not in lines


def test_jobs_submitted_to_two_workers_each_run_exactly_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    env = service_env(
        {
            "CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"),
            **slow_summarizer_env(runs, steps=2, step_s=0.05),
        }
    )
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log, workers=2)
    try:
        wait_for(lambda: _started(log, 2), STARTUP_S, "two worker processes to start", watch=process)
        locations = []
        for n in range(16):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                answer = client.post("/v1/jobs", json={"text": f"job{n}: the talks resume in March, officials said."})
                assert answer.status_code == 202, answer.text
                locations.append(answer.headers["location"])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def all_finished() -> list[dict[str, Any]] | None:
                jobs = [client.get(location).json() for location in locations]
                return jobs if all(job["status"] in ("succeeded", "failed") for job in jobs) else None

            jobs = wait_for(all_finished, 60, "every job to finish")
    finally:
        assert stop(process, timeout_s=30) == 0
    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 16
    events = run_events(runs)
    for event in ("start", "finish"):
        assert sorted(word for e, _, word in events if e == event) == sorted(f"job{n}" for n in range(16))
    assert {pid for _, pid, _ in events} <= worker_pids(log)  # jobs ran inside the serving processes


def test_workers_stop_on_their_own_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    # A SIGKILLed supervisor cannot remove a metrics directory of its own: give it one in tmp_path.
    (tmp_path / "prom").mkdir()
    env = service_env(
        {
            "CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"),
            "CITESUM_PROVIDER": "embedded",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        }
    )
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log, workers=2)
    try:
        wait_for(lambda: _started(log, 2), STARTUP_S, "two worker processes to start", watch=process)
        pids = worker_pids(log)
    finally:
        process.send_signal(signal.SIGKILL)  # the supervisor cannot pass anything on
        process.wait()
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 20, "the orphaned workers to exit")
    assert "the supervisor" in log.read_text(encoding="utf-8")
    # The port is free again: a new server can take it.
    again = start_api(port, env, tmp_path / "again.log")
    try:
        wait_for(lambda: _started(tmp_path / "again.log", 1), STARTUP_S, "a new server on the same port", watch=again)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        assert stop(again) in (0, -signal.SIGTERM)  # one process: uvicorn re-raises SIGTERM after shutting down


def test_a_port_already_taken_stops_serve_with_workers(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = service_env({"CITESUM_JOB_DB_PATH": str(tmp_path / "jobs.sqlite3"), "CITESUM_PROVIDER": "embedded"})
    process = start_api(port, env, tmp_path / "serve.log", workers=2)
    try:
        code = wait_for(lambda: process.poll(), STARTUP_S, "serve to give up")  # exit codes here are non-zero
    finally:
        stop(process)
        taken.close()
    assert code != 0 and "address already in use" in (tmp_path / "serve.log").read_text(encoding="utf-8").lower()


def test_the_first_log_line_names_the_web_page_and_the_job_file_in_the_data_folder(tmp_path: Path) -> None:
    """Unset, the job file is in the user's data folder (XDG_DATA_HOME here), not the folder serve starts in."""
    env = service_env({"XDG_DATA_HOME": str(tmp_path / "data")})
    env.pop("CITESUM_JOB_DB_PATH", None)
    port, log = free_port(), tmp_path / "serve.log"
    process = start_api(port, env, log)
    expected = tmp_path / "data" / "citesum" / "jobs.sqlite3"
    try:
        wait_for(lambda: _started(log, 1), STARTUP_S, "the server to start", watch=process)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert expected.is_file()
    finally:
        stop(process)
    first = json.loads(next(line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")))
    assert f"web page http://127.0.0.1:{port}/" in first["message"]
    assert f"jobs in SQLite file {expected}" in first["message"]


def test_a_job_file_that_cannot_be_created_stops_serve_once_with_a_plain_message(tmp_path: Path) -> None:
    """The supervisor creates the job file before any worker starts (so workers never race to create it)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the job file's folder should be", encoding="utf-8")
    env = service_env({"CITESUM_JOB_DB_PATH": str(blocker / "jobs.sqlite3")})
    process = start_api(free_port(), env, tmp_path / "serve.log", workers=2)
    try:
        code = wait_for(lambda: process.poll() is not None, STARTUP_S, "serve to give up") and process.returncode
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert code == 2
    assert f"error: cannot create the job file {blocker / 'jobs.sqlite3'}" in log and "CITESUM_JOB_DB_PATH" in log
    assert "Traceback" not in log and "Started server process" not in log
