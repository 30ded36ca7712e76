"""Document text → sentences with stable ids and exact character offsets."""

from __future__ import annotations

import re
from functools import lru_cache

import nupunkt

from service.schema import Sentence

_LINE = re.compile(r"[^\r\n]+")


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def segment(text: str) -> list[Sentence]:
    """Split `text` into sentences `s1, s2, ...`; `text[s.start:s.end] == s.text` for each.

    Ingest's checks and the pipeline both segment the same text; the result is cached (sentences
    are frozen, and each caller gets its own list).
    """
    return list(_segment_cached(text))


@lru_cache(maxsize=16)
def _segment_cached(text: str) -> tuple[Sentence, ...]:
    """Split `text` into sentences (see `segment`).

    Lines are split first (a sentence never crosses a line break: news pages put captions,
    headings and pull quotes on lines of their own), then sentences within each line.
    """
    sentences: list[Sentence] = []
    for line in _LINE.finditer(text):
        line_text = line.group()
        if not line_text.strip():
            continue
        for span_start, span_end in nupunkt.sent_spans(line_text):
            start, end = _trimmed(text, line.start() + span_start, line.start() + span_end)
            if start < end:
                # model_construct: the fields are built right here (no validation needed), ~1 ms
                # of 10 on a 500-sentence article
                sentences.append(
                    Sentence.model_construct(id=f"s{len(sentences) + 1}", start=start, end=end, text=text[start:end])
                )
    return tuple(sentences)
