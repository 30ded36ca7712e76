"""Benchmark section `hostile`: the hostile inputs of issue 19 against a live server, on loopback only.

Each case is sent a bounded number of times, one after another, with a 60 s client timeout and a
section deadline; it reports each case's status codes and seconds, the longest /healthz answer
seen while they ran (a blocked event loop shows there first), and the server's RSS before, during
and after (the verifier caches must not grow without bound). Fetched cases are served by a small
HTTP server in this process on 127.0.0.1; the citesum server gets CITESUM_FETCH_ALLOW_PRIVATE=true
so it may fetch from loopback, and nothing is sent anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psutil

from bench.harness import RssSampler, ServiceProcess, tree_cpu_s
from bench.inputs import dev_articles, dev_data_missing, seed_text

SECTION_DEADLINE_S = 240.0
CLIENT_TIMEOUT_S = 60.0


def _pages() -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Path -> (status, headers, body) for the hostile pages the local server hands out."""
    one_layer = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MB of zeros in ~64 KB
    return {
        "/huge.txt": (200, {"Content-Type": "text/plain"}, _short_lines(4_900_000)),
        "/bomb": (200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, one_layer),
        "/gzip-gzip": (
            200,
            {"Content-Type": "text/html", "Content-Encoding": "gzip, gzip"},
            gzip.compress(one_layer, compresslevel=9),
        ),
        "/rot13": (200, {"Content-Type": "text/plain; charset=rot13"}, seed_text().encode()),
        "/idna-meta": (200, {"Content-Type": "text/html"}, f'<meta charset="idna"><p>{seed_text()}</p>'.encode()),
        "/bad-redirect": (302, {"Location": "http:127.0.0.1/x"}, b""),
    }


_MARKERS = "early late again still also later today quietly openly firmly".split()


def _distinct_article(run: int, chars: int = 60_000) -> str:
    """About `chars` of real articles (the dev split, rotating; the seed article when it is absent),
    every sentence ending in words that differ from run to run: each request brings sentences no
    cache has seen, but no new word (only known words are added)."""
    n = len(_MARKERS)
    marker = " ".join((_MARKERS[run % n], _MARKERS[run // n % n], _MARKERS[run // n // n % n]))
    sources = [seed_text()] if dev_data_missing() else dev_articles()
    out, total, k = [], 0, run * 7
    while total < chars:
        article = sources[k % len(sources)].replace(". ", f", {marker}. ")
        out.append(article)
        total += len(article) + 2
        k += 1
    return "\n\n".join(out)


def _short_lines(size: int) -> bytes:
    """About `size` bytes of short distinct lines that wrap into one paragraph (quadratic joining once)."""
    lines, total, i = [], 0, 0
    while total < size:
        line = f"w{i}"
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines).encode()


class _Pages(BaseHTTPRequestHandler):
    pages: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, headers, body = self.pages.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped at its cap
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _cases(pages_url: str) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """(name, request body factory): JSON bodies for POST /v1/summaries."""
    seed = seed_text()
    return [
        ("byline_k36", lambda: {"text": "By " + "Xxand" * 36 + "!\n\n" + seed}),
        ("byline_k36_alone", lambda: {"text": "By " + "Xxand" * 36 + "!"}),
        ("short_lines_1.5MB", lambda: {"text": _short_lines(1_500_000).decode()}),
        ("text_over_raw_cap_1.9MB", lambda: {"text": _short_lines(1_900_000).decode()}),
        ("lone_surrogate", lambda: {"text": seed + " \ud800"}),
        ("fetch_4.9MB_page", lambda: {"url": f"{pages_url}/huge.txt"}),
        ("fetch_gzip_bomb_64MB", lambda: {"url": f"{pages_url}/bomb"}),
        ("fetch_gzip_gzip", lambda: {"url": f"{pages_url}/gzip-gzip"}),
        ("fetch_charset_rot13", lambda: {"url": f"{pages_url}/rot13"}),
        ("fetch_meta_charset_idna", lambda: {"url": f"{pages_url}/idna-meta"}),
        ("fetch_bad_redirect", lambda: {"url": f"{pages_url}/bad-redirect"}),
    ]


async def _watch_health(client: httpx.AsyncClient, url: str, stop: asyncio.Event, seen: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            await client.get(f"{url}/healthz", timeout=CLIENT_TIMEOUT_S)
        seen.append(time.perf_counter() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def hostile(bench: Any) -> dict[str, Any]:
    """Status codes and seconds of each hostile case, /healthz's worst answer, server RSS."""
    _Pages.pages = _pages()
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    pages_thread = threading.Thread(target=pages.serve_forever, daemon=True)
    pages_thread.start()
    server = ServiceProcess(
        {
            "CITESUM_WORKERS": "1",
            "CITESUM_FETCH_ALLOW_PRIVATE": "true",  # the hostile pages are on 127.0.0.1
            "CITESUM_JOB_DB_PATH": str(bench.workdir / "jobs-hostile.sqlite3"),
        },
        bench.workdir / "server-hostile.log",
    )
    repeats = bench.n(1, 3)
    deadline = time.monotonic() + SECTION_DEADLINE_S
    results: dict[str, Any] = {"repeats": repeats, "cases": {}}
    try:
        server.start()
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        results["rss_mb_start"] = round(process.memory_info().rss / 2**20, 1)
        health: list[float] = []
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as client, httpx.AsyncClient() as watcher:
            watch = asyncio.create_task(_watch_health(watcher, server.url, stop, health))
            with RssSampler(server.process.pid) as rss:
                # The verifier's caches first, on the fresh server (memory freed by a big case would hide growth):
                # distinct articles, RSS after each; it levels off once the caches are full.
                rss_after, article_statuses = [], []
                for i in range(bench.n(8, 40)):
                    if time.monotonic() > deadline:
                        break
                    answer = await client.post(f"{server.url}/v1/summaries", json={"text": _distinct_article(i)})
                    article_statuses.append(answer.status_code)
                    rss_after.append(round(process.memory_info().rss / 2**20, 1))
                results["rss_mb_after_each_distinct_article"] = rss_after
                results["distinct_article_statuses"] = article_statuses
                for name, body in _cases(f"http://127.0.0.1:{pages.server_port}"):
                    statuses, seconds = [], []
                    cpu_before = tree_cpu_s(process)
                    for _ in range(repeats):
                        if time.monotonic() > deadline:
                            break
                        started = time.perf_counter()
                        try:
                            # ASCII JSON: the lone surrogate travels as the escape "\\ud800", as a client would send it
                            response = await client.post(
                                f"{server.url}/v1/summaries",
                                content=json.dumps(body()).encode(),
                                headers={"content-type": "application/json"},
                            )
                            statuses.append(response.status_code)
                        except httpx.HTTPError as exc:
                            statuses.append(type(exc).__name__)
                        seconds.append(round(time.perf_counter() - started, 3))
                    # Server CPU is what the case cost, whatever else shared the machine (wall time is not).
                    cpu = round(tree_cpu_s(process) - cpu_before, 2)
                    results["cases"][name] = {"statuses": statuses, "seconds": seconds, "server_cpu_s": cpu}
            stop.set()
            await watch
        results["rss_mb_peak"] = rss.peak_mb
        results["healthz_max_s"] = round(max(health), 3) if health else None
        results["healthz_probes"] = len(health)
        # 502 is the answer for a page the site got wrong (bad redirect); 500s and timeouts are bugs.
        results["failures"] = sorted(
            name for name, case in results["cases"].items() if any(s == 500 or isinstance(s, str) for s in case["statuses"])
        )
    finally:
        server.stop()
        pages.shutdown()
        pages.server_close()
    return results

