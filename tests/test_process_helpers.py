"""tests/process_helpers.py: a server that exits while a test waits for it fails the test at once, with its log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.process_helpers import free_port, service_env, start_api, start_service, stop, wait_for


def test_wait_for_fails_at_once_with_the_log_when_the_watched_server_exits(tmp_path: Path) -> None:
    # Open access on a non-loopback host without CITESUM_ALLOW_OPEN: serve refuses and exits 2.
    env = service_env({"CITESUM_HOST": "0.0.0.0"})
    process = start_service(["serve", "--port", str(free_port())], env, tmp_path / "serve.log")
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError) as failure:
            wait_for(lambda: False, 120, "the API to start", watch=process)
    finally:
        stop(process)
    assert time.monotonic() - started < 60  # not the 120 s timeout
    message = str(failure.value)
    assert "exited with code 2" in message and "the API to start" in message
    assert "refusing to serve /v1/* without API keys on 0.0.0.0" in message  # the server's own log


def test_the_timeout_message_carries_the_watched_logs(tmp_path: Path) -> None:
    port = free_port()
    process = start_api(port, service_env({}), tmp_path / "serve.log")
    try:
        with pytest.raises(AssertionError, match=r"(?s)timed out after 0.2 s waiting for nothing.*--- log of pid"):
            wait_for(lambda: False, 0.2, "nothing", watch=[process])
    finally:
        stop(process)

