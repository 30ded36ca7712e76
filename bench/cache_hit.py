"""Service time of a result-cache hit (the seed article, embedded summarizer): SQLite, Redis, and over HTTP.

Run: .venv/bin/python -m bench.cache_hit 200   (median and p95 over 200 hits; Redis part needs redis-server)
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.core.config import Settings
from service.core.schema import SummaryRequest
from service.interfaces.api import create_app
from service.jobs.cache import RedisResultCache, ResultCache, SQLiteResultCache, cached_summarize
from service.pipeline.summarize import summarize_request
from service.testing.processes import stop_process

SEED = Path(__file__).resolve().parent.parent / "seeds" / "belarus-putin-options.txt"


def stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median={ordered[len(ordered) // 2]:.3f} ms p95={ordered[int(len(ordered) * 0.95) - 1]:.3f} ms"


async def hits(cache: ResultCache, settings: Settings, runs: int) -> tuple[float, list[float]]:
    """One miss (a real summary), then `runs` hits; returns (miss ms, hit ms samples)."""
    calls = 0

    async def counting(request: SummaryRequest, **kwargs: object):
        nonlocal calls
        calls += 1
        return await summarize_request(request, **kwargs)  # type: ignore[arg-type]

    request = SummaryRequest(text=SEED.read_text(encoding="utf-8"))
    start = time.perf_counter()
    await cached_summarize(request, settings=settings, summarize=counting, cache=cache)
    miss = (time.perf_counter() - start) * 1000
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        _, hit = await cached_summarize(request, settings=settings, summarize=counting, cache=cache)
        samples.append((time.perf_counter() - start) * 1000)
        assert hit
    assert calls == 1
    return miss, samples


async def over_http(settings: Settings, runs: int) -> list[float]:
    """POST /v1/jobs for an already-answered request, in process (ASGI): the job is born succeeded."""
    app = create_app(settings)
    body = {"text": SEED.read_text(encoding="utf-8")}
    samples = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            first = (await client.post("/v1/jobs", json=body)).json()
            while (await client.get(first["url"])).json()["status"] != "succeeded":
                await asyncio.sleep(0.05)
            for _ in range(runs):
                start = time.perf_counter()
                answer = await client.post("/v1/jobs", json=body)
                samples.append((time.perf_counter() - start) * 1000)
                assert answer.json()["status"] == "succeeded"
    return samples


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(job_db_path=f"{tmp}/jobs.sqlite3")
        cache = SQLiteResultCache(settings.job_db_path, ttl_s=3600)
        miss, samples = await hits(cache, settings, runs)
        await cache.close()
        print(f"sqlite  miss={miss:.1f} ms  hit {stats(samples)}  (runs={runs})")
        print(f"http    POST /v1/jobs answered from cache {stats(await over_http(settings, runs))}")
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis   skipped: redis-server not installed")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""], stdout=subprocess.DEVNULL
    )
    try:
        redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
        for _ in range(100):
            try:
                await redis.ping()
                break
            except (OSError, RedisConnectionError):
                await asyncio.sleep(0.05)
        miss, samples = await hits(RedisResultCache(redis, ttl_s=3600), Settings(), runs)
        await redis.aclose()
        print(f"redis   miss={miss:.1f} ms  hit {stats(samples)}")
    finally:
        stop_process(server)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
