"""Summary sentences out of a reply that is still being written, and the events a streamed summary emits.

`SentenceStream` is fed the model's reply as it grows ({"sentences": [{"text", "citations"}, ...]})
and hands on each sentence object the moment it is complete, i.e. once the next object has begun;
the last one is handed on by the caller from the finished reply. It reads partial JSON with
`jiter` (openai's own dependency), and only when a piece holds a `{`, so a reply of n tokens is
parsed a handful of times, not n.

Events (`StreamEvent.kind`): `sentence` (a summary sentence, verified or flagged, with its
citations), `dropped` (a sentence the verifier refused), `progress` (chunks done of total); the
HTTP layer adds `done` and `error`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import jiter

__all__ = ["EventSink", "InOrder", "SentenceStream", "StreamEvent", "is_sentence_item"]

T = TypeVar("T")


@dataclass(frozen=True)
class StreamEvent:
    """One thing a streamed summary reports: `kind` and its JSON-ready `data`."""

    kind: str
    data: dict[str, Any]


EventSink = Callable[[StreamEvent], None]


def is_sentence_item(item: object) -> bool:
    """Whether `item` is a sentence object the summary schema accepts (validate_summary_reply's rule)."""
    if not isinstance(item, dict):
        return False
    text, citations = item.get("text"), item.get("citations")
    return (
        isinstance(text, str)
        and bool(text.strip())
        and isinstance(citations, list)
        and all(isinstance(c, str) for c in citations)
    )


class SentenceStream:
    """A reply sink for `LLMClient.complete_json`: complete sentence objects go to `on_item` as they appear.

    `committed` turns true with the first sentence handed on: from then on the call may not be
    retried or re-asked (the reader has seen those sentences), so a failure ends the summary.
    """

    def __init__(self, on_item: Callable[[dict[str, Any]], None]) -> None:
        self.on_item = on_item
        self.emitted = 0  # sentence objects handed on so far
        self.committed = False
        self._stopped = False  # an invalid object was seen: hand on nothing more

    def restart(self) -> None:
        """A new reply begins (a retry or a re-ask before anything was handed on)."""
        if self.committed:
            raise RuntimeError("a committed stream cannot restart")
        self.emitted, self._stopped = 0, False

    def feed(self, content: str, piece: str) -> None:
        """The reply so far, and the piece just added."""
        if "{" not in piece or self._stopped:
            return
        start = content.find("{")
        if start == -1:
            return
        try:
            data = jiter.from_json(content[start:].encode(), partial_mode=True)
        except ValueError:  # not JSON after all (prose around it): the finished reply decides
            return
        sentences = data.get("sentences") if isinstance(data, dict) else None
        if not isinstance(sentences, list):
            return
        # Every object but the last is complete: the last may still be growing.
        for item in sentences[self.emitted : len(sentences) - 1]:
            if not is_sentence_item(item):
                self._stopped = True
                return
            self.emitted += 1
            self.committed = True
            self.on_item(item)


class InOrder(Generic[T]):
    """Items from `count` producers working at once, handed to `emit` in producer order.

    Producer i's items go out as they come once producers 0..i-1 have finished, and wait until then
    before: parallel calls that each write a part of a summary are read in article order.
    """

    def __init__(self, count: int, emit: Callable[[T], None]) -> None:
        self.emit = emit
        self.waiting: list[list[T]] = [[] for _ in range(count)]
        self.finished = [False] * count
        self.current = 0  # the producer whose items go out as they come

    def add(self, producer: int, item: T) -> None:
        """Producer `producer` has an item."""
        if producer == self.current:
            self.emit(item)
        else:
            self.waiting[producer].append(item)

    def finish(self, producer: int) -> None:
        """Producer `producer` has no more items: release the ones waiting behind it."""
        self.finished[producer] = True
        while self.current < len(self.finished) and self.finished[self.current]:
            self.current += 1
            if self.current < len(self.waiting):
                ready, self.waiting[self.current] = self.waiting[self.current], []
                for item in ready:
                    self.emit(item)
