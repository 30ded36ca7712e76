"""Slack request signing: slack_sdk's own signer is the independent client; the clock is pinned."""

from __future__ import annotations

import pytest
from slack_sdk.signature import SignatureVerifier

from service.interfaces.signature import Clock, verify_slack_request

# Slack's published example (docs: "Verifying requests from Slack").
VECTOR_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_TIMESTAMP = "1531420618"
VECTOR_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


def headers(timestamp: str, signature: str) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def signed(body: str | bytes, secret: str = VECTOR_SECRET, timestamp: str = VECTOR_TIMESTAMP) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return headers(timestamp, signature)


CLOCK = FixedClock(int(VECTOR_TIMESTAMP) + 1)


def test_known_good_vector_passes() -> None:
    check = verify_slack_request(VECTOR_BODY, headers(VECTOR_TIMESTAMP, VECTOR_SIGNATURE), VECTOR_SECRET, CLOCK)
    assert check.ok and check.reason == ""


@pytest.mark.parametrize("body", [VECTOR_BODY, VECTOR_BODY.encode(), "", b"", '{"type":"event_callback"}'])
def test_str_and_bytes_bodies_pass(body: str | bytes) -> None:
    assert verify_slack_request(body, signed(body), VECTOR_SECRET, CLOCK)


def test_header_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in signed(VECTOR_BODY).items()}
    assert verify_slack_request(VECTOR_BODY, lowered, VECTOR_SECRET, CLOCK)


def test_wrong_secret_fails() -> None:
    check = verify_slack_request(VECTOR_BODY, signed(VECTOR_BODY, secret="another-secret"), VECTOR_SECRET, CLOCK)
    assert not check and check.reason == "signature mismatch"


def test_changed_body_fails() -> None:
    tampered = VECTOR_BODY.replace("text=", "text=rm+-rf")
    check = verify_slack_request(tampered, signed(VECTOR_BODY), VECTOR_SECRET, CLOCK)
    assert not check and check.reason == "signature mismatch"


def test_changed_timestamp_fails() -> None:
    good = signed(VECTOR_BODY)
    moved = headers(str(int(VECTOR_TIMESTAMP) + 1), good["X-Slack-Signature"])
    assert not verify_slack_request(VECTOR_BODY, moved, VECTOR_SECRET, CLOCK)


@pytest.mark.parametrize("offset", [301, 3600, -301])
def test_stale_or_future_timestamp_fails(offset: int) -> None:
    clock = FixedClock(int(VECTOR_TIMESTAMP) + offset)
    check = verify_slack_request(VECTOR_BODY, signed(VECTOR_BODY), VECTOR_SECRET, clock)
    assert not check and "stale" in check.reason


def test_timestamp_just_inside_five_minutes_passes() -> None:
    clock = FixedClock(int(VECTOR_TIMESTAMP) + 300)
    assert verify_slack_request(VECTOR_BODY, signed(VECTOR_BODY), VECTOR_SECRET, clock)


@pytest.mark.parametrize(
    "drop", [["X-Slack-Signature"], ["X-Slack-Request-Timestamp"], ["X-Slack-Signature", "X-Slack-Request-Timestamp"]]
)
def test_missing_headers_fail(drop: list[str]) -> None:
    partial = {k: v for k, v in signed(VECTOR_BODY).items() if k not in drop}
    check = verify_slack_request(VECTOR_BODY, partial, VECTOR_SECRET, CLOCK)
    assert not check and "missing" in check.reason


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_empty_secret_refuses_everything(secret: str | None) -> None:
    check = verify_slack_request(VECTOR_BODY, signed(VECTOR_BODY), secret, CLOCK)
    assert not check and check.reason == "SLACK_SIGNING_SECRET is not set"


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "-5", " 1531420618", "１２３", "", "9" * 5000])
def test_malformed_timestamp_fails_without_raising(timestamp: str) -> None:
    check = verify_slack_request(VECTOR_BODY, headers(timestamp, VECTOR_SIGNATURE), VECTOR_SECRET, CLOCK)
    assert not check


@pytest.mark.parametrize(
    "signature", ["v0=" + "é" * 64, VECTOR_SIGNATURE[:-1] + "\u00ff", "v0=\u2603", "v0=" + "a" * 10_000],
    ids=["latin1", "last-byte", "snowman", "huge"],
)
def test_non_ascii_signature_fails_without_raising(signature: str) -> None:
    check = verify_slack_request(VECTOR_BODY, headers(VECTOR_TIMESTAMP, signature), VECTOR_SECRET, CLOCK)
    assert not check and "malformed" in check.reason


def test_non_utf8_body_fails_without_raising() -> None:
    check = verify_slack_request(b"\xff\xfe text", headers(VECTOR_TIMESTAMP, VECTOR_SIGNATURE), VECTOR_SECRET, CLOCK)
    assert not check and "UTF-8" in check.reason


def test_signature_for_other_version_fails() -> None:
    good = signed(VECTOR_BODY)["X-Slack-Signature"]
    check = verify_slack_request(VECTOR_BODY, headers(VECTOR_TIMESTAMP, "v1=" + good[3:]), VECTOR_SECRET, CLOCK)
    assert not check
