"""Header size, header time and connection caps, against a real `serve` on loopback with real sockets."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.process_helpers import free_port, service_env, start_api, stop, wait_for

MAX_HEADER_BYTES = 16_384
HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("bounded-http")
    port = free_port()
    env = service_env(
        {
            "CITESUM_HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
            "CITESUM_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "CITESUM_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "CITESUM_JOB_DB_PATH": str(tmp / "jobs.sqlite3"),
        }
    )
    process = start_api(port, env, tmp / "serve.log")
    try:
        wait_for(lambda: healthy(port), 60, "the server to answer /healthz", watch=process)
        yield "127.0.0.1", port
    finally:
        stop(process)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds the wait)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65_536):
            data += chunk
    return data


def health_on(sock: socket.socket) -> bytes:
    """GET /healthz on an open connection; the status line and headers of the answer."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"}"):  # the body is {"status":"ok"}; headers and body may come apart
        chunk = sock.recv(65_536)
        if not chunk:
            break
        data += chunk
    return data


def test_headers_over_the_cap_get_431(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * (2 * MAX_HEADER_BYTES))
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"headers-too-large" in answer


def test_endless_headers_are_cut_off_early(server: tuple[str, int]) -> None:
    # Before: the server parsed all of it (100 MB of headers: 25 s, +190 MB). Now it stops reading
    # past the cap, so sending fails long before the bound of this loop (20 MB).
    sent, piece = 0, b"X-Junk: " + b"a" * 65_000 + b"\r\n"
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            while sent < 20_000_000:
                sock.sendall(piece)
                sent += len(piece)
    assert sent < 10_000_000, f"the server kept reading headers: {sent:,} bytes"


def test_slow_headers_are_closed_after_the_header_timeout(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=HEADER_TIMEOUT_S + 5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
        started = time.monotonic()
        answer = answer_of(sock)  # before: timed out here, the connection held open
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < HEADER_TIMEOUT_S + 4


def test_a_silent_connection_is_closed_after_the_header_timeout(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=HEADER_TIMEOUT_S + 5) as sock:
        assert answer_of(sock).startswith(b"HTTP/1.1 408")


def test_connections_over_the_cap_get_503_and_normal_requests_still_work(server: tuple[str, int]) -> None:
    held = [socket.create_connection(server, timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # make sure the server has accepted every one of them
            assert health_on(sock).startswith(b"HTTP/1.1 200")
        with socket.create_connection(server, timeout=5) as extra:
            answer = answer_of(extra)
        assert answer.startswith(b"HTTP/1.1 503") and b"overloaded" in answer
        # A connection already open is still served.
        assert health_on(held[0]).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: healthy(server[1]), 10, "a new connection to be served once the others closed")


def test_a_normal_keep_alive_request_within_the_limits_is_served(server: tuple[str, int]) -> None:
    with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz", headers={"X-Fine": "b" * (MAX_HEADER_BYTES // 2)}).status_code == 200
            time.sleep(HEADER_TIMEOUT_S / 2)  # idle keep-alive between requests is not a slow header
        assert client.get("/healthz").status_code == 200
