"""`python -m service worker`: run jobs, from Redis (arq) when REDIS_URL is set, else from the SQLite file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from service.core.config import Settings, get_settings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citesum worker",
        description="Run summary jobs. With REDIS_URL set, take them from Redis (arq); otherwise from the "
        "SQLite job file (CITESUM_JOB_DB_PATH), alongside or instead of the API's in-process worker.",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="jobs at once (CITESUM_JOB_CONCURRENCY)")
    parser.add_argument(
        "--check", action="store_true", help="Redis mode: exit 0 if a worker reported healthy recently, else 1"
    )
    return parser


async def run_arq_worker(settings: Settings) -> None:
    """Run an arq worker until SIGINT/SIGTERM (arq re-queues the job it was running)."""
    from arq.worker import Worker

    from service.jobs.queue_arq import worker_settings

    # Built inside the running loop so arq uses it (and installs its signal handlers on it).
    worker = Worker(**worker_settings(settings))
    try:
        await worker.async_run()
    except asyncio.CancelledError:  # arq cancels its main task on SIGINT/SIGTERM
        pass
    finally:
        await worker.close()


async def run_embedded_worker(settings: Settings) -> None:
    """Run the SQLite worker until SIGINT/SIGTERM."""
    from service.jobs.backend import open_backend

    llm = None
    if settings.llm_configured:
        from service.pipeline.llm import LLMClient

        llm = LLMClient(settings)
    backend = await open_backend(settings, llm=llm)
    assert backend.worker is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await backend.worker.run(stop)
    finally:
        await backend.close()
        if llm is not None:
            await llm.aclose()


def worker_main(argv: list[str]) -> int:
    """Entry point of the `worker` subcommand."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if args.concurrency:
        settings = settings.model_copy(update={"job_concurrency": args.concurrency})
    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("arq").setLevel(settings.log_level.upper())
    if args.check:
        if not settings.redis_url:
            print("REDIS_URL is not set: the --check health probe is for Redis workers")
            return 1
        from arq.worker import check_health

        from service.jobs.queue_arq import worker_settings

        return check_health(worker_settings(settings))
    mode = "redis" if settings.redis_url else f"sqlite ({settings.job_db_path})"
    log.warning("citesum worker starting: %s, concurrency %d", mode, settings.job_concurrency)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_arq_worker(settings) if settings.redis_url else run_embedded_worker(settings))
    return 0
