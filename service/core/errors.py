"""Our exceptions. Every one carries what a person needs to act on it.

SummaryError                      base; `status` and `title` map it to HTTP once, in api.py
├── InvalidInput                  400  the request makes no sense (empty text, two inputs ...)
│   └── URLNotAllowed             400  scheme, host or resolved address refused
├── ArticleTooLong                413  over the character or token cap
├── UnsupportedContent            415  wrong media type (request body or fetched page)
├── UnprocessableArticle          422  an article was read but no usable sentences came out
│   └── UnsupportedLanguage       422  the article is not in a language we verify (English)
├── FetchFailed                   502  the URL could not be fetched (DNS, status, timeout, size)
├── LLMError                      502  the model answered, but not usably
│   ├── LLMBadOutput              502  malformed / schema-invalid after the bounded re-asks
│   ├── LLMUnavailable            503  429/5xx/connection errors after the retries
│   │   └── CircuitOpen           503  failing fast: the breaker is open after repeated failures
│   └── LLMTimeout                504  the deadline ran out while waiting on the model
└── Overloaded                    503  too much in flight; come back after `retry_after`
"""

from __future__ import annotations


class SummaryError(Exception):
    """Base error: its message is shown to the user as it is."""

    status = 500
    title = "Summary failed"
    type_slug = "summary-error"

    def __init__(self, message: str, *, retry_after: float | None = None, **facts: object) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.facts = facts


class InvalidInput(SummaryError):
    status, title, type_slug = 400, "Invalid input", "invalid-input"


class URLNotAllowed(InvalidInput):
    title, type_slug = "URL not allowed", "url-not-allowed"


class ArticleTooLong(SummaryError):
    status, title, type_slug = 413, "Article too long", "article-too-long"


class UnsupportedContent(SummaryError):
    status, title, type_slug = 415, "Unsupported content type", "unsupported-content"


class UnprocessableArticle(SummaryError):
    status, title, type_slug = 422, "No usable article text", "unprocessable-article"


class UnsupportedLanguage(UnprocessableArticle):
    title, type_slug = "Unsupported language", "unsupported-language"


class FetchFailed(SummaryError):
    status, title, type_slug = 502, "Could not fetch the URL", "fetch-failed"


class LLMError(SummaryError):
    status, title, type_slug = 502, "The language model failed", "llm-error"

    def __init__(self, message: str, *, attempts: int = 0, **facts: object) -> None:
        super().__init__(message, **facts)
        self.attempts = attempts


class LLMBadOutput(LLMError):
    title, type_slug = "The language model returned unusable output", "llm-bad-output"


class LLMUnavailable(LLMError):
    status, title, type_slug = 503, "The language model is unavailable", "llm-unavailable"


class CircuitOpen(LLMUnavailable):
    title, type_slug = "The language model is failing; not trying for now", "llm-circuit-open"


class LLMTimeout(LLMError):
    status, title, type_slug = 504, "The language model timed out", "llm-timeout"


class Overloaded(SummaryError):
    status, title, type_slug = 503, "Service overloaded", "overloaded"
