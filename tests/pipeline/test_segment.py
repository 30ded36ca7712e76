"""segment(): stable ids and exact offsets, on the seeds and on any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.segment import segment
from tests.conftest import SEEDS


def assert_offsets_exact(text: str) -> None:
    sentences = segment(text)
    previous_end = 0
    for number, sentence in enumerate(sentences, 1):
        assert sentence.id == f"s{number}"
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.text == sentence.text.strip() and sentence.text
        assert sentence.start >= previous_end
        previous_end = sentence.end


def test_offsets_exact_on_every_seed() -> None:
    for path in SEEDS.glob("*.txt"):
        assert_offsets_exact(path.read_text(encoding="utf-8"))


def test_sentences_never_cross_a_line_break(seed_text: str) -> None:
    assert all("\n" not in s.text for s in segment(seed_text))


def test_ids_are_stable_across_runs(seed_text: str) -> None:
    assert segment(seed_text) == segment(seed_text)


def test_splits_ordinary_sentences() -> None:
    text = "Dr. Smith arrived at 10 a.m. on Monday. He left at noon.\n\nThe U.S. said nothing."
    assert [s.text for s in segment(text)] == [
        "Dr. Smith arrived at 10 a.m. on Monday.",
        "He left at noon.",
        "The U.S. said nothing.",
    ]


def test_blank_text_has_no_sentences() -> None:
    assert segment("") == [] and segment(" \n\r\n\t ") == []


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_offsets_exact_on_any_unicode(text: str) -> None:
    assert_offsets_exact(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Hello world.", "🙂 emoji!", "e\u0301", "שלום.", "\r\n", "\x00", " ", "A. B. C."])))
def test_offsets_exact_on_awkward_pieces(pieces: list[str]) -> None:
    assert_offsets_exact("".join(pieces))
