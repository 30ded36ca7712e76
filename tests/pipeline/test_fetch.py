"""Tests for service.pipeline.fetch: address checks (SSRF), DNS pinning, redirects, limits and decoding."""

from __future__ import annotations

import asyncio
import gzip
import re
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest
from pytest_httpx import HTTPXMock, IteratorStream

from service.core.config import Settings
from service.core.errors import ArticleTooLong, FetchFailed, InvalidInput, UnsupportedContent, URLNotAllowed
from service.pipeline.fetch import address_refusal, check_url, fetch_url

HTML = "<html><head><title>T</title></head><body><p>Hello from the page.</p></body></html>"
PUBLIC_V4 = "93.184.215.14"


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


# --- SSRF: every address form, before any connection ------------------------------------------

# (url, words the refusal must contain, host actually requested when private targets are allowed)
REFUSED = [
    ("http://127.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("https://127.0.0.1:8443/admin", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://127.9.9.9/", "loopback", "127.9.9.9"),
    ("http://localhost/", "localhost is a loopback name", "localhost"),
    ("http://LOCALHOST./", "localhost is a loopback name", "localhost."),
    ("http://api.localhost/", "loopback name", "api.localhost"),
    ("http://10.0.0.5/", "10.0.0.5 is a private address", "10.0.0.5"),
    ("http://172.16.3.4/", "private address", "172.16.3.4"),
    ("http://192.168.1.1/", "private address", "192.168.1.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address", "169.254.169.254"),
    ("http://169.254.1.1/", "link-local address", "169.254.1.1"),
    ("http://100.64.0.1/", "100.64.0.1 is a shared (CGNAT) address", "100.64.0.1"),
    ("http://100.127.255.254/", "shared (CGNAT) address", "100.127.255.254"),
    ("http://0.0.0.0/", "0.0.0.0 is an unspecified address", "0.0.0.0"),
    ("http://224.0.0.1/", "multicast address", "224.0.0.1"),
    ("http://240.0.0.1/", "reserved address", "240.0.0.1"),
    ("http://255.255.255.255/", "255.255.255.255", "255.255.255.255"),
    ("http://192.0.2.1/", "192.0.2.1", "192.0.2.1"),
    ("http://[::1]/", "::1 is a loopback address", "::1"),
    ("http://[::]/", ":: is an unspecified address", "::"),
    ("http://[fe80::1]/", "link-local address", "fe80::1"),
    ("http://[fc00::1]/", "private address", "fc00::1"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address", "fd00:ec2::254"),
    ("http://[ff02::1]/", "multicast address", "ff02::1"),
    ("http://[::ffff:127.0.0.1]/", "an IPv6 form of 127.0.0.1, a loopback address", "::ffff:127.0.0.1"),
    ("http://[::ffff:7f00:1]/", "an IPv6 form of 127.0.0.1", "::ffff:7f00:1"),
    ("http://[::ffff:169.254.169.254]/", "an IPv6 form of 169.254.169.254, a cloud metadata", "::ffff:169.254.169.254"),
    ("http://[::ffff:10.1.2.3]/", "an IPv6 form of 10.1.2.3, a private address", "::ffff:10.1.2.3"),
    ("http://[64:ff9b::7f00:1]/", "an IPv6 form of 127.0.0.1", "64:ff9b::7f00:1"),
    ("http://[2002:7f00:1::]/", "an IPv6 form of 127.0.0.1", "2002:7f00:1::"),
    ("http://2130706433/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://127.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://017700000001/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://0xa9fea9fe/", "169.254.169.254 is a cloud metadata address", "169.254.169.254"),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        "metadata.google.internal is a cloud metadata host",
        "metadata.google.internal",
    ),
    ("http://Metadata.Google.Internal./", "cloud metadata host", "metadata.google.internal."),
    ("http://user:pw@127.0.0.1:8080/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    # parser confusion: the host checked is the host httpx connects to
    ("http://news.example\\@127.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://127。0。0。1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://[::ffff:127.0.0.1%25eth0]/", "an IPv6 form of 127.0.0.1", "::ffff:127.0.0.1%25eth0"),
    (" HTTP://127.0.0.1/ ", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://[fec0::1]/", "fec0::1 is a site-local address", "fec0::1"),
    ("http://[::127.0.0.1]/", "::7f00:1 is a reserved address", "::127.0.0.1"),
    ("http://0/", "0.0.0.0 is an unspecified address", "0.0.0.0"),
    ("http://127.000.000.001/", "127.0.0.1 is a loopback address", "127.0.0.1"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "is a private address", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
]


@pytest.mark.parametrize(("url", "reason", "host"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_private_targets_are_refused_before_any_request(
    httpx_mock: HTTPXMock, url: str, reason: str, host: str
) -> None:
    with pytest.raises(URLNotAllowed) as caught:
        await fetch_url(url, _settings())
    assert caught.value.status == 400
    assert reason in caught.value.message
    assert caught.value.message.startswith(f"refusing to fetch {url}: ")
    assert "set CITESUM_FETCH_ALLOW_PRIVATE=true to allow" in caught.value.message
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(("url", "reason", "host"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_private_targets_are_allowed_by_the_setting(
    httpx_mock: HTTPXMock, url: str, reason: str, host: str
) -> None:
    httpx_mock.add_response(html=HTML)
    page = await fetch_url(url, _settings(fetch_allow_private=True))
    assert "Hello from the page." in page.text
    [request] = httpx_mock.get_requests()
    assert request.url.host == host


@pytest.mark.parametrize(
    "url",
    [f"http://{PUBLIC_V4}/", "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", "https://news.example/a?b=1"],
)
async def test_public_targets_are_fetched(httpx_mock: HTTPXMock, url: str) -> None:
    httpx_mock.add_response(html=HTML)
    page = await fetch_url(url, _settings())
    assert page.content_type == "text/html"
    assert page.url == str(httpx.URL(url))


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://news.example/a.txt", URLNotAllowed),
        ("file:///etc/passwd", URLNotAllowed),
        ("gopher://127.0.0.1:6379/_INFO", URLNotAllowed),
        ("javascript:alert(1)", URLNotAllowed),
        ("http://", InvalidInput),
        ("http://news.example:99999/", InvalidInput),
        ("http://[::1/", InvalidInput),
    ],
)
async def test_bad_schemes_and_malformed_urls(httpx_mock: HTTPXMock, url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        await fetch_url(url, _settings(fetch_allow_private=True))
    assert httpx_mock.get_requests() == []


def test_address_refusal_accepts_public_addresses() -> None:
    import ipaddress

    for public in (PUBLIC_V4, "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:93.184.215.14"):
        assert address_refusal(ipaddress.ip_address(public)) is None


def test_check_url_canonicalises_numeric_hosts_when_allowed() -> None:
    assert str(check_url("http://u@0x7f.1:81/p?q", allow_private=True)) == "http://u@127.0.0.1:81/p?q"


# --- DNS: resolved addresses are checked and pinned -----------------------------------------------


@dataclass
class ConnectionLog:
    """What the fake socket layer saw: where it connected, TLS server names, bytes written."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    written: bytearray = field(default_factory=bytearray)


class FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, reply: bytes, log: ConnectionLog) -> None:
        self._reply = [reply]
        self._log = log

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._reply.pop(0) if self._reply else b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._log.written += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(self, ssl_context: object, server_hostname: str | None = None, timeout: float | None = None):
        self._log.server_names.append(server_hostname)
        return self

    def get_extra_info(self, info: str) -> None:
        return None


class FakeConnector(httpcore.AsyncNetworkBackend):
    """Stands in for sockets: records every connect and answers each with the next canned reply."""

    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.log = ConnectionLog()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        self.log.connects.append((host, port))
        return FakeStream(self.replies.pop(0), self.log)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # type: ignore[no-untyped-def]
        raise AssertionError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        pass


def _reply(status: str = "200 OK", body: bytes = b"<p>Pinned page.</p>", **headers: str) -> bytes:
    head = {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)), **headers}
    lines = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body


class ChangingResolver:
    """A DNS stand-in whose answer for a host changes from one lookup to the next."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


# pytest-httpx lets every request through to the real transport here; the FakeConnector is the
# only "network", so nothing leaves the process.
passthrough = pytest.mark.httpx_mock(should_mock=lambda request: False)


@passthrough
async def test_dns_rebinding_cannot_move_the_connection(httpx_mock: HTTPXMock) -> None:
    resolver = ChangingResolver({"news.example": [[PUBLIC_V4], ["127.0.0.1"]]})
    connector = FakeConnector(_reply())
    page = await fetch_url("http://news.example/story", _settings(), resolver=resolver, connector=connector)
    assert page.text == "<p>Pinned page.</p>"
    # one lookup, and the socket went to the address that lookup returned and was checked
    assert resolver.lookups == ["news.example"]
    assert connector.log.connects == [(PUBLIC_V4, 80)]
    assert b"Host: news.example\r\n" in connector.log.written

    # the next lookup answers 127.0.0.1: refused before any socket is opened
    with pytest.raises(URLNotAllowed) as caught:
        await fetch_url("http://news.example/story", _settings(), resolver=resolver, connector=connector)
    assert "news.example is not a public address" in caught.value.message
    assert "127.0.0.1" not in caught.value.message
    assert connector.log.connects == [(PUBLIC_V4, 80)]


@passthrough
async def test_tls_keeps_the_host_name_while_connecting_to_the_checked_address(httpx_mock: HTTPXMock) -> None:
    resolver = ChangingResolver({"news.example": [[PUBLIC_V4]]})
    connector = FakeConnector(_reply())
    await fetch_url("https://news.example/story", _settings(), resolver=resolver, connector=connector)
    assert connector.log.connects == [(PUBLIC_V4, 443)]
    assert connector.log.server_names == ["news.example"]


@passthrough
@pytest.mark.parametrize(
    "answers", [["10.0.0.7"], [PUBLIC_V4, "127.0.0.1"], ["::ffff:169.254.169.254"], ["fe80::1%eth0"]]
)
async def test_every_resolved_address_is_checked(httpx_mock: HTTPXMock, answers: list[str]) -> None:
    """Every answer is checked, and the refusal never says what DNS answered (issue 19: it named the
    internal address and its kind, a map of the operator's network for anyone who asks)."""
    connector = FakeConnector()
    with pytest.raises(URLNotAllowed) as caught:
        await fetch_url(
            "http://intranet.example/",
            _settings(),
            resolver=ChangingResolver({"intranet.example": [answers]}),
            connector=connector,
        )
    message = caught.value.message
    assert message.startswith("refusing to fetch http://intranet.example/: intranet.example is not a public address")
    refused = answers[-1].split("%")[0]
    assert refused not in message and refused not in str(caught.value.facts)
    assert not any(kind in message for kind in ("private", "loopback", "metadata", "link-local"))
    assert connector.log.connects == []


@passthrough
async def test_redirect_to_a_name_that_resolves_privately_is_refused(httpx_mock: HTTPXMock) -> None:
    resolver = ChangingResolver({"news.example": [[PUBLIC_V4]], "internal.example": [["192.168.0.10"]]})
    connector = FakeConnector(_reply("302 Found", b"", Location="http://internal.example/secrets"), _reply())
    with pytest.raises(URLNotAllowed, match="internal.example is not a public address") as caught:
        await fetch_url("http://news.example/", _settings(), resolver=resolver, connector=connector)
    assert "192.168" not in caught.value.message
    assert connector.log.connects == [(PUBLIC_V4, 80)]


@passthrough
async def test_private_answer_is_used_when_allowed(httpx_mock: HTTPXMock) -> None:
    connector = FakeConnector(_reply())
    resolver = ChangingResolver({"intranet.example": [["10.0.0.7"]]})
    await fetch_url(
        "http://intranet.example/", _settings(fetch_allow_private=True), resolver=resolver, connector=connector
    )
    assert connector.log.connects == [("10.0.0.7", 80)]


@passthrough
@pytest.mark.parametrize("failure", [socket.gaierror(socket.EAI_NONAME, "Name or service not known"), OSError("boom")])
async def test_dns_failure_is_fetch_failed(httpx_mock: HTTPXMock, failure: OSError) -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise failure

    with pytest.raises(FetchFailed) as caught:
        await fetch_url("http://nowhere.example/", _settings(), resolver=broken, connector=FakeConnector())
    assert caught.value.status == 502
    assert caught.value.message.startswith("could not resolve nowhere.example")


# --- redirects (pytest-httpx) ----------------------------------------------------------------------


async def test_redirects_are_followed_and_the_final_url_reported(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="https://news.example/old", status_code=301, headers={"Location": "/new"})
    httpx_mock.add_response(
        url="https://news.example/new", status_code=302, headers={"Location": "https://cdn.example/a"}
    )
    httpx_mock.add_response(url="https://cdn.example/a", html=HTML)
    page = await fetch_url("https://news.example/old", _settings())
    assert page.url == "https://cdn.example/a"


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.1/admin", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8000/", "::1 is a loopback address"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("http://metadata.google.internal/", "cloud metadata host"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_redirect_to_a_refused_target_is_refused(httpx_mock: HTTPXMock, location: str, reason: str) -> None:
    httpx_mock.add_response(url="https://news.example/", status_code=302, headers={"Location": location})
    with pytest.raises(URLNotAllowed) as caught:
        await fetch_url("https://news.example/", _settings())
    assert reason in caught.value.message
    assert [str(r.url) for r in httpx_mock.get_requests()] == ["https://news.example/"]


async def test_too_many_redirects(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=302, headers={"Location": "https://news.example/loop"}, is_reusable=True)
    with pytest.raises(FetchFailed) as caught:
        await fetch_url("https://news.example/loop", _settings(fetch_max_redirects=3))
    assert "redirected more than 3 times (CITESUM_FETCH_MAX_REDIRECTS)" in caught.value.message
    assert len(httpx_mock.get_requests()) == 4


async def test_no_redirects_allowed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=307, headers={"Location": "https://news.example/b"})
    with pytest.raises(FetchFailed, match="more than 0 times"):
        await fetch_url("https://news.example/a", _settings(fetch_max_redirects=0))


# --- status, type, size, time ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [304, 400, 403, 404, 410, 429, 500, 503])
async def test_origin_errors_are_fetch_failed(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status, html=HTML)
    with pytest.raises(FetchFailed) as caught:
        await fetch_url("https://news.example/a", _settings())
    assert caught.value.status == 502
    assert f"https://news.example/a answered HTTP {status}" in caught.value.message


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/html", "text/html"),
        ("text/html; charset=ISO-8859-1", "text/html"),
        ("TEXT/HTML;charset=utf-8", "text/html"),
        ("application/xhtml+xml", "application/xhtml+xml"),
        ("text/plain; charset=utf-8", "text/plain"),
    ],
)
async def test_html_and_text_are_accepted(httpx_mock: HTTPXMock, content_type: str, kind: str) -> None:
    httpx_mock.add_response(headers={"Content-Type": content_type}, content=b"Plain words here.")
    page = await fetch_url("https://news.example/a", _settings())
    assert page.content_type == kind
    assert page.text == "Plain words here."


@pytest.mark.parametrize("content_type", ["application/pdf", "image/png", "application/json", "text/csv", None])
async def test_other_media_types_are_unsupported(httpx_mock: HTTPXMock, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    httpx_mock.add_response(headers=headers, content=b"%PDF-1.4")
    with pytest.raises(UnsupportedContent) as caught:
        await fetch_url("https://news.example/a.pdf", _settings())
    assert caught.value.status == 415
    assert f"is {content_type or 'of no declared type'}; only HTML" in caught.value.message


async def test_body_at_the_cap_is_read(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(headers={"Content-Type": "text/plain"}, content=b"a" * 1000)
    page = await fetch_url("https://news.example/a", _settings(fetch_max_bytes=1000))
    assert len(page.text) == 1000


async def test_declared_length_over_the_cap_is_refused_unread(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(headers={"Content-Type": "text/plain"}, content=b"a" * 1001)
    with pytest.raises(ArticleTooLong) as caught:
        await fetch_url("https://news.example/a", _settings(fetch_max_bytes=1000))
    assert caught.value.status == 413
    assert "larger than 1,000 bytes (CITESUM_FETCH_MAX_BYTES): it declares 1,001" in caught.value.message


async def test_streamed_body_is_cut_at_the_cap(httpx_mock: HTTPXMock) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b"b" * 400

    httpx_mock.add_response(headers={"Content-Type": "text/html"}, stream=IteratorStream(chunks()))
    with pytest.raises(ArticleTooLong, match="larger than 1,000 bytes"):
        await fetch_url("https://news.example/a", _settings(fetch_max_bytes=1000))
    assert len(sent) == 3  # stopped reading right after the chunk that crossed the cap


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _raw(body: bytes, size: int = 64 << 10) -> IteratorStream:
    """The body as the network would send it, in chunks (a `content=` mock is read, and so decoded,
    by pytest-httpx before the client sees it)."""
    return IteratorStream([body[i : i + size] for i in range(0, len(body), size)])


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", _gzip),
        ("x-gzip", _gzip),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
        ("identity", lambda data: data),
    ],
)
async def test_compressed_pages_are_decoded(httpx_mock: HTTPXMock, encoding: str, encode) -> None:
    body = HTML.encode() * 50
    httpx_mock.add_response(headers={"Content-Type": "text/html", "Content-Encoding": encoding}, stream=_raw(encode(body)))
    page = await fetch_url("https://news.example/a", _settings())
    assert page.text == body.decode()


async def test_gzip_members_in_a_row_are_all_read(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}, stream=_raw(_gzip(b"first ") + _gzip(b"second"))
    )
    assert (await fetch_url("https://news.example/a", _settings())).text == "first second"


async def test_a_compression_bomb_stops_at_the_cap(httpx_mock: HTTPXMock) -> None:
    """Issue 19: httpx decoded a whole network chunk before the cap was checked; 64 MB of zeros in
    one 64 KB gzip chunk must not be expanded past the cap (here 1,000 bytes)."""
    bomb = _gzip(bytes(64 << 20))
    httpx_mock.add_response(headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}, stream=_raw(bomb))
    tracemalloc.start()
    try:
        with pytest.raises(ArticleTooLong, match="larger than 1,000 bytes"):
            await fetch_url("https://news.example/a", _settings(fetch_max_bytes=1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the 64 MB of output were never held (the bomb itself is 64 KB)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("gzip, gzip", "compressed more than once (Content-Encoding: gzip, gzip)"),
        ("deflate, gzip", "compressed more than once"),
        ("br", "uses the content coding 'br'; only gzip and deflate are read"),
        ("zstd", "uses the content coding 'zstd'"),
        ("compress", "uses the content coding 'compress'"),
    ],
)
async def test_stacked_or_unknown_content_codings_are_refused(
    httpx_mock: HTTPXMock, header: str, message: str
) -> None:
    """A 1.8 KB `gzip, gzip` body became 1 GB (and 4 GB gave a MemoryError 500)."""
    httpx_mock.add_response(
        headers={"Content-Type": "text/html", "Content-Encoding": header}, stream=_raw(_gzip(_gzip(bytes(1 << 20))))
    )
    with pytest.raises(UnsupportedContent, match=re.escape(message)) as caught:
        await fetch_url("https://news.example/a", _settings())
    assert caught.value.status == 415


async def test_only_decodable_codings_are_asked_for(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(html=HTML)
    await fetch_url("https://news.example/a", _settings())
    [request] = httpx_mock.get_requests()
    assert request.headers["accept-encoding"] == "gzip, deflate"


async def test_a_corrupt_compressed_body_is_fetch_failed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}, stream=_raw(b"not gzip"))
    with pytest.raises(FetchFailed, match=r"could not decompress https://news.example/a \(gzip\)"):
        await fetch_url("https://news.example/a", _settings())


@pytest.mark.parametrize("location", ["http:127.0.0.1/x", "http://[::1", "//:99999/x", "http:/x"])
async def test_a_malformed_redirect_is_fetch_failed(httpx_mock: HTTPXMock, location: str) -> None:
    """Issue 19: `Location: http:127.0.0.1/x` made httpx raise InvalidURL (no HTTPError): a 500."""
    httpx_mock.add_response(url="https://news.example/", status_code=302, headers={"Location": location})
    with pytest.raises(FetchFailed) as caught:
        await fetch_url("https://news.example/", _settings())
    assert caught.value.status == 502
    assert "https://news.example/" in caught.value.message


@pytest.mark.parametrize(
    "error", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
)
async def test_transport_errors_are_fetch_failed(httpx_mock: HTTPXMock, error: Exception) -> None:
    httpx_mock.add_exception(error)
    with pytest.raises(FetchFailed) as caught:
        await fetch_url("https://news.example/a", _settings())
    assert "https://news.example/a" in caught.value.message


async def test_whole_fetch_has_a_deadline(httpx_mock: HTTPXMock) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, html=HTML)

    httpx_mock.add_callback(hang)
    with pytest.raises(FetchFailed, match=r"took longer than 0.2 s \(CITESUM_FETCH_TIMEOUT_S\)"):
        await fetch_url("https://news.example/a", _settings(fetch_timeout_s=0.2))


# --- decoding -------------------------------------------------------------------------------------------

TEXT = "Café owners in Zürich said prices rose — “again”."


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain; charset=utf-8", TEXT.encode()),
        ("text/plain; charset=windows-1252", TEXT.encode("cp1252")),
        ("text/plain", TEXT.encode()),  # undeclared, valid UTF-8
        ("text/plain; charset=no-such-codec", TEXT.encode()),
        # Codecs that are not text encodings, or cannot decode a page, are passed over (they gave 500s).
        *(
            (f"text/plain; charset={codec}", TEXT.encode())
            for codec in ("rot13", "base64", "hex", "zlib", "bz2", "quopri", "uu_codec", "undefined", "idna")
        ),
        ("text/html", f'<meta charset="idna"><p>{TEXT}</p>'.encode()),
        ("text/html", f'<meta charset="rot13"><p>{TEXT}</p>'.encode()),
        ("text/html; charset=punycode", f'<meta charset="utf-8"><p>{TEXT}</p>'.encode()),
        ("text/plain", b"\xef\xbb\xbf" + TEXT.encode()),  # UTF-8 BOM
        ("text/html", f'<meta charset="windows-1252"><p>{TEXT}</p>'.encode("cp1252")),
        (
            "text/html",
            f'<meta http-equiv="Content-Type" content="text/html; charset=cp1252"><p>{TEXT}'.encode("cp1252"),
        ),
    ],
)
async def test_charset_is_declared_sniffed_or_utf8(httpx_mock: HTTPXMock, content_type: str, body: bytes) -> None:
    httpx_mock.add_response(headers={"Content-Type": content_type}, content=body)
    page = await fetch_url("https://news.example/a", _settings())
    assert TEXT in page.text
    assert not page.text.startswith("\ufeff")


async def test_undeclared_legacy_charset_is_detected(httpx_mock: HTTPXMock) -> None:
    text = "Les cafés de la région ont augmenté leurs prix cette année, a déclaré le maire. " * 5
    httpx_mock.add_response(headers={"Content-Type": "text/plain"}, content=text.encode("latin-1"))
    page = await fetch_url("https://news.example/a", _settings())
    assert "cafés de la région" in page.text


# --- a real server on loopback -----------------------------------------------------------------------


class _ArticleHandler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/article")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"<html><head><title>Local</title></head><body><p>{TEXT}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    _ArticleHandler.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ArticleHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.httpx_mock(should_mock=lambda request: request.url.host != "127.0.0.1")
async def test_real_fetch_from_loopback_when_allowed(httpx_mock: HTTPXMock, local_server: str) -> None:
    page = await fetch_url(f"{local_server}/moved", _settings(fetch_allow_private=True))
    assert page.url == f"{local_server}/article"
    assert page.content_type == "text/html"
    assert TEXT in page.text
    assert _ArticleHandler.hits == ["/moved", "/article"]


@pytest.mark.httpx_mock(should_mock=lambda request: request.url.host != "127.0.0.1")
async def test_real_loopback_server_is_not_reached_by_default(httpx_mock: HTTPXMock, local_server: str) -> None:
    with pytest.raises(URLNotAllowed):
        await fetch_url(f"{local_server}/article", _settings())
    assert _ArticleHandler.hits == []
