"""Hide secrets that travel inside URLs before text leaves the process (logs, problem details, job documents).

Two kinds: credentials in a URL's userinfo (`https://user:pass@host/…`, which a caller may give so
that a page is fetched with basic auth), and capability URLs whose path *is* the secret: Slack's
incoming webhooks and slash-command `response_url`s (`https://hooks.slack.com/services/T/B/XXXX`,
`…/commands/…`) and Mattermost-style incoming webhooks (`https://chat.example.com/hooks/xxxx`).
The patterns are linear-time (bounded quantifiers, anchored on a literal), so hostile text cannot
make redaction slow.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_credentials", "redact_text", "redact_url"]

REDACTED = "***"

# "://user:pass@" → "://***@"; bounded so a long run without "@" costs O(256) per "://".
_USERINFO = re.compile(r"://[^\s/?#@\"'<>]{1,256}@")
# The secret path of a capability URL (kept: scheme and host, so a log still says where it went).
_CAPABILITY_PATH = re.compile(r"(hooks\.slack\.com|/hooks)/[^\s\"'<>]{1,2048}", re.IGNORECASE)


def redact_credentials(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by *** (for what callers and channels see)."""
    return _USERINFO.sub(f"://{REDACTED}@", text) if "@" in text else text


def redact_text(text: str) -> str:
    """`text` with URL credentials and capability-URL paths replaced by *** (for logs)."""
    text = redact_credentials(text)
    if "hooks" not in text.lower():
        return text
    return _CAPABILITY_PATH.sub(lambda m: f"{m.group(1)}/{REDACTED}", text)


def redact_url(url: str | None) -> str | None:
    """A user-given URL safe to show back (credentials hidden; None stays None)."""
    return None if url is None else redact_credentials(url)
