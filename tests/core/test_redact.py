"""Redaction of URL credentials and capability-URL paths."""

from __future__ import annotations

import pytest

from service.core.redact import redact_credentials, redact_text, redact_url


@pytest.mark.parametrize(
    ("text", "for_logs", "for_callers"),
    [
        ("GET https://user:pw@example.com/a", "GET https://***@example.com/a", "GET https://***@example.com/a"),
        ("http://token@10.0.0.1:8/x and ftp://a:b@h/", "http://***@10.0.0.1:8/x and ftp://***@h/",
         "http://***@10.0.0.1:8/x and ftp://***@h/"),
        ('POST https://hooks.slack.com/services/T1/B2/XyZ "HTTP/1.1 200 OK"',
         'POST https://hooks.slack.com/*** "HTTP/1.1 200 OK"', 'POST https://hooks.slack.com/services/T1/B2/XyZ "HTTP/1.1 200 OK"'),
        ("https://HOOKS.SLACK.COM/commands/T1/1/abc", "https://HOOKS.SLACK.COM/***", "https://HOOKS.SLACK.COM/commands/T1/1/abc"),
        ("https://chat.example.org/hooks/abc123", "https://chat.example.org/hooks/***", "https://chat.example.org/hooks/abc123"),
        ("mail me at a@b.example, see https://example.com/x?y=1", "mail me at a@b.example, see https://example.com/x?y=1",
         "mail me at a@b.example, see https://example.com/x?y=1"),
        ("https://example.com/path@v2/", "https://example.com/path@v2/", "https://example.com/path@v2/"),
    ],
)  # fmt: skip
def test_redaction(text: str, for_logs: str, for_callers: str) -> None:
    assert redact_text(text) == for_logs
    assert redact_credentials(text) == for_callers


def test_redact_url_keeps_none() -> None:
    assert redact_url(None) is None
    assert redact_url("https://u:p@h/") == "https://***@h/"
