"""Sentences out of a reply still being written: each handed on once complete, nothing invalid, once."""

from __future__ import annotations

import json

import pytest

from service.pipeline.streaming import InOrder, SentenceStream, is_sentence_item

REPLY = json.dumps(
    {
        "sentences": [
            {"text": "The council voted {7 to 2} for the bridge.", "citations": ["s1"]},
            {"text": "It will cost 40 million dollars.", "citations": ["s2", "s3"]},
            {"text": "Critics said it was not needed.", "citations": ["s4"]},
        ]
    }
)


def feed_in_pieces(stream: SentenceStream, content: str, size: int = 3) -> list[tuple[int, int]]:
    """Feed `content` `size` characters at a time; (characters fed, sentences handed on) after each."""
    seen = []
    for end in range(size, len(content) + size, size):
        stream.feed(content[:end], content[end - size : end])
        seen.append((min(end, len(content)), stream.emitted))
    return seen


def test_each_sentence_is_handed_on_when_the_next_begins() -> None:
    items: list[dict] = []
    stream = SentenceStream(items.append)
    progress = feed_in_pieces(stream, REPLY)
    data = json.loads(REPLY)["sentences"]
    assert items == data[:2]  # the last one is complete only with the finished reply (the caller's part)
    second_starts = REPLY.index('{"text": "It will')
    first_handed_on = next(chars for chars, emitted in progress if emitted == 1)
    assert second_starts < first_handed_on <= second_starts + 3
    assert stream.committed


def test_a_fenced_reply_is_read_and_prose_before_it_ignored() -> None:
    items: list[dict] = []
    feed_in_pieces(SentenceStream(items.append), "Here you go:\n```json\n" + REPLY + "\n```")
    assert [i["citations"] for i in items] == [["s1"], ["s2", "s3"]]


@pytest.mark.parametrize(
    "bad",
    [{"text": "", "citations": ["s1"]}, {"text": "No ids.", "citations": "s1"}, "just a string", {"citations": []}],
)
def test_an_invalid_object_stops_the_hand_on(bad: object) -> None:
    reply = json.dumps(
        {
            "sentences": [
                {"text": "Fine.", "citations": ["s1"]},
                bad,
                {"text": "Later.", "citations": ["s2"]},
                {"text": "x", "citations": []},
            ]
        }
    )
    items: list[dict] = []
    feed_in_pieces(SentenceStream(items.append), reply)
    assert items == [{"text": "Fine.", "citations": ["s1"]}]
    assert not is_sentence_item(bad)


def test_restart_before_commit_forgets_and_after_commit_refuses() -> None:
    items: list[dict] = []
    stream = SentenceStream(items.append)
    stream.feed('{"sentences": [{"text": "A', "{")
    stream.restart()
    assert stream.emitted == 0 and not stream.committed
    feed_in_pieces(stream, REPLY)
    with pytest.raises(RuntimeError):
        stream.restart()


def test_a_reply_that_is_not_the_shape_hands_on_nothing() -> None:
    items: list[dict] = []
    feed_in_pieces(SentenceStream(items.append), '{"summary": [{"a": 1}, {"b": 2}, {"c": 3}]}')
    feed_in_pieces(SentenceStream(items.append), "I cannot {do} that, {sorry}.")
    assert items == []


def test_in_order_holds_a_later_producer_until_the_earlier_ones_finish() -> None:
    out: list[str] = []
    order = InOrder[str](3, out.append)
    order.add(2, "c1")
    order.add(1, "b1")
    assert out == []  # producer 0 is still at work
    order.add(0, "a1")
    assert out == ["a1"]
    order.finish(2)
    order.add(1, "b2")
    assert out == ["a1"]
    order.finish(0)  # releases producer 1's items; producer 2 waits for 1
    assert out == ["a1", "b1", "b2"]
    order.add(1, "b3")  # producer 1 is current now: straight through
    assert out == ["a1", "b1", "b2", "b3"]
    order.finish(1)
    assert out == ["a1", "b1", "b2", "b3", "c1"]
