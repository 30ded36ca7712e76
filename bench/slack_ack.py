"""Signed /summarize with the seed article against real servers on loopback: ack time and delivery time.

Run: .venv/bin/python -m bench.slack_ack 20   (medians and maxima over 20 commands, embedded default)
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from slack_sdk.signature import SignatureVerifier

from service.core.config import Settings
from service.interfaces.api import create_app
from service.interfaces.slack import router

SECRET = "bench-secret"
SEED = Path(__file__).resolve().parent.parent / "seeds" / "belarus-putin-options.txt"


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signed_command(text: str, trigger_id: str, response_url: str) -> tuple[bytes, dict[str, str]]:
    """A slash-command body and Slack's headers for it, signed by slack_sdk."""
    fields = {"command": "/summarize", "text": text, "team_id": "T1", "user_id": "U1", "channel_id": "C1"}
    body = urllib.parse.urlencode({**fields, "trigger_id": trigger_id, "response_url": response_url}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body) or ""
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    return body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}


async def main(runs: int) -> None:
    """Start the app and a response_url receiver on loopback, send `runs` commands, print the timings."""
    delivered: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> str:
        await delivered.put((time.perf_counter(), await request.json()))
        return "ok"

    receiver_port, app_port = free_port(), free_port()
    # Each command runs as a job (SQLite in a temp dir); the result cache is off so every run summarizes.
    job_db = Path(tempfile.mkdtemp(prefix="citesum-bench-")) / "jobs.sqlite3"
    settings = Settings(
        slack_signing_secret=SECRET, slack_response_hosts=["127.0.0.1"], job_db_path=str(job_db), cache_enabled=False
    )
    app = create_app(settings)
    if not any(getattr(route, "path", "") == "/slack/commands" for route in app.routes):
        app.include_router(router)
    servers = [
        uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning"))
        for asgi, port in ((receiver, receiver_port), (app, app_port))
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        await asyncio.sleep(0.05)
    text = SEED.read_text(encoding="utf-8")
    acks, deliveries = [], []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app_port}") as client:
        for run in range(runs):
            body, headers = signed_command(text, f"bench-{run}", f"http://127.0.0.1:{receiver_port}/hook")
            start = time.perf_counter()
            response = await client.post("/slack/commands", content=body, headers=headers)
            acks.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
            done, message = await asyncio.wait_for(delivered.get(), 60)
            deliveries.append((done - start) * 1000)
            assert message["response_type"] == "in_channel" and len(message["blocks"]) <= 50
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)
    first, rest = acks[0], sorted(acks[1:]) or [acks[0]]  # the first request also warms the process up
    deliveries.sort()
    print(
        f"runs={runs} ack_ms first={first:.1f} then median={rest[len(rest) // 2]:.1f} max={rest[-1]:.1f} | "
        f"summary_delivered_ms median={deliveries[runs // 2]:.1f} max={deliveries[-1]:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
