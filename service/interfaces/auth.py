"""Who may call /v1/* and how often: bearer API keys and a per-caller rate limit.

- CITESUM_API_KEYS set (comma-separated): /v1/* and /metrics need `Authorization: Bearer <key>`,
  else 401 problem+json with `WWW-Authenticate: Bearer`. The presented key is compared with every
  configured key with hmac.compare_digest (no early exit, so timing says nothing about which or
  how many matched). Keys are never logged: a caller is named by a 12-hex sha256 fingerprint.
- Unset: the service runs open, says so at start-up, and `serve` refuses a non-loopback host
  unless CITESUM_ALLOW_OPEN=true (check_serving_access).
- CITESUM_RATE_LIMIT_PER_MINUTE requests per key fingerprint (per client IP when open) in any
  60-second moving window, else 429 with Retry-After.
- Jobs belong to the key that submitted them (scope state `owner`, see service/jobs/job.py):
  another key gets 404 for them and its own namespace for Idempotency-Key. The window comes from `limits` (the library
  behind slowapi): an exact moving window gives the same guarantee as a token bucket, with
  `get_window_stats` supplying the reset time for Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.config import Settings
from service.interfaces.middleware import send_problem

__all__ = [
    "AccessMiddleware",
    "RateLimiter",
    "check_serving_access",
    "configured_keys",
    "fingerprint",
    "key_matches",
    "owner_of",
]

log = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/v1/", "/metrics")
RATE_LIMITED_PREFIX = "/v1/"
DEFAULT_RATE_WITH_KEYS = 120  # per minute, when keys are set and no rate is configured


class OpenAccessRefused(RuntimeError):
    """Serving without API keys on a non-loopback host was not explicitly allowed."""


def configured_keys(settings: Settings) -> list[bytes]:
    """The configured API keys as bytes (empty list: open)."""
    if settings.api_keys is None:
        return []
    return [k.strip().encode() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]


def fingerprint(key: bytes | str) -> str:
    """A short, non-reversible name for a key, safe for logs and rate-limit buckets."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:12]


def owner_of(key: bytes) -> str:
    """The tenant a key's jobs belong to (service/jobs/job.py): a 128-bit hash, so keys never share one."""
    return "key:" + hashlib.sha256(b"citesum-owner:" + key).hexdigest()[:32]


def key_matches(presented: bytes, keys: list[bytes]) -> bool:
    """True when `presented` equals one of `keys`; compares with every key, in constant time each."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def rate_per_minute(settings: Settings) -> int:
    """The effective rate limit (0 = off): the setting, else 120 with keys and off when open."""
    if settings.rate_limit_per_minute is not None:
        return settings.rate_limit_per_minute
    return DEFAULT_RATE_WITH_KEYS if configured_keys(settings) else 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_serving_access(settings: Settings, host: str) -> None:
    """At `serve` start-up: warn when open; refuse open access on a non-loopback host unless allowed."""
    if configured_keys(settings):
        log.info("API keys required on /v1/* (%d configured)", len(configured_keys(settings)))
        return
    if not _is_loopback(host) and not settings.allow_open:
        raise OpenAccessRefused(
            f"refusing to serve /v1/* without API keys on {host}: set CITESUM_API_KEYS, "
            "or CITESUM_ALLOW_OPEN=true to serve open on purpose"
        )
    log.warning(
        "no API keys set (CITESUM_API_KEYS): /v1/* is open to anyone who can reach %s", host
    )


class RateLimiter:
    """`per_minute` hits per identity in any 60-second moving window (in-process memory)."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, identity: str) -> float | None:
        """Record one request; None when allowed, else the seconds until the next one is."""
        if await self.limiter.hit(self.item, identity):
            return None
        stats = await self.limiter.get_window_stats(self.item, identity)
        return max(1.0, stats.reset_time - time.time())


class AccessMiddleware:
    """401 without a valid key (when keys are set), 429 over the rate limit; only on /v1/* and /metrics."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.keys = configured_keys(settings)
        rate = rate_per_minute(settings)
        self.limiter = RateLimiter(rate) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.keys:
            presented = _bearer_token(scope)
            if presented is None or not key_matches(presented, self.keys):
                await send_problem(
                    scope, send, 401, "Unauthorized",
                    "send a valid API key as `Authorization: Bearer <key>` (keys are set by CITESUM_API_KEYS)",
                    slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="citesum"'},
                )
                return
            identity = "key:" + fingerprint(presented)
            scope.setdefault("state", {})["owner"] = owner_of(presented)
        else:
            client = scope.get("client")
            identity = "ip:" + (client[0] if client else "unknown")
        scope.setdefault("state", {})["caller"] = identity
        if self.limiter is not None and path.startswith(RATE_LIMITED_PREFIX):
            wait = await self.limiter.hit(identity)
            if wait is not None:
                log.info("rate limited %s", identity)
                await send_problem(
                    scope, send, 429, "Too many requests",
                    f"over {self.limiter.item.amount} requests per minute for this caller "
                    "(CITESUM_RATE_LIMIT_PER_MINUTE); see Retry-After",
                    slug="rate-limited", headers={"Retry-After": str(math.ceil(wait))},
                )
                return
        await self.app(scope, receive, send)


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None
