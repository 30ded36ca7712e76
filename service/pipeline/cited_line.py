"""A one-sentence answer written as plain text with its citations at the end: `Sentence. [s3, s4]`.

A part of a long article is summarized in one sentence (summarize.LLMDrafter.draft_parts). Asked
for as JSON, `{"sentences": [{"text": "…", "citations": ["s3", "s4"]}]}` wraps the sentence in 56
characters (~14 tokens), and a reader waits for every one of them, at the model's decoding speed,
before the first sentence can be shown; ` [s3, s4]` is 9. Same sentence, same ids, read out sooner.

`parse_cited_line` turns the answer into the summary reply shape the JSON path produces, so
everything after the call (validation, drafts, verification) is shared. A model that answers in
the JSON shape anyway is read as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from service.pipeline.llm import InvalidOutput, parse_json_reply

__all__ = ["ASK_AGAIN", "parse_cited_line"]

ASK_AGAIN = "Answer again with only the sentence, then the ids it cites in square brackets, like [s3, s4]."

# `[s3]`, `[s3, s7]`, `[s3; s7]`: one bracket of ids (a model may write several, or put one mid-sentence).
_MARKER = re.compile(r"\[\s*(s\d+(?:\s*[,;]\s*s\d+)*)\s*\]", re.I)
_ID = re.compile(r"s\d+", re.I)
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


def parse_cited_line(
    content: str | None, validate: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """`{"sentences": [{"text", "citations"}]}` from a cited line (InvalidOutput: empty, or ids alone).

    Only lines holding an id bracket count (a preamble such as "Here is the sentence:" is dropped);
    the brackets are taken out of the text and their ids, in order and once each, are its citations.
    A sentence written without ids is kept with none: the verifier then looks for its evidence in
    the whole article, as it does for any sentence its citations do not support, and cites what it
    finds or drops the sentence. (A real 1.5B model left the ids out of two answers in a row for one
    part of the seed article; re-asking would double that part's wait and fail the summary.)
    """
    if not content or not content.strip():
        raise InvalidOutput("the reply was empty")
    text = content.strip()
    if text.startswith(("{", "```")):
        return parse_json_reply(content, validate)
    lines = [line for line in text.splitlines() if line.strip()]
    cited = [line for line in lines if _MARKER.search(line)]
    if not cited:  # no ids at all: the sentence, without a preamble line ("Here is the sentence:")
        cited = [line for line in lines if not line.rstrip().endswith(":")] or lines
    joined = " ".join(cited)
    ids = list(dict.fromkeys(i.lower() for m in _MARKER.finditer(joined) for i in _ID.findall(m.group(1))))
    sentence = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(_MARKER.sub(" ", joined).split()))
    if sentence.startswith("<") and sentence.endswith(">"):  # the placeholder's brackets, copied
        sentence = sentence[1:-1].strip()
    if not sentence:
        raise InvalidOutput("the answer holds ids but no sentence")
    data = {"sentences": [{"text": sentence, "citations": ids}]}
    if validate is not None:
        validate(data)
    return data
