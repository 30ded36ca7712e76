"""API keys on /v1/* and /metrics, the per-caller rate limit, and the open-access start-up rule."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from service.core.config import Settings
from service.interfaces.api import create_app
from service.interfaces.auth import (
    OpenAccessRefused,
    check_serving_access,
    configured_keys,
    fingerprint,
    key_matches,
    rate_per_minute,
)

PROBLEM = "application/problem+json"
TEXT = "The council approved the new budget on Monday. It raises school spending by four percent."


@asynccontextmanager
async def api(settings: Settings, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_app(settings), client=(client_ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://citesum.test") as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": "Basic a2V5LW9uZQ=="}, {"Authorization": "Bearer"}, bearer("key-one2")],
    ids=["none", "wrong", "basic", "empty", "prefix-extended"],
)
async def test_without_a_valid_key_v1_is_401_problem_with_www_authenticate(headers: dict[str, str]) -> None:
    async with api(Settings(api_keys="key-one,key-two")) as client:
        response = await client.post("/v1/summaries", json={"text": TEXT}, headers=headers)
    assert response.status_code == 401 and response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "urn:citesum:problem:unauthorized"


async def test_any_configured_key_works_and_open_routes_stay_open() -> None:
    async with api(Settings(api_keys=" key-one , key-two ")) as client:
        for key in ("key-one", "key-two"):
            response = await client.post("/v1/summaries", json={"text": TEXT}, headers=bearer(key))
            assert response.status_code == 200, response.text
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/v1/jobs/nope")).status_code == 401
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer("key-two"))).status_code == 200


async def test_open_when_no_keys_are_set() -> None:
    async with api(Settings()) as client:
        assert (await client.post("/v1/summaries", json={"text": TEXT})).status_code == 200


async def test_rate_limit_is_per_key_with_retry_after() -> None:
    async with api(Settings(api_keys="key-one,key-two", rate_limit_per_minute=2)) as client:
        ok = [await client.post("/v1/summaries", json={}, headers=bearer("key-one")) for _ in range(2)]
        limited = await client.post("/v1/summaries", json={}, headers=bearer("key-one"))
        other = await client.post("/v1/summaries", json={}, headers=bearer("key-two"))
        health = await client.get("/healthz")
    assert [r.status_code for r in ok] == [422, 422]  # let through (and refused as invalid)
    assert limited.status_code == 429 and limited.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "CITESUM_RATE_LIMIT_PER_MINUTE" in limited.json()["detail"]
    assert other.status_code == 422 and health.status_code == 200


async def test_rate_limit_when_open_is_per_client_ip() -> None:
    settings = Settings(rate_limit_per_minute=1)
    async with api(settings, "10.0.0.1") as first, api(settings, "10.0.0.2") as second:
        # Two apps, two limiters: check one app's buckets are keyed by IP.
        assert (await first.post("/v1/summaries", json={})).status_code == 422
        assert (await first.post("/v1/summaries", json={})).status_code == 429
        assert (await second.post("/v1/summaries", json={})).status_code == 422
    app = create_app(settings)
    for ip, expected in (("10.0.0.1", 422), ("10.0.0.2", 422), ("10.0.0.1", 429)):
        transport = httpx.ASGITransport(app, client=(ip, 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.post("/v1/summaries", json={})).status_code == expected


def test_default_rate_is_on_with_keys_and_off_when_open() -> None:
    assert rate_per_minute(Settings(api_keys="k")) == 120
    assert rate_per_minute(Settings()) == 0
    assert rate_per_minute(Settings(rate_limit_per_minute=7)) == 7


def test_key_helpers() -> None:
    keys = configured_keys(Settings(api_keys="a,,b ,"))
    assert keys == [b"a", b"b"]
    assert key_matches(b"b", keys) and not key_matches(b"c", keys) and not key_matches(b"a", [])
    assert len(fingerprint("secret")) == 12 and "secret" not in fingerprint("secret")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_serving_open_on_a_non_loopback_host_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(OpenAccessRefused, match="CITESUM_API_KEYS"):
        check_serving_access(Settings(), host)
    check_serving_access(Settings(allow_open=True), host)
    check_serving_access(Settings(api_keys="k"), host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_serving_open_on_loopback_warns(host: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.interfaces.auth"):
        check_serving_access(Settings(), host)
    assert "no API keys set" in caplog.text
