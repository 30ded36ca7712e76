"""Start and stop real service processes (loopback only) or an app in a thread, and read the fakes' run log."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from service.testing.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment (already scrubbed by conftest) plus `extra`, with the repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def start_service(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m service <args>`, output to `log_path` (remembered as `process.log_path` for wait_for)."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


def stop(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    return stop_process(process, timeout_s)


def log_tail(process: subprocess.Popen[bytes], chars: int = 6000) -> str:
    """The end of the log `start_service` sent this process's output to ('' if none)."""
    path = getattr(process, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    return Path(path).read_text(encoding="utf-8", errors="replace")[-chars:]


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    *,
    watch: subprocess.Popen[bytes] | Iterable[subprocess.Popen[bytes]] = (),
) -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout_s`.

    `watch`: processes that must stay up meanwhile. If one exits, fail at once with its exit code
    and the end of its log, instead of waiting out the timeout for a server that is gone.
    """
    watched = [watch] if isinstance(watch, subprocess.Popen) else list(watch)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for process in watched:
            if process.poll() is not None:
                raise AssertionError(
                    f"while waiting for {what}: `{' '.join(map(str, process.args[1:]))}` (pid {process.pid}) "
                    f"exited with code {process.returncode}; its log ends:\n{log_tail(process)}"
                )
        time.sleep(interval_s)
    tails = "".join(f"\n--- log of pid {p.pid}:\n{log_tail(p)}" for p in watched)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{tails}")


def run_events(path: Path) -> list[tuple[str, int, str]]:
    """(event, pid, job word) lines written by tests.jobs_fakes."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event, pid, word = line.split()
        events.append((event, int(pid), word))
    return events


def start_api(port: int, env: dict[str, str], log_path: Path, *, workers: int = 1) -> subprocess.Popen[bytes]:
    """`python -m service serve` on 127.0.0.1:`port` with `workers` processes.

    One by default: the restart tests SIGKILL the server and mean the process that runs the jobs.
    """
    return start_service(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)], env, log_path
    )


def worker_pids(log_path: Path) -> set[int]:
    """Pids of the uvicorn server processes a `serve` log (JSON lines) says were started."""
    pids = set()
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{") and "Started server process [" in line:
            pids.add(int(json.loads(line)["message"].split("[")[1].rstrip("]")))
    return pids


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (not Linux): kill(0) said it exists
        return True


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 (a free port, in a thread); yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # handed to uvicorn, so no other process can take the port
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            thread.join(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
