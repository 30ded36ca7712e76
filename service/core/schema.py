"""The data that flows through the pipeline and out of the API (pydantic models, no behaviour)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

Verdict = Literal["supported", "unsupported"]
PolicyName = Literal["drop", "flag", "repair"]


class Sentence(BaseModel):
    """One source sentence: `document.text[start:end] == text`, always."""

    model_config = ConfigDict(frozen=True)

    id: str
    start: int
    end: int
    text: str


class Document(BaseModel):
    """Clean article text plus where it came from."""

    text: str
    title: str | None = None
    source_url: str | None = None
    content_type: Literal["text", "html", "url"] = "text"
    language: str | None = None
    notes: list[str] = Field(default_factory=list, description="What ingestion did that the caller should know.")


class Citation(BaseModel):
    """A pointer into the document: `document.text[start:end] == quote`."""

    sentence_id: str
    start: int
    end: int
    quote: str


class SummarySentence(BaseModel):
    """One summary sentence with its evidence and the verifier's verdict."""

    text: str
    citations: list[Citation]
    verdict: Verdict
    score: float = Field(ge=0.0, le=1.0)
    reason: str | None = None
    recited: bool = Field(default=False, description="True when the verifier replaced the model's citations")


class DroppedSentence(BaseModel):
    """A summary sentence removed by the `drop` policy, kept so nothing is silently lost."""

    text: str
    cited_ids: list[str]
    score: float
    reason: str | None


class Usage(BaseModel):
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    reasks: int = 0
    tokens_estimated: bool = Field(
        default=False,
        description="True when a model server reported no token usage for at least one call (llama-cpp-python's"
        " streamed replies) and the counts include the offline estimate (characters / 4) for it.",
    )


class DocumentInfo(BaseModel):
    text: str
    sentence_count: int
    title: str | None = None
    source_url: str | None = None
    sentences: list[Sentence] | None = None


# Half of a UTF-16 pair on its own: valid in a JSON string escape, never in UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


class SummaryRequest(BaseModel):
    """POST /v1/summaries body: exactly one of text, html or url."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="Plain article text.")
    html: str | None = Field(default=None, description="An HTML page; the main text is extracted.")
    url: HttpUrl | None = Field(default=None, description="An http(s) URL to fetch (public hosts only).")
    max_sentences: int | None = Field(default=None, ge=1, le=30)
    policy: PolicyName | None = None
    include_sentences: bool = Field(default=False, description="Return every source sentence with offsets.")

    @field_validator("text", "html")
    @classmethod
    def _no_lone_surrogates(cls, value: str | None) -> str | None:
        # JSON may spell one ("\ud800"); no UTF-8 encodes it, so the cache key and the request
        # fingerprint (and every later .encode) would fail with a 500 instead of this 422.
        if value is not None and (found := _SURROGATE.search(value)):
            raise ValueError(
                f"is not valid Unicode text: a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at character"
                f" {found.start():,}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_input(self) -> SummaryRequest:
        given = [name for name in ("text", "html", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, html or url (got {len(given)}: {given or 'none'})")
        return self


class SummaryResponse(BaseModel):
    """The API's answer: verified summary sentences, their evidence, and what it cost."""

    summary: list[SummarySentence]
    document: DocumentInfo
    provider: str
    model: str
    prompt_version: str
    policy: PolicyName
    usage: Usage
    dropped: list[DroppedSentence]
    timings_ms: dict[str, float]
    chunks: int = 1
    excerpt_ids: list[str] | None = Field(
        default=None,
        description="When the article was condensed to fit CITESUM_PROMPT_TOKEN_BUDGET: the ids of the source"
        " sentences the model was shown (citations and verification still use the whole article); null when it"
        " was shown every sentence.",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="Plain-language remarks about this answer (text read as HTML, fewer sentences in the article"
        " than asked for, an LLM judge that could not be used); empty when there is nothing to say.",
    )
