"""A summary request's text, HTML or URL → one clean Document, checked against the length limits."""

from __future__ import annotations

import asyncio
import re
from itertools import islice
from typing import Literal, TypeVar

import trafilatura

from service.core.config import Settings
from service.core.errors import ArticleTooLong, InvalidInput, UnprocessableArticle
from service.core.offload import run_cpu_bound
from service.core.schema import Document, SummaryRequest
from service.pipeline.boilerplate import clean_text
from service.pipeline.fetch import HTML_TYPES, fetch_url
from service.pipeline.segment import segment

__all__ = ["extract_html", "ingest", "looks_like_html"]

T = TypeVar("T")

# Raw input this many times over the article cap is refused before any parsing: noise seldom
# doubles a page, and cleaning a huge input would cost time before the cap could say no.
_RAW_OVER_CAP = 4
# Tags of pages and fragments; a few in plain text (an article quoting "<b>") stay below the bar.
_HTML_TAG = re.compile(
    r"<(?:!doctype\s+html|/?(?:html|head|body|p|div|span|br|a|h[1-6]|ul|ol|li|article|section|main|header"
    r"|footer|nav|script|style|table|tr|td|img|meta|link|strong|em|b|i|figure|figcaption)\b[^<>]{0,2000})>",
    re.I,
)
_HTML_MIN_TAGS = 3


def looks_like_html(text: str) -> bool:
    """True for HTML pasted as text: a page (`<!doctype html`, `<html`) or a fragment with 3+ HTML tags."""
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        return True
    return len(list(islice(_HTML_TAG.finditer(text, 0, 50_000), _HTML_MIN_TAGS))) >= _HTML_MIN_TAGS


def extract_html(html: str, url: str | None = None) -> tuple[str, str | None]:
    """Return (clean article text, title) from an HTML page: trafilatura's main text, then clean_text."""
    try:
        extracted = trafilatura.bare_extraction(
            html,
            url=url,
            include_comments=False,
            include_tables=False,
            include_links=False,
            include_images=False,
            with_metadata=True,
        )
    except Exception:  # trafilatura/lxml raise many kinds on broken markup; all mean "no article"
        return "", None
    if extracted is None or not getattr(extracted, "text", None):
        return "", None
    text, found_title = clean_text(extracted.text)
    meta_title = (extracted.title or "").strip() or None
    return text, meta_title or found_title


async def ingest(request: SummaryRequest, settings: Settings) -> Document:
    """Turn the request's one input into a Document whose text is ready to segment."""
    # Cleaning and the checks (which segment the text) are CPU-bound (~0.7 s at the 400k-character
    # cap): one worker-thread hop runs them, so the event loop stays free (short text: inline).
    if request.text is not None:
        _refuse_blank(request.text, "text")
        _refuse_huge(request.text, "text", settings)
        if looks_like_html(request.text):  # pasted page source: summarizing its tags helps no one
            document = await asyncio.to_thread(_document, request.text, "html", settings, is_html=True)
            document.notes.append("the text looked like HTML, so it was read as HTML (send it as `html` next time)")
            return document
        return await run_cpu_bound(len(request.text), _document, request.text, "text", settings)
    if request.html is not None:
        _refuse_blank(request.html, "html")
        _refuse_huge(request.html, "html", settings)
        return await asyncio.to_thread(_document, request.html, "html", settings, is_html=True)
    if request.url is not None:
        page = await fetch_url(str(request.url), settings)
        # A fetched page gets the same early refusal as pasted text: CITESUM_FETCH_MAX_BYTES (5 MB)
        # allows pages whose cleaning alone would take tens of seconds before the cap said no.
        _refuse_huge(page.text, f"page at {page.url}", settings)
        return await asyncio.to_thread(
            _document, page.text, "url", settings, is_html=page.content_type in HTML_TYPES, url=page.url
        )
    # SummaryRequest's validator makes this unreachable; say so plainly if it ever is not
    raise InvalidInput("give exactly one of text, html or url")


def _document(
    raw: str,
    content_type: Literal["text", "html", "url"],
    settings: Settings,
    *,
    is_html: bool = False,
    url: str | None = None,
) -> Document:
    """The checked Document from raw page text or HTML (CPU-bound: see `ingest`)."""
    text, title = extract_html(raw, url) if is_html else clean_text(raw)
    document = Document(text=text, title=title, source_url=url, content_type=content_type)
    _check_article(document, settings)
    return document


def _refuse_blank(value: str, field: str) -> None:
    if not value.replace("\x00", "").strip():
        raise InvalidInput(f"the {field} is empty (only whitespace or NUL characters); send an article")


def _refuse_huge(value: str, field: str, settings: Settings) -> None:
    limit = settings.max_article_chars * _RAW_OVER_CAP
    if len(value) > limit:
        raise ArticleTooLong(
            f"the {field} is {len(value):,} characters; at most {limit:,} are read"
            f" ({_RAW_OVER_CAP} x CITESUM_MAX_ARTICLE_CHARS={settings.max_article_chars:,})",
            chars=len(value),
            limit=limit,
        )


def _check_article(document: Document, settings: Settings) -> None:
    where = f" at {document.source_url}" if document.source_url else ""
    chars = len(document.text)
    if chars > settings.max_article_chars:
        raise ArticleTooLong(
            f"the article{where} is {chars:,} characters after cleaning; the limit is"
            f" {settings.max_article_chars:,} (CITESUM_MAX_ARTICLE_CHARS)",
            chars=chars,
            limit=settings.max_article_chars,
        )
    if chars < settings.min_article_chars:
        raise UnprocessableArticle(
            f"no article text found{where}: {chars} characters were left after removing page furniture;"
            f" at least {settings.min_article_chars} are needed (CITESUM_MIN_ARTICLE_CHARS)",
            chars=chars,
        )
    if not segment(document.text):
        raise UnprocessableArticle(f"no sentences found in the article{where}")
