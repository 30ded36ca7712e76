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


@pytest.mark.parametrize(("caption", "label"), [
    # segment cuts "Scroll down for video" off the caption; neither piece is quoted
    ("Scroll down for video A mother was holding the two-year-old boy over the railing of the cheetah pit at the zoo.",
     "Scroll down for video"),
    ("Watched: a mother was holding the two-year-old boy over the railing of the cheetah pit at the zoo.",
     "Watched: a mother was holding the two-year-old boy over the railing of the cheetah pit at the zoo."),
])
def test_a_photo_caption_run_into_the_text_is_never_picked(caption: str, label: str) -> None:
    article = (
        f"{caption} The two-year-old boy fell into the cheetah pit at the zoo on Saturday, officials said. "
        "Zoo officials said the boy's mother was holding him over the railing of the cheetah pit. "
        "The boy was taken to hospital with minor injuries to his legs and was released on Sunday. "
        "The cheetahs did not approach the boy, and his parents pulled him out of the pit within seconds."
    )
    sentences = segment(article)
    assert sentences[0].text == label
    for n in (1, 2, 3):
        picked = [s.text for s in summarize_extractive(sentences, n)]
        assert label not in picked and not any(text.startswith(label) for text in picked)


def test_a_caption_glued_to_a_body_sentence_without_an_end_mark_is_not_quoted() -> None:
    """A Daily Mail caption pasted in before a body sentence, with no full stop between them: the
    summary may quote the body sentence, never the caption riding along with it (segment cuts there)."""
    caption = "The boy's mother watches on as rescuers work at the cheetah pit (file photo of the zoo)"
    article = (
        "A two-year-old boy fell into the cheetah pit at the city zoo on Saturday, officials said. "
        "His mother had been holding him over the railing of the cheetah pit when he slipped. "
        f"{caption} The boy was pulled out of the cheetah pit by his parents before the rescuers arrived. "
        "He was taken to hospital with minor injuries and the zoo said the cheetahs never approached him. "
        "The zoo said it would review the railing around the cheetah pit after the fall."
    )
    for n in (1, 2, 3):
        picked = [s.text for s in summarize_extractive(segment(article), n)]
        assert not any(caption in text for text in picked), picked
    assert "The boy was pulled out of the cheetah pit by his parents before the rescuers arrived." in [
        s.text for s in segment(article)
    ]


BRIDGE = (
    "The Halvik bridge was shut to traffic on Monday after inspectors found cracks, leaving commuters in Aldbury"
    " facing long detours. "
    "Drivers face a detour of about twelve miles through the valley while the county decides what to do next. "
    "The county engineer said the cracks were found during a routine inspection of the bridge last week. "
    "Repairs to the steel supports could take several months and cost the county several million dollars,"
    " according to early estimates. "
    "Local businesses near the bridge said the closure would hurt trade during the busy summer season. "
    "The bridge carries about nine thousand vehicles a day between the two towns on either side of the river. "
    "It was built in 1962 and was last repaired in 2004, when the deck was replaced. "
    "The county board will meet on Thursday to discuss funding for the repairs and a temporary ferry service. "
    "Inspectors will return to the bridge next week to examine the remaining steel supports for cracks and decide"
    " whether the bridge can reopen to light traffic before the repairs to the cracked supports begin. "
    "Residents have been asked to avoid the area around the bridge while inspectors and engineers work on the supports."
)


def test_the_facts_next_to_a_chosen_sentence_are_not_passed_over_for_a_late_vague_one() -> None:
    """News puts its facts up front: the cost and length of the repairs (sentence 4) beat a late request to
    avoid the area (sentence 10), though 4 sits next to the chosen sentence 3 (v2's adjacency penalty and
    weak lead bonus picked sentence 10; on CNN/DM that cost it ROUGE against Lead-3, docs/benchmarks.md)."""
    sentences = segment(BRIDGE)
    chosen = summarize_extractive(sentences, 3)
    assert [sentences.index(s) for s in chosen] == [0, 2, 3]



@pytest.mark.parametrize("after", [1, 2, 3])
def test_photo_captions_pasted_into_the_article_do_not_change_the_picks(after: int) -> None:
    """Captions (no end mark) are not statements: three of them after sentence `after` neither push the
    sentences below them down the lead prior nor part neighbours (before: the captions counted as
    places, so the repairs' cost, sentence 4, lost to the late sentence 9)."""
    texts = [s.text for s in segment(BRIDGE)]
    captions = [
        "Traffic queues at the detour around the Halvik bridge on Monday (file photo)",
        "The cracked steel supports seen from the river bank below the bridge (pictured)",
        "Scroll down for video",
    ]
    with_captions = " ".join([*texts[:after], *captions, *texts[after:]])
    for n in (2, 3):
        expected = [s.text for s in summarize_extractive(segment(BRIDGE), n)]
        assert [s.text for s in summarize_extractive(segment(with_captions), n)] == expected