"""The embedded summarizer's choices: sentences that stand alone, or with the sentence they lean on."""

from __future__ import annotations

import pytest

from service.pipeline.extractive import is_dangling, summarize_extractive
from service.pipeline.segment import segment


@pytest.mark.parametrize(("text", "dangling"), [
    ("It reported a loss of $5m for the year, the company said on Monday.", True),
    ("Her flashy pictures of the yacht drew thousands of followers online.", True),
    ("But the council said the bridge would stay closed until the summer.", True),
    ('"We are not going anywhere and we will fight this to the end."', True),
    ("\u201cWe will fight this to the end,\u201d the mayor told reporters on Tuesday.", False),
    ("I don\u2019t think that\u2019s something the Kremlin is ready for.\u201d", True),
    ('We kept going until the very end and never once thought of giving up."', True),
    ("The company reported a loss of $5m for the year on Monday.", False),
    ("Italy's Sergio Mattarella said the vote would go ahead.", False),
])
def test_dangling_sentences_are_recognised(text: str, dangling: bool) -> None:
    assert is_dangling(segment(text)[0]) is dangling


ARTICLE = (
    "A photographer was arrested at Oslo airport on Friday. "
    "Her flashy drone pictures of Oslo yachts and harbour parties were sold to magazines across Europe, police said. "
    "Police said the drone pictures of yachts in the Oslo harbour broke flight rules near the airport. "
    "Magazines across Europe printed the pictures of Oslo yachts and harbour parties last summer. "
    "The weather was mild for the time of year, with light winds from the west. "
    "Flights to Bergen and Stavanger were delayed by up to an hour because of fog in the morning. "
    "Customs officers kept the drone and two cameras with pictures of yachts, police said."
)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_dangling_sentence_is_never_picked_without_the_sentence_before_it(n: int) -> None:
    sentences = segment(ARTICLE)
    chosen = summarize_extractive(sentences, n)
    ids = [s.id for s in sentences]
    for sentence in chosen:
        if is_dangling(sentence):
            before = ids[ids.index(sentence.id) - 1]
            assert before in {s.id for s in chosen}, [s.text for s in chosen]


@pytest.mark.parametrize("caption", [
    "Scroll down for video A mother was holding the two-year-old boy over the railing of the cheetah pit at the zoo.",
    "Watched: a mother was holding the two-year-old boy over the railing of the cheetah pit at the zoo.",
])
def test_a_photo_caption_run_into_the_text_is_never_picked(caption: str) -> None:
    article = (
        f"{caption} The two-year-old boy fell into the cheetah pit at the zoo on Saturday, officials said. "
        "Zoo officials said the boy's mother was holding him over the railing of the cheetah pit. "
        "The boy was taken to hospital with minor injuries to his legs and was released on Sunday. "
        "The cheetahs did not approach the boy, and his parents pulled him out of the pit within seconds."
    )
    sentences = segment(article)
    assert sentences[0].text == caption
    for n in (1, 2, 3):
        assert caption not in [s.text for s in summarize_extractive(sentences, n)]
