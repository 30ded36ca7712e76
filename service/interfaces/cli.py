"""The command line: `citesum summarize PATH|URL|-`, `citesum serve`, and the other subcommands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import AliasChoices, ValidationError
from uvicorn.supervisors import Multiprocess

from service.core.config import Settings, get_settings
from service.core.errors import SummaryError, UnsupportedContent
from service.core.logs import configure_logging
from service.core.metrics import mark_worker_dead, shared_metrics_dir
from service.core.redact import redact_credentials
from service.core.schema import SummaryRequest, SummaryResponse
from service.interfaces.auth import OpenAccessRefused, check_serving_access
from service.pipeline.ingest import looks_like_html
from service.pipeline.llm import LLMClient
from service.pipeline.render import (
    render_footer,
    render_markdown,
    render_stream_dropped,
    render_stream_sentence,
    render_text,
)
from service.pipeline.streaming import EventSink, StreamEvent
from service.pipeline.summarize import summarize_request

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


def build_request(source: str, *, html: bool, max_sentences: int | None, policy: str | None) -> SummaryRequest:
    """A SummaryRequest from a path, a URL or '-' (stdin)."""
    if source.startswith(("http://", "https://")):
        return SummaryRequest(url=source, max_sentences=max_sentences, policy=policy)
    if source == "-":
        content = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise SummaryError(f"no such file: {source}")
        with path.open("rb") as file:
            if file.read(5) == b"%PDF-":
                raise UnsupportedContent(
                    f"{source} is a PDF; PDF is not supported: save the article as text or HTML and summarize that"
                )
        content = path.read_text(encoding="utf-8", errors="replace")
        html = html or path.suffix.lower() in {".html", ".htm"}
    field = "html" if html or looks_like_html(content) else "text"
    return SummaryRequest(**{field: content}, max_sentences=max_sentences, policy=policy)


async def _summarize(request: SummaryRequest, settings: Settings, events: EventSink | None = None) -> SummaryResponse:
    llm = LLMClient(settings) if settings.llm_configured else None
    try:
        return await summarize_request(request, settings=settings, llm=llm, events=events)
    finally:
        if llm is not None:
            await llm.aclose()


def print_event(event: StreamEvent, *, as_json: bool) -> None:
    """One event of `summarize --stream`: a JSON line, or a sentence line (dropped ones on stderr)."""
    if as_json:
        print(json.dumps({"event": event.kind, "data": event.data}, ensure_ascii=False), flush=True)
    elif event.kind == "sentence":
        print(render_stream_sentence(event.data), flush=True)
    elif event.kind == "dropped":
        print(render_stream_dropped(event.data), file=sys.stderr, flush=True)


def cmd_summarize(args: argparse.Namespace) -> int:
    settings = get_settings()
    events = (lambda event: print_event(event, as_json=args.json)) if args.stream else None
    try:
        request = build_request(args.source, html=args.html, max_sentences=args.sentences, policy=args.policy)
        response = asyncio.run(_summarize(request, settings, events))
    except SummaryError as exc:
        if args.stream and args.json:
            print(
                json.dumps(
                    {"event": "error", "data": {"status": exc.status, "title": exc.title, "detail": exc.message}}
                )
            )
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # pydantic validation of the request: its messages, without the links
        for error in exc.errors(include_url=False):
            print(f"error: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    if not args.json:
        for note in response.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.stream:  # the sentences are out: the whole response (JSON) or its footer
        if args.json:
            print(json.dumps({"event": "done", "data": response.model_dump(mode="json")}, ensure_ascii=False))
        else:
            print("\n" + render_footer(response))
        return 0
    if args.json:
        print(response.model_dump_json(indent=2))
    elif args.markdown:
        print(render_markdown(response))
    else:
        print(render_text(response))
    return 0


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs a cgroup v2 quota allows (`docker run --cpus`, Kubernetes limits), rounded up; None: no quota."""
    try:
        quota, period = path.read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def resolve_workers(requested: int, cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Worker processes for `serve`: `requested`, or with 0 one per CPU this process may use."""
    if requested > 0:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    # A container sees every host CPU in its affinity mask; its quota is what it may actually use.
    limit = cgroup_cpu_limit(cpu_max)
    return min(cpus, limit) if limit else cpus


def _exit_with_supervisor(supervisor_pid: int, interval_s: float = 0.5) -> None:
    """In a worker process: shut down gracefully (SIGTERM to self) once the supervisor is gone."""
    while os.getppid() == supervisor_pid:
        time.sleep(interval_s)
    log.warning("serve: the supervisor (pid %d) is gone; this worker stops", supervisor_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def serving_app() -> FastAPI:
    """The app as `serve` runs it, in each worker process: settings from the environment, logging set up."""
    from service.interfaces.api import create_app

    settings = get_settings()
    # A worker is a fresh interpreter (spawn): it has none of the supervisor's logging set-up.
    configure_logging(settings.log_format or "json", settings.log_level)
    if multiprocessing.parent_process() is not None:
        # uvicorn's supervisor stops its workers on SIGTERM/SIGINT, but a SIGKILLed supervisor
        # cannot: without this, orphaned workers would keep the port and their job leases.
        threading.Thread(
            target=_exit_with_supervisor, args=(os.getppid(),), name="citesum-supervisor-watch", daemon=True
        ).start()
    return create_app(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    workers = resolve_workers(args.workers if args.workers is not None else settings.workers)
    configure_logging(settings.log_format or "json", settings.log_level)
    # The first line says where to point a browser and where the jobs are kept.
    jobs = f"Redis at {redact_credentials(settings.redis_url)}" if settings.redis_url else f"SQLite file {settings.job_db_path}"
    browse = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, f"[{host}]" if ":" in host else host)
    log.info(
        "serving on %s:%d with %d worker process%s: web page http://%s:%d/ (API docs /docs); jobs in %s",
        host, port, workers, "" if workers == 1 else "es", browse, port, jobs,
    )
    try:
        check_serving_access(settings, host)  # auth.py: open access only on loopback unless allowed
    except OpenAccessRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        from service.jobs.backend import prepare_job_file

        try:
            prepare_job_file(settings.job_db_path)
        except (OSError, sqlite3.Error) as exc:
            print(f"error: cannot create the job file {settings.job_db_path}: {exc} (set CITESUM_JOB_DB_PATH)", file=sys.stderr)
            return 2
    from service.interfaces.bounded_http import BoundedHttpToolsProtocol  # only `serve` needs uvicorn's protocols

    run_server(
        "service.interfaces.cli:serving_app",
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep configure_logging's one handler (JSON by default)
        timeout_keep_alive=settings.http_keep_alive_s,
        # uvicorn's httptools protocol plus header size/time and connection caps (bounded_http.py)
        http=BoundedHttpToolsProtocol,
    )
    return 0


def run_server(app: str, *, workers: int, **options: Any) -> None:
    """`uvicorn.run(app, factory=True, workers=workers, ...)`, with the shared socket of several workers fixed.

    An import string and a factory: uvicorn builds the app inside each worker process (with one
    worker, in this one), so every process has its own event loop, LLM client and job worker.
    """
    if workers == 1:
        uvicorn.run(app, factory=True, **options)
        return
    # What uvicorn.run does for workers > 1, with the listening socket from _TcpConfig, and with
    # PROMETHEUS_MULTIPROC_DIR set before any worker starts, so GET /metrics counts every worker.
    config = _TcpConfig(app, factory=True, workers=workers, **options)
    with shared_metrics_dir(), contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
        _Supervisor(config, sockets=[config.bind_socket()]).run()


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, which also marks each worker that exits dead for the shared metrics.

    uvicorn has no hook for that. Workers leave its list only once joined: a dead or hung one in
    `keep_subprocess_alive` (SIGKILL, crash), a retired one on SIGHUP/SIGTTOU in `handle_signals`,
    which runs just before it in each turn of the loop; all of them in `join_all` at shutdown. So
    after each of those, every pid gone from the list has exited and its `live*` gauges (in-flight
    counts, breaker state) are dropped; its counters and histograms stay in the totals.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._pids: set[int] = set()

    def init_processes(self) -> None:
        super().init_processes()
        self._pids = self._listed_pids()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        pids = self._listed_pids()
        for pid in self._pids - pids:
            mark_worker_dead(pid)
        self._pids = pids

    def join_all(self) -> None:
        super().join_all()
        for pid in self._pids | self._listed_pids():
            mark_worker_dead(pid)
        self._pids = set()

    def _listed_pids(self) -> set[int]:
        return {process.pid for process in self.processes if process.pid is not None}


class _TcpConfig(uvicorn.Config):
    """uvicorn.Config whose pre-bound TCP socket says it is TCP, so accepted connections get TCP_NODELAY.

    uvicorn (0.54) binds the socket it shares with its workers as `socket.socket(family)`, proto 0;
    accepted sockets inherit that, and asyncio sets TCP_NODELAY only on proto IPPROTO_TCP. Without
    it Nagle holds each response's body behind its headers until the client's delayed ACK: +40 ms
    per keep-alive request (Kludex/uvicorn#3149, open). Module level: it is pickled to the workers.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        if self.workers > 1 and sys.platform.startswith("linux"):  # BSD/macOS SO_REUSEPORT does not spread
            family, address = sock.family, sock.getsockname()[:2]
            sock.close()
            return _ReusePortSocket.bind_to(family, address)
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
        return sock


class _ReusePortSocket(socket.socket):
    """A TCP socket in a SO_REUSEPORT group that each worker process re-creates for itself.

    uvicorn hands one socket to all its workers, and whichever worker wakes first accepts every
    connection waiting (asyncio accepts in a loop): a burst of keep-alive connections can land
    mostly on one worker, which then queues while the other idles (measured here: 5.9 vs 3.2 s
    of CPU, p99 2x). Pickled to a worker, this socket is re-bound there as its own listener in
    the group, so the kernel (Linux) spreads new connections evenly across workers by address hash.
    The supervisor keeps its bound (never listening) member, so the port stays reserved.
    """

    @classmethod
    def bind_to(cls, family: socket.AddressFamily, address: tuple[str, int]) -> _ReusePortSocket:
        sock = cls(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        return sock

    def __reduce__(self) -> tuple[Any, ...]:
        return _ReusePortSocket.bind_to, (self.family, self.getsockname()[:2])


def _sentences(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 30, not {text!r}") from None
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"must be from 1 to 30, not {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citesum", description="Cited, verified summaries of news articles.")
    commands = parser.add_subparsers(dest="command", required=True)

    summarize = commands.add_parser("summarize", help="summarize a file, a URL, or '-' for stdin")
    summarize.add_argument("source", help="path to a .txt/.html file, an http(s) URL, or '-'")
    summarize.add_argument(
        "-n", "--sentences", type=_sentences, default=None, help="at most this many sentences (1-30; default 5)"
    )
    summarize.add_argument("--policy", choices=["drop", "flag", "repair"], default=None)
    summarize.add_argument("--html", action="store_true", help="treat the input as HTML")
    output = summarize.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print the API's JSON response (citation offsets count characters in the cleaned article,"
        " document.text, not in the input file)",
    )
    output.add_argument("--markdown", action="store_true", help="print Markdown with footnotes")
    summarize.add_argument(
        "--stream",
        action="store_true",
        help="print each sentence as soon as it is verified (with --json: one JSON event per line)",
    )
    summarize.set_defaults(handler=cmd_summarize)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers", type=_count, default=None, help="worker processes (default: CITESUM_WORKERS; 0 = one per CPU)"
    )
    serve.set_defaults(handler=cmd_serve)
    # Listed for --help; main() hands their arguments to their own parsers (`citesum worker --help`).
    for name, help_text in DELEGATED_HELP.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


# Subcommands whose own modules parse their arguments.
DELEGATED_HELP = {
    "worker": "run summary jobs (from Redis with REDIS_URL, else from the SQLite job file)",
    "eval-verifier": "measure the verifier on the labelled dev files",
    "train-verifier": "retrain the verifier's weights from the labelled dev files",
}
DELEGATED = {
    "eval-verifier": ("service.evaluation.evaluate", "eval_verifier_main"),
    "train-verifier": ("service.evaluation.training", "train_verifier_main"),
    "worker": ("service.jobs.worker", "worker_main"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `citesum` and `python -m service`: a bad setting or a closed pipe is one line, not a traceback."""
    try:
        return _main(argv)
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        for line in settings_errors(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `citesum ... | head` closed our stdout: stop quietly, as the Python docs advise (a flush at
        # exit would raise again, so stdout goes to devnull first).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named as the environment variable a user sets."""
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = Settings.model_fields.get(name)
        alias = field.validation_alias if field is not None else None
        variable = alias.choices[0] if isinstance(alias, AliasChoices) else f"CITESUM_{name.upper()}"
        lines.append(f"setting {variable}={error.get('input')!r}: {error['msg']}")
    return lines


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if get_settings().log_format == "json":
        configure_logging("json", "WARNING")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in DELEGATED:
        import importlib

        module_name, function_name = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module_name), function_name)(argv[1:])
    args = build_parser().parse_args(argv)
    return args.handler(args)
