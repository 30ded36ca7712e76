"""Sentence analysis: the units the verifier compares, however the sentence was written down."""

from __future__ import annotations

import pytest

from service.verifier.analysis import analyze


def test_treebank_brackets_and_quotes_read_as_plain_text() -> None:
    tokenised = analyze("The 12,400 feet -LRB- 3,800 metre -RRB- volcano , `` one of the most active '' .")
    plain = analyze('The 12,400 feet (3,800 metre) volcano, "one of the most active".')
    assert tokenised.tokens == plain.tokens
    assert tokenised.names == plain.names == frozenset()  # "LRB" used to read as a name
    assert tokenised.quotes == plain.quotes == (("one", "of", "the", "most", "active"),)


def test_negation_units() -> None:
    plain = analyze("Nobody is forcing anybody to volunteer.")
    double = analyze("Nobody is not forcing anybody to volunteer.")
    assert plain.negated == double.negated == frozenset({"force"})
    assert plain.doubly_negated == frozenset() and double.doubly_negated == frozenset({"force"})
    hedged = analyze("Russia has little to gain.")
    assert hedged.hedged == frozenset({"gain"}) and hedged.negated == frozenset()
    moved = analyze("The group gave no evidence of troop movements.")
    assert moved.negated == frozenset({"evidence"}) and moved.negation_phrases["evidence"] == "no evidence"


def test_no_longer_negates_the_verb_after_it() -> None:
    # "longer" is part of the cue: the verb is what is negated, so dropping "no longer" is a flip.
    negated = analyze("I must no longer hand out sausage rolls.")
    assert negated.negated == frozenset({"hand"}) and negated.negation_phrases["hand"] == "must no longer hand"
    assert analyze("A Greek exit could no longer be ruled out.").negated == frozenset({"rule"})
    assert analyze("I must hand out sausage rolls.").negated == frozenset()


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("Eugene failed to win the bid.", {"win"}),
        ("Eugene failed in its bid to host the 2019 event.", set()),  # says nothing of 'bid'
        ("She refused to pay the fine.", {"pay"}),
        ("He refused the offer.", set()),
        ("He was unable to attend the hearing.", {"attend"}),
        ("The tremor came out of nowhere and was described as shallow.", set()),  # an idiom
        ("The money was nowhere to be found.", {"find"}),
    ],
)
def test_verbs_of_failing_negate_only_before_to(text: str, negated: set[str]) -> None:
    assert analyze(text).negated == frozenset(negated)


def test_stacked_cues_negate_one_word_twice() -> None:
    # "would not have been without": the "not" reaches the word "without" negates, a double negative.
    stacked = analyze("City would not have been without that century.")
    single = analyze("City would have been without that century.")
    assert stacked.negated == single.negated == frozenset({"century"})
    assert stacked.doubly_negated == frozenset({"century"}) and single.doubly_negated == frozenset()


def test_a_name_after_a_closing_quote_is_a_name() -> None:
    # "…in the gym,' Hall explained": the quote closes, so "Hall" does not open a sentence. A swapped
    # speaker there ("Irish explained") went unseen while the word read as sentence-initial.
    assert analyze("'The last thing is to pick up an injury in the gym,' Hall explained.").names == {"hall"}
    assert analyze('"It was a long season," Hall said.').names == {"hall"}
    assert analyze('He said: "Officers told me to stop."').names == frozenset()  # an opening quote still opens


@pytest.mark.parametrize(
    ("sentence", "list_numbers"),
    [
        ("The first is a 2014 Tamil action film, and the second is a 2016 historical drama.", {"1", "2"}),
        ("The second, Francis I, was King of France.", {"2"}),
        ("The first one is a film by Siva.", {"1"}),
        # a ranking or a count, not a place in a list: still numbers to find in the evidence
        ("She was the first, and only, woman to win.", set()),
        ("Smith finished second in the race.", set()),
        ("Lagos is the second-largest city.", set()),
        ("The second time, he won.", set()),
        ("Hamilton won, the second was Vettel.", set()),  # mid-sentence: no list opened it
        ("The second, Francis I, was the second king of that name.", set()),  # 'second' said again
        ("The leaders held two calls; the second was on August 16.", set()),  # 'two' says 2 too
    ],
)
def test_an_ordinal_opening_a_sentence_as_a_pronoun_points_into_a_list(sentence: str, list_numbers: set[str]) -> None:
    analysis = analyze(sentence)
    assert analysis.list_numbers == frozenset(list_numbers)
    assert analysis.list_numbers <= analysis.numbers


@pytest.mark.parametrize(
    ("sentence", "list_numbers"),
    [
        ("Two players have joined Torquay: Anderson, a 27-year-old defender, and Keating, a striker.", {"2"}),
        ("The passage mentions two actresses, Sheryl Lee and Sheryl Lee Ralph.", {"2"}),
        ('There are two films titled "Veeram": one is a 2014 action film, and the other is a 2016 drama.', {"2"}),
        ("Sheryl Lee and Sheryl Lee Ralph are two separate individuals.", {"2"}),
        ("two men , john smith and bob jones , were arrested .", {"2"}),  # tokenised text
        ("Two players joined: centre-back Anderson, 27, who left Barrow, and striker Keating, 21.", {"2"}),
        # no pair spelled out, or not exactly two items: the count is a fact the evidence must hold
        ("Two football transfers have been announced.", set()),
        ("The two men were arrested and charged.", set()),
        ("Three players have joined: Anderson and Keating.", set()),
        ("Two players have joined: Anderson, Keating and Smith.", set()),
        ("Two players have joined: Anderson, Keating, and Smith.", set()),
        ("Two films: Veeram and Vedalam. The second runs 2 hours.", set()),  # '2' said again
    ],
)
def test_a_count_of_two_that_sums_up_the_pair_the_sentence_names(sentence: str, list_numbers: set[str]) -> None:
    analysis = analyze(sentence)
    assert analysis.list_numbers == frozenset(list_numbers)
    assert analysis.list_numbers <= analysis.numbers


def test_a_letter_written_with_a_combining_accent_is_the_same_letter() -> None:
    # FaithBench sources write "Angoulême" as e + U+0302; a claim (or an article cleaned by ingest, NFC)
    # writes é as one character. Unnormalised, the name split into "angoule" + "me" and never matched.
    decomposed, composed = "Francis of Angoule\u0302me was crowned.", "Francis of Angoul\u00eame was crowned."
    apart, whole = analyze(decomposed), analyze(composed)
    assert (apart.tokens, apart.content, apart.names) == (whole.tokens, whole.content, whole.names)
    assert "angoul\u00eame" in apart.content
