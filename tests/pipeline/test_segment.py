"""segment(): stable ids and exact offsets, on the seeds and on any text."""

from __future__ import annotations

import pytest
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
@given(st.lists(st.sampled_from(["Hello world.", "🙂 emoji!", "e\u0301", "שלום.", "\r\n", "\x00", " ", "A. B. C.", "end.", "Next", "\"", "\u201c", "U.S.", "No.5"])))
def test_offsets_exact_on_awkward_pieces(pieces: list[str]) -> None:
    assert_offsets_exact("".join(pieces))


# Text whose paragraph breaks were dropped (BBC articles in XSum) glues sentences together.
GLUED = [
    ("He won a free-kick early in the match.And Tansey converted it.",
     ["He won a free-kick early in the match.", "And Tansey converted it."]),
    ('"We will be back," she said.The evacuees left on Monday.',
     ['"We will be back," she said.', "The evacuees left on Monday."]),
    # a straight quote after the full stop closes the quotation when one is open, else opens the next
    ('She said: "It was hard.We kept going."Then she left.',
     ['She said: "It was hard.', 'We kept going."', "Then she left."]),
    ('It was over by then.He said.\u201cWe won,\u201d he added.',
     ["It was over by then.", "He said.", "\u201cWe won,\u201d he added."]),
    ('They called it "secret".It was not.', ['They called it "secret".', "It was not."]),
    ("Is it true?Nobody knows!Wait and see.", ["Is it true?", "Nobody knows!", "Wait and see."]),
    ("The film came out in 2017.It made $5m.The sequel did not.",
     ["The film came out in 2017.", "It made $5m.", "The sequel did not."]),
    ("Match ends, Gateshead 2, Wrexham 1.Second Half ends.", ["Match ends, Gateshead 2, Wrexham 1.", "Second Half ends."]),
    ("It was confirmed.A man, 45, was arrested.", ["It was confirmed.", "A man, 45, was arrested."]),
    ("It was run by Patrick Bradley Ltd.Mr McGurk denied it.", ["It was run by Patrick Bradley Ltd.", "Mr McGurk denied it."]),
]

# Full stops before a letter that end nothing.
NOT_ENDS = [
    "The U.S.Army said nothing about it.",
    "He lives at No.5 Downing Street now.",
    "Shares rose 3.5 per cent on Monday.",
    "The book by J.K.Rowling sold well.",
    "She has a Ph.D.Thesis defended last year.",
    "Write to news.Desk@bbc.co.uk for details.",
    "See www.bbc.co.uk/News.Index for details.",
    "Read https://example.com/Story.Html today.",
    "Mr.Smith and Dr.Jones met St.Louis officials.",
    "The site Money.Co.uk said so.",
    "They used ASP.NET Core for it.",
    "Washington, D.C.Officials said so.",
]


@pytest.mark.parametrize(("text", "expected"), GLUED, ids=[g[1][1][:20] for g in GLUED])
def test_sentences_glued_by_a_missing_space_are_split(text: str, expected: list[str]) -> None:
    assert [s.text for s in segment(text)] == expected
    assert_offsets_exact(text)


@pytest.mark.parametrize("text", NOT_ENDS)
def test_full_stops_inside_abbreviations_addresses_and_numbers_are_not_split(text: str) -> None:
    assert [s.text for s in segment(text)] == [text]


def test_a_paragraph_of_glued_bbc_sentences_has_one_sentence_each() -> None:
    sentences = [
        "The club said it had been a difficult season.",
        '"We have learned a lot," manager Jim Hunt said.',
        "Mr Hunt joined from St Mirren in 2015.",
        "He had previously worked in the U.S. for three years.",
        "The team finished 4.5 points clear.",
        "Fans can write to sport@bbc.co.uk with their views.",
    ]
    text = "".join(sentences)
    assert [s.text for s in segment(text)] == sentences


# Photo captions pasted into the body (Daily Mail pages) end with no mark at all: the caption must be
# a sentence of its own (so no summary quotes it), not the start of the body sentence after it.
UNMARKED = [
    ("Two players were sent off. John Carver looks on as his side struggle in the Tyne-Wear derby"
     " He said before the game that his side would win.",
     ["Two players were sent off.", "John Carver looks on as his side struggle in the Tyne-Wear derby",
      "He said before the game that his side would win."]),
    ("A mother was holding the boy when he fell (file photo of cheetahs at the zoo) The boy was rescued by his parents.",
     ["A mother was holding the boy when he fell (file photo of cheetahs at the zoo)", "The boy was rescued by his parents."]),
    ("A boy fell into the pit. Scroll down for video Shocked: a visitor said the drop was huge.",
     ["A boy fell into the pit.", "Scroll down for video", "Shocked: a visitor said the drop was huge."]),
    ("A boy fell into the pit. SCROLL DOWN FOR VIDEO Shocked: a visitor said the drop was huge.",
     ["A boy fell into the pit.", "SCROLL DOWN FOR VIDEO", "Shocked: a visitor said the drop was huge."]),
    ("Fighter ace: his story is to be told in a film dubbed \u2018The First Great Escape\u2019 The story of how he"
     " recovered is remarkable.",
     ["Fighter ace: his story is to be told in a film dubbed \u2018The First Great Escape\u2019",
      "The story of how he recovered is remarkable."]),
    # a caption that ends on a name
    ("He was sitting in the sunshine with his Jack Russell Sam The retired charity worker said he was shaken.",
     ["He was sitting in the sunshine with his Jack Russell Sam", "The retired charity worker said he was shaken."]),
    # nupunkt ends a sentence after a title it does not know mid-line
    ("The family fell ill in St. John, where they were renting a villa. Orem police Lt. Craig Martinez said so.",
     ["The family fell ill in St. John, where they were renting a villa.", "Orem police Lt. Craig Martinez said so."]),
]

# Capitalised openers inside a sentence: titles (the next word is capitalised too), labels, "A and B".
NOT_UNMARKED = [
    "He starred in the film A Beautiful Mind in 2001 and won praise.",
    "Infants can be seen in the images A and B while adults are labelled C.",
    "Four adults pile onto scooters to get from A to B in the city every day.",
    "The song Push It Real Good was a hit in the profile of the On the Mat studio.",
    "The video shows how to scroll down for more pictures of the house.",
    "That was the year Don't Push It won the Grand National at Aintree.",
    "He named Plan A in his talk on the BBC Today programme last week.",
    "She met Dr. Smith and Gen. Jones at the base on Monday.",
]


@pytest.mark.parametrize(("text", "expected"), UNMARKED, ids=[u[1][1][:20] for u in UNMARKED])
def test_a_caption_run_into_the_body_without_an_end_mark_is_its_own_sentence(text: str, expected: list[str]) -> None:
    assert [s.text for s in segment(text)] == expected
    assert_offsets_exact(text)


@pytest.mark.parametrize("text", NOT_UNMARKED)
def test_capitalised_words_inside_a_sentence_do_not_split_it(text: str) -> None:
    assert [s.text for s in segment(text)] == [text]
