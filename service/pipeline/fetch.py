"""Fetch one user-supplied URL as hostile input: public addresses only, pinned, capped, type-checked.

The URL is the one outbound request a user controls, so it must not reach the machine's own
network (server-side request forgery). Three checks, each on every redirect hop:

1. `check_url`: http/https only; literal addresses in any spelling (``2130706433``, ``0177.0.0.1``,
   ``0x7f.1``, ``[::ffff:127.0.0.1]``) and well-known internal names are refused before anything
   is resolved or sent;
2. `PinnedBackend`: every TCP connect resolves the host itself, refuses the connect if ANY answer
   is not a public address, and connects to the address it checked. Nothing resolves the name
   again afterwards, so a DNS answer that changes between check and connect (DNS rebinding)
   cannot redirect the connection. TLS still verifies the certificate against the host name,
   because httpcore starts TLS on the returned stream with the URL's host as the server name;
3. the response: status < 300, an HTML or plain-text media type, at most `fetch_max_bytes`
   (streamed, so a bigger body is never held), the whole fetch inside `fetch_timeout_s`. The body is
   decompressed here, not by httpx, one bounded step at a time, so no compressed chunk can expand
   past the cap (a 1.8 KB `gzip, gzip` body once became 1 GB); stacked or unknown content codings
   are refused. A declared charset that cannot decode text (rot13, base64, idna ...) is ignored.

Refusals name what the user gave (a host, a literal address) but never what DNS answered for it.

`CITESUM_FETCH_ALLOW_PRIVATE=true` lifts the address checks (for a trusted intranet or tests).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import charset_normalizer
import httpcore
import httpx

from service.core.config import Settings
from service.core.errors import ArticleTooLong, FetchFailed, InvalidInput, UnsupportedContent, URLNotAllowed

__all__ = [
    "FetchedPage",
    "PinnedBackend",
    "PinnedTransport",
    "Resolver",
    "address_refusal",
    "check_url",
    "fetch_url",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain"})
_ALLOW_HINT = "set CITESUM_FETCH_ALLOW_PRIVATE=true to allow"

# Names that point inside the machine or its cloud whatever DNS says about them.
_INTERNAL_NAMES = {
    "localhost": "a loopback name",
    "metadata.google.internal": "a cloud metadata host",
    "metadata.goog": "a cloud metadata host",
    "metadata": "a cloud metadata host",
    "instance-data": "a cloud metadata host",
}
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# inet_aton spellings: decimal 2130706433, octal 0177.0.0.1, hex 0x7f.1, short 127.1.
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


@dataclass(frozen=True)
class FetchedPage:
    """A fetched page: the final URL after redirects, its media type and its decoded text."""

    url: str
    content_type: str
    text: str


def address_refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address (e.g. "a loopback address"), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_refusal(embedded)
            return f"an IPv6 form of {embedded}, {inner}" if inner else None
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        # fec0::/10 is deprecated but still routed inside some networks; Python does not call it private.
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "a site-local address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a shared (CGNAT) address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling the OS resolver would accept."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) adds nothing
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host) and re.search(r"\d$|^0x", host, re.I):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, *, allow_private: bool) -> httpx.URL:
    """Validate a URL before anything is resolved or sent; numeric IPv4 spellings become dotted quads.

    The host checked is the host httpx will use (its own parse), so no parser difference between
    this check and the request can smuggle an internal address past it.
    """
    target = _parse_url(url)
    if target.scheme not in ("http", "https"):
        raise URLNotAllowed(
            f"refusing to fetch {url}: only http and https URLs can be fetched, not {target.scheme or 'none'!r}",
            reason="scheme",
        )
    if not target.host:
        raise InvalidInput(f"{url!r} is not a valid URL: it has no host name")
    if target.port is not None and not 0 < target.port < 65536:
        raise InvalidInput(f"{url!r} is not a valid URL: port {target.port} is out of range")
    name = target.host.rstrip(".").lower()
    address = _literal_address(name)
    if not allow_private:
        reason = _INTERNAL_NAMES.get(name) or ("a loopback name" if name.endswith(".localhost") else None)
        if reason is not None:
            reason = f"{name} is {reason}"
        elif address is not None and (why := address_refusal(address)):
            reason = f"{address} is {why}"
        if reason:
            raise URLNotAllowed(f"refusing to fetch {url}: {reason} ({_ALLOW_HINT})", reason=reason)
    if isinstance(address, ipaddress.IPv4Address) and name != str(address):
        # Other clients and the OS resolver read 2130706433 or 0x7f.1 as 127.0.0.1; so do we.
        target = target.copy_with(host=str(address))
    return target


def _parse_url(url: str) -> httpx.URL:
    url = url.strip()
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        error = str(exc)
    # httpx refuses a few inet_aton spellings (0177.0.0.1) outright; rewrite those to dotted quads.
    try:
        parts = urlsplit(url)
        address = _literal_address(parts.hostname or "")
        if isinstance(address, ipaddress.IPv4Address):
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = (f"{userinfo}@" if userinfo else "") + str(address) + (f":{parts.port}" if parts.port else "")
            return httpx.URL(urlunsplit(parts._replace(netloc=netloc)))
    except (ValueError, httpx.InvalidURL) as exc:
        error = str(exc)
    raise InvalidInput(f"{url!r} is not a valid URL: {error}")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the event loop's getaddrinfo gives for `host` (TCP), in its order."""
    loop = asyncio.get_running_loop()
    answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in answers))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves, checks and connects to the same address, once per connect."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = _literal_address(host)
        if literal is not None:
            return [literal]
        try:
            answers = await asyncio.wait_for(self.resolver(host, port), timeout)
        except TimeoutError as exc:
            raise FetchFailed(f"could not resolve {host}: no DNS answer within {timeout:g} s") from exc
        except OSError as exc:
            raise FetchFailed(f"could not resolve {host}: {exc.strerror or exc}") from exc
        try:
            addresses = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
        except ValueError as exc:
            raise FetchFailed(f"could not resolve {host}: {exc}") from exc
        if not addresses:
            raise FetchFailed(f"could not resolve {host}: no addresses")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, timeout)
        if not self.allow_private:
            # Every answer is checked: a name with one public and one private address is refused,
            # since which one a client would use is not ours to predict.
            for address in addresses:
                if why := address_refusal(address):
                    # What DNS answered is the operator's business, not the caller's: a name is
                    # refused as "not a public address" without saying which address or network.
                    shown = f"{address} is {why}" if str(address) == host else f"{host} is not a public address"
                    raise URLNotAllowed(shown, reason=shown)
        # Try each checked address in turn; the last failure is the one reported.
        for address in addresses[:-1]:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self.inner.connect_tcp(
            str(addresses[-1]), port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise URLNotAllowed(f"refusing to connect to the unix socket {path}", reason="unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every fetch: building one reads the CA bundle (~0.1 s)."""
    return httpx.create_ssl_context(trust_env=False)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, whose connection pool makes every connection through a PinnedBackend."""

    def __init__(self, backend: PinnedBackend, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=10, max_keepalive_connections=2)
        ssl_context = _ssl_context()
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # The one place we reach inside httpx: AsyncHTTPTransport takes no network backend, so the
        # pool it built is replaced by the same pool (httpx 0.28's arguments) using ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )


async def fetch_url(
    url: str,
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    connector: httpcore.AsyncNetworkBackend | None = None,
) -> FetchedPage:
    """Fetch `url` under the settings' address, size, type, redirect and time limits.

    `resolver` replaces DNS and `connector` the socket layer (both for tests); the address check
    always runs between them.
    """
    backend = PinnedBackend(
        allow_private=settings.fetch_allow_private, resolver=resolver or system_resolver, inner=connector
    )
    try:
        async with asyncio.timeout(settings.fetch_timeout_s):
            return await _fetch(url, settings, PinnedTransport(backend))
    except TimeoutError as exc:
        raise FetchFailed(
            f"fetching {url} took longer than {settings.fetch_timeout_s:g} s (CITESUM_FETCH_TIMEOUT_S)"
        ) from exc


async def _fetch(url: str, settings: Settings, transport: PinnedTransport) -> FetchedPage:
    allow = settings.fetch_allow_private
    headers = {
        "User-Agent": settings.fetch_user_agent,
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9",
        # Only the codings _BoundedDecoder handles (httpx would add br/zstd when their packages are installed).
        "Accept-Encoding": "gzip, deflate",
    }
    async with httpx.AsyncClient(
        transport=transport,
        headers=headers,
        timeout=httpx.Timeout(settings.fetch_timeout_s),
        follow_redirects=False,  # every hop goes through check_url below
        trust_env=False,  # no proxy from the environment: the proxy would do the connecting
    ) as client:
        target = check_url(url, allow_private=allow)
        for _ in range(settings.fetch_max_redirects + 1):
            async with _stream(client, target) as response:
                if response.has_redirect_location:
                    location = response.headers["location"]
                    try:
                        next_url = str(response.url.join(location))
                    except httpx.InvalidURL as exc:
                        raise FetchFailed(f"{response.url} redirected to an invalid URL {location!r}") from exc
                    try:
                        target = check_url(next_url, allow_private=allow)
                    except URLNotAllowed:
                        raise
                    except InvalidInput as exc:  # a malformed Location is the site's fault, not the caller's
                        raise FetchFailed(f"{response.url} redirected to an invalid URL: {exc.message}") from exc
                    continue
                return await _read_page(response, settings)
    raise FetchFailed(
        f"fetching {url} was redirected more than {settings.fetch_max_redirects} times (CITESUM_FETCH_MAX_REDIRECTS)"
    )


class _stream:
    """`client.stream` with httpx errors and refused connects turned into our errors."""

    def __init__(self, client: httpx.AsyncClient, url: httpx.URL) -> None:
        self._context = client.stream("GET", url)
        self._url = url

    async def __aenter__(self) -> httpx.Response:
        try:
            return await self._context.__aenter__()
        except URLNotAllowed as exc:
            reason = exc.facts.get("reason", exc.message)
            raise URLNotAllowed(f"refusing to fetch {self._url}: {reason} ({_ALLOW_HINT})", reason=reason) from None
        except httpx.TimeoutException as exc:
            raise FetchFailed(f"fetching {self._url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"could not fetch {self._url}: {exc or type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:
            # httpx builds the next request from a redirect's Location even when it does not follow
            # it, and a Location it cannot parse ("http:127.0.0.1/x") raises InvalidURL, no HTTPError.
            raise FetchFailed(f"{self._url} redirected to an invalid URL: {exc}") from exc

    async def __aexit__(self, *exc_info: object) -> None:
        await self._context.__aexit__(*exc_info)


async def _read_page(response: httpx.Response, settings: Settings) -> FetchedPage:
    url = str(response.url)
    if response.status_code >= 300:
        raise FetchFailed(
            f"{url} answered HTTP {response.status_code} {response.reason_phrase}".rstrip(),
            upstream_status=response.status_code,
        )
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in HTML_TYPES | TEXT_TYPES:
        raise UnsupportedContent(
            f"{url} is {media_type or 'of no declared type'}; only HTML (text/html, application/xhtml+xml)"
            " and plain text (text/plain) pages can be summarized"
        )
    body = await _read_capped(response, url, settings.fetch_max_bytes)
    return FetchedPage(url=url, content_type=media_type, text=decode_body(body, response.charset_encoding, media_type))


async def _read_capped(response: httpx.Response, url: str, cap: int) -> bytes:
    too_long = f"{url} is larger than {cap:,} bytes (CITESUM_FETCH_MAX_BYTES)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ArticleTooLong(f"{too_long}: it declares {int(declared):,}", limit=cap)
    decoder = _BoundedDecoder.for_response(response, url)
    chunks: list[bytes] = []
    size = 0
    try:
        # Raw bytes, decompressed here at most (room left + 1) bytes at a time: counted after
        # decompression, and no chunk of a compression bomb is ever expanded past the cap.
        async for raw in response.aiter_raw():
            for chunk in decoder.decode(raw, cap - size + 1):
                size += len(chunk)
                if size > cap:
                    raise ArticleTooLong(too_long, limit=cap)
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise FetchFailed(f"reading {url} timed out") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"could not read {url}: {exc or type(exc).__name__}") from exc
    return b"".join(chunks)


class _BoundedDecoder:
    """One content coding (identity, gzip or deflate) decoded with a bound on each step's output."""

    _WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}

    def __init__(self, coding: str, url: str) -> None:
        self.coding = coding
        self.url = url
        self._zlib = zlib.decompressobj(self._WBITS[coding]) if coding != "identity" else None
        self._started = False

    @classmethod
    def for_response(cls, response: httpx.Response, url: str) -> _BoundedDecoder:
        """The decoder for the response's Content-Encoding; one coding at most, and a known one."""
        codings = [
            coding.strip().lower()
            for coding in response.headers.get_list("content-encoding", split_commas=True)
            if coding.strip().lower() not in ("", "identity")
        ]
        if len(codings) > 1:
            raise UnsupportedContent(
                f"{url} is compressed more than once (Content-Encoding: {', '.join(codings)}); one of gzip"
                " or deflate at most is read"
            )
        if codings and codings[0] not in cls._WBITS:
            raise UnsupportedContent(
                f"{url} uses the content coding {codings[0]!r}; only gzip and deflate are read"
            )
        return cls(codings[0] if codings else "identity", url)

    def decode(self, data: bytes, room: int) -> list[bytes]:
        """Decode `data`, each piece at most `room` bytes; the caller stops once a piece overflows."""
        if self._zlib is None:
            return [data] if data else []
        pieces: list[bytes] = []
        try:
            while data:
                if not self._started and self.coding == "deflate":
                    self._started = True
                    try:  # "deflate" is zlib-wrapped by the standard, but raw deflate is common too
                        zlib.decompressobj(self._WBITS["deflate"]).decompress(data[:2])
                    except zlib.error:
                        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                piece = self._zlib.decompress(data, room)
                if piece:
                    pieces.append(piece)
                    if len(piece) >= room:
                        return pieces  # the cap is reached: the caller refuses the page
                data = self._zlib.unconsumed_tail
                if self._zlib.eof:
                    data = self._zlib.unused_data
                    if data and self.coding != "deflate":  # gzip may hold several members in a row
                        self._zlib = zlib.decompressobj(self._WBITS[self.coding])
                    else:
                        return pieces  # whatever follows a deflate stream's end is not the page
        except zlib.error as exc:
            raise FetchFailed(f"could not decompress {self.url} ({self.coding}): {exc}") from exc
        return pieces


_META_CHARSET = re.compile(rb"""<meta[^<>]+charset\s*=\s*["']?([\w.:-]+)""", re.I)


def _known_codec(name: str | bytes | None) -> str | None:
    """The codec `name` names, if it is one that decodes bytes into text (not rot13, base64 ...)."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name.decode("ascii", "ignore") if isinstance(name, bytes) else name).name
        b"".decode(codec)  # bytes.decode refuses the codecs that are not text encodings
    except (LookupError, ValueError, UnicodeError):  # ValueError: a NUL in the name
        return None
    return codec


def _decoded(body: bytes, codec: str | None) -> str | None:
    """`body` decoded with `codec` (bad bytes replaced), or None when the codec cannot do it at all
    (undefined, idna and punycode refuse the "replace" handler or most bytes)."""
    if codec is None:
        return None
    try:
        return body.decode(codec, errors="replace")
    except (UnicodeError, LookupError, ValueError):
        return None


def decode_body(body: bytes, declared: str | None, media_type: str) -> str:
    """Decode with the declared charset, else a BOM or <meta charset>, else UTF-8, else a detected one.

    A declared or meta charset that cannot decode the page is passed over, as browsers do."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(codec, errors="replace")
    if (text := _decoded(body, _known_codec(declared))) is not None:
        return text
    meta = _META_CHARSET.search(body[:4096]) if media_type in HTML_TYPES else None
    if meta and (text := _decoded(body, _known_codec(meta.group(1)))) is not None:
        return text
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        guess = charset_normalizer.from_bytes(body[:200_000]).best()
        text = _decoded(body, _known_codec(guess.encoding if guess else None))
        return text if text is not None else body.decode("cp1252", errors="replace")
