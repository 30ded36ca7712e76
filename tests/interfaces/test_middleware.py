"""The body cap against a real server: a client that sends a large body without waiting still reads the 413."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from tests.process_helpers import free_port, service_env, start_api, stop, wait_for

MAX_BODY = 100_000
BIG = 20 * 1024 * 1024  # 200 times the cap; within the drain bound (32 MiB), beyond any socket buffer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("body-limit")
    port = free_port()
    env = service_env({"CITESUM_MAX_BODY_BYTES": str(MAX_BODY), "CITESUM_JOB_DB_PATH": str(tmp / "jobs.sqlite3")})
    process = start_api(port, env, tmp / "serve.log")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "the server to answer /healthz", watch=process)
        yield base
    finally:
        stop(process)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_urllib_sending_a_large_body_without_waiting_reads_the_413(server: str) -> None:
    body = b'{"text": "' + b"a" * BIG + b'"}'
    request = urllib.request.Request(server + "/v1/summaries", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # before: URLError [Errno 32] Broken pipe
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    problem = json.loads(refused.value.read())
    assert problem["type"].endswith("body-too-large") and problem["request_id"]
    assert refused.value.headers["x-request-id"] == problem["request_id"]


def test_a_chunked_body_over_the_cap_is_read_then_refused(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    piece = b"a" * 65536
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/summaries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for _ in range(BIG // len(piece)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        answer = read_response(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert json.loads(payload)["request_id"]


def test_an_expect_100_continue_client_is_refused_before_it_sends(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/summaries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (10 * BIG)
        )
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer

