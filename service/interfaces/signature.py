"""Slack request signing: check a raw request body against its `X-Slack-Signature` before anything parses it.

The crypto is slack_sdk's `SignatureVerifier` (HMAC-SHA256 over `v0:{timestamp}:{body}`, constant-time
compare, timestamps older than five minutes refused). This module only adds what the caller needs around
that bool: a reason for the log line, and a refusal instead of an exception on malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slack_sdk.signature import Clock, SignatureVerifier

__all__ = ["MAX_AGE_S", "Clock", "SignatureCheck", "verify_slack_request"]

MAX_AGE_S = 60 * 5  # slack_sdk's window; repeated here only to name the reason in the log
TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_HEADER = "x-slack-signature"
MAX_TIMESTAMP_DIGITS = 12  # Unix seconds have 10 digits until the year 2286
MAX_SIGNATURE_CHARS = 128  # "v0=" and 64 hex digits; a little room for a future version


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of a signature check; `reason` says why a request was refused (never the secret)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def verify_slack_request(
    body: bytes | str,
    headers: Mapping[str, str],
    signing_secret: str | None,
    clock: Clock | None = None,
) -> SignatureCheck:
    """Check Slack's signature on the raw body; refuse everything when no signing secret is set."""
    if not signing_secret or not signing_secret.strip():
        return SignatureCheck(False, "SLACK_SIGNING_SECRET is not set")
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER)
    signature = lowered.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        return SignatureCheck(False, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    # slack_sdk calls int() on the timestamp (which raises past 4,300 digits), .decode() on bytes and
    # hmac.compare_digest on the signature (TypeError on non-ASCII str): junk in any must be a 401.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > MAX_TIMESTAMP_DIGITS:
        return SignatureCheck(False, "malformed X-Slack-Request-Timestamp")
    if not signature.isascii() or len(signature) > MAX_SIGNATURE_CHARS:
        return SignatureCheck(False, "malformed X-Slack-Signature")
    if isinstance(body, bytes):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return SignatureCheck(False, "body is not UTF-8")
    verifier = SignatureVerifier(signing_secret, clock or Clock())
    if verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return SignatureCheck(True)
    if abs(verifier.clock.now() - int(timestamp)) > MAX_AGE_S:
        return SignatureCheck(False, "stale X-Slack-Request-Timestamp (older than five minutes)")
    return SignatureCheck(False, "signature mismatch")
