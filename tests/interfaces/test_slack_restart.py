"""A slash command survives a SIGKILL of the API between the ack and the post: one summary arrives, once."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from tests.jobs_fakes import slow_summarizer_env
from tests.process_helpers import free_port, run_events, service_env, start_api, stop, wait_for

pytestmark = pytest.mark.slow

SECRET = "restart-test-secret"


class ResponseUrl:
    """A loopback HTTP server standing in for Slack's response_url: it keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/commands/T1/1/abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ResponseUrl:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def response_url() -> Iterator[ResponseUrl]:
    with ResponseUrl() as receiver:
        yield receiver


def signed_command(response_url: str, **extra_headers: str) -> tuple[bytes, dict[str, str]]:
    """The same slash command every time (same trigger_id), freshly signed as Slack signs a retry."""
    form = {
        "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/summarize", "trigger_id": "13345.9.abc",
        "text": "--public gamma: the talks resume in March.", "response_url": response_url,
    }  # fmt: skip
    body = urllib.parse.urlencode(form).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body) or ""
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    return body, {**headers, "Content-Type": "application/x-www-form-urlencoded", **extra_headers}


def jobs_in(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT id, status, attempts, callback_error FROM jobs").fetchall()


def test_a_slash_command_acked_before_a_kill_9_is_posted_once_after_restart(
    tmp_path: Path, response_url: ResponseUrl
) -> None:
    db, runs = tmp_path / "jobs.sqlite3", tmp_path / "runs.log"
    env = service_env(
        {
            "SLACK_SIGNING_SECRET": SECRET,
            "CITESUM_SLACK_RESPONSE_HOSTS": "127.0.0.1",
            "CITESUM_JOB_DB_PATH": str(db),
            "CITESUM_JOB_LEASE_S": "1",
            **slow_summarizer_env(runs, steps=6, step_s=0.4),
        }
    )
    port = free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def up() -> bool:
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def command(**headers: str) -> httpx.Response:
        body, signed = signed_command(response_url.url, **headers)
        return client.post("/slack/commands", content=body, headers=signed)

    first = start_api(port, env, tmp_path / "api1.log")
    try:
        wait_for(up, 30, "the API to start", watch=first)
        ack = command()
        assert ack.status_code == 200 and "Summarizing" in ack.json()["text"], ack.text
        wait_for(lambda: run_events(runs), 20, "the summary to start")
    finally:
        first.send_signal(signal.SIGKILL)  # after the ack, before the post
        first.wait()
    assert response_url.posts == [] and [e for e, _, _ in run_events(runs)] == ["start"]

    second = start_api(port, env, tmp_path / "api2.log")
    try:
        wait_for(up, 30, "the API to restart", watch=second)
        retry = command(**{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        assert retry.status_code == 200 and "Already working" in retry.json()["text"], retry.text
        wait_for(lambda: response_url.posts, 30, "the summary at the response_url")
        [job] = wait_for(lambda: (rows := jobs_in(db)) and rows[0]["status"] == "succeeded" and rows, 10, "the job")
        late = command(**{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})  # once it is done, too
        assert "Already working" in late.json()["text"]
    finally:
        client.close()
        stop(second)

    assert job["attempts"] == 2 and job["callback_error"] is None  # the killed attempt, then the one that posted
    [message] = response_url.posts  # exactly one post, although the command came three times
    assert message["response_type"] == "in_channel" and message["blocks"] and "gamma" in message["text"]
    events = run_events(runs)
    assert [e for e, _, _ in events] == ["start", "start", "finish"]
    assert events[0][1] == first.pid and events[1][1] == second.pid
