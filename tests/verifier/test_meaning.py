"""Meaning checks: each kind of change the issue names, caught, explained, and not raised on a faithful rewording."""

from __future__ import annotations

import pytest

from service.pipeline.segment import segment
from service.verifier.analysis import analyze
from service.verifier.features import FEATURE_NAMES, SourceVocabulary, compare
from service.verifier.meaning import check_meaning
from service.verifier.verify import SourceIndex, verify_claim

# (kind, evidence, claim, feature that must fire (None: nothing may fire), words the reason must contain)
CASES = [
    # predicate polarity / antonyms
    ("antonym best", "It was the best season in the club's history, the manager said.",
     "It was the worst season in the club's history, the manager said.", "antonym_flip", "'worst' contradicts 'best'"),
    ("antonym before", "The minister resigned before the vote on the budget.",
     "The minister resigned after the vote on the budget.", "antonym_flip", "'after' contradicts 'before'"),
    ("antonym opened", "The museum opened its new wing to visitors on Saturday.",
     "The museum closed its new wing to visitors on Saturday.", "antonym_flip", "'closed' contradicts 'opened'"),
    ("antonym banned", "The council banned fireworks in the park last year.",
     "The council allowed fireworks in the park last year.", "antonym_flip", "'allowed' contradicts 'banned'"),
    ("antonym rise", "Prices rose sharply in the final quarter of the year.",
     "Prices fell sharply in the final quarter of the year.", "antonym_flip", "'fell' contradicts 'rose'"),
    ("antonym win", "The home side won the final against the visitors.",
     "The home side lost the final against the visitors.", "antonym_flip", "'lost' contradicts 'won'"),
    ("antonym faithful", "The museum opened its new wing to visitors on Saturday.",
     "On Saturday the museum opened a new wing to visitors.", None, None),
    ("antonym elsewhere, unrelated", "Prices rose sharply while the fall term began at the school.",
     "Prices rose sharply.", None, None),
    # modality and hedges
    ("could to will", "The company could face a fine of up to 10 million euros, regulators said.",
     "The company will face a fine of up to 10 million euros, regulators said.", "modality_shift", "'could'"),
    ("expected to to will", "The bill is expected to pass the senate next week.",
     "The bill will pass the senate next week.", "modality_shift", "'expected'"),
    ("allegedly dropped", "The former director allegedly stole money from the charity.",
     "The former director stole money from the charity.", "modality_shift", "'allegedly'"),
    ("reportedly dropped", "The singer reportedly married her partner in a private ceremony.",
     "The singer married her partner in a private ceremony.", "modality_shift", "'reportedly'"),
    ("hedge kept", "The company could face a fine of up to 10 million euros, regulators said.",
     "Regulators said the company may face a fine of up to 10 million euros.", None, None),
    ("month may is not a modal", "The election was held in May after a long campaign.",
     "The election was held after a long campaign in May.", None, None),
    # quantifiers and comparatives
    ("at least to at most", "At least 40 people were injured in the crash.",
     "At most 40 people were injured in the crash.", "bound_flip", "'at most 40'"),
    ("more than to fewer than", "More than 200 flights were cancelled on Monday.",
     "Fewer than 200 flights were cancelled on Monday.", "bound_flip", "'fewer than 200'"),
    ("nearly to more than", "Nearly 500 jobs will go at the plant.",
     "More than 500 jobs will go at the plant.", "bound_flip", "'more than 500'"),
    ("bound kept", "More than 200 flights were cancelled on Monday.",
     "On Monday, over 200 flights were cancelled.", None, None),
    ("comparative flipped", "Turnout was higher than in the previous election.",
     "Turnout was lower than in the previous election.", "antonym_flip", "'lower' contradicts 'higher'"),
    # units and scale
    ("million to billion", "The club lost £330m last year, its accounts show.",
     "The club lost £330bn last year, its accounts show.", "unit_mismatch", "'£330bn'"),
    ("pounds to dollars", "The club lost £330m last year, its accounts show.",
     "The club lost $330m last year, its accounts show.", "unit_mismatch", "'$330m'"),
    ("miles to kilometres", "The storm moved 40 miles inland overnight.",
     "The storm moved 40 kilometres inland overnight.", "unit_mismatch", "'40 kilometres'"),
    ("scale spelled out", "The club lost £330m last year, its accounts show.",
     "The club lost £330 million last year, its accounts show.", None, None),
    # months and weekdays
    ("month changed lower case", "the talks resumed in june after a break of two months .",
     "the talks resumed in july after a break of two months .", "date_mismatch", "'July'"),
    ("weekday changed", "The strike will begin on Tuesday, the union said.",
     "The strike will begin on Thursday, the union said.", "date_mismatch", "'Thursday'"),
    # content the evidence lacks
    ("invented clause", "The mayor opened the new bridge on Friday.",
     "The mayor opened the new bridge on Friday and later resigned amid protests over rising costs.",
     "unsupported_span", "resigned amid protests over rising costs' not in evidence"),
]


def _features(evidence: str, claim: str) -> tuple[dict[str, float], tuple[str, ...]]:
    ev = analyze(evidence)
    comparison = compare(analyze(claim), [ev], SourceVocabulary.of([ev]))
    return comparison.as_dict(), comparison.problems


MEANING = ("antonym_flip", "modality_shift", "bound_flip", "unit_mismatch", "date_mismatch")


@pytest.mark.parametrize(("evidence", "claim", "feature", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_meaning_check(evidence: str, claim: str, feature: str | None, reason: str | None) -> None:
    values, problems = _features(evidence, claim)
    if feature is None:
        assert [f for f in MEANING if values[f] > 0] == [], problems
        assert values["unsupported_span"] < 3
        return
    if feature == "unsupported_span":
        assert values[feature] >= 3
    else:
        assert values[feature] == 1.0, problems
    assert any(reason in p for p in problems), problems


@pytest.mark.parametrize(("evidence", "claim", "feature", "reason"),
                         [c[1:] for c in CASES if c[3] is not None], ids=[c[0] for c in CASES if c[3] is not None])
def test_meaning_change_is_unsupported_and_explained(evidence: str, claim: str, feature: str, reason: str) -> None:
    """End to end: the shipped verifier rejects the changed sentence and its reason names the change."""
    source = f"{evidence} The report was published by the regional office. Officials gave no further details."
    index = SourceIndex(segment(source))
    result = verify_claim(claim, [index.sentences[0].id], index)
    assert result.verdict == "unsupported"
    assert result.reason is not None and reason in result.reason


def test_every_meaning_check_is_a_feature() -> None:
    assert set(MEANING) | {"unsupported_span"} <= set(FEATURE_NAMES)


@pytest.mark.parametrize(("evidence", "claim"), [
    ("Manchester United's manager praised the players after the match.",
     "The manager of Manchester United praised the players after the match."),
    ("The manager of Manchester United praised the players.", "Manchester United's manager praised the players."),
    ("John Smith, the director, left the company in 2019.", "the director john smith left the company in 2019."),
])
def test_possessives_and_lower_case_names_match(evidence: str, claim: str) -> None:
    values, problems = _features(evidence, claim)
    assert values["missing_names"] == 0, problems


@pytest.mark.parametrize(("evidence", "claim", "name"), [
    ("John Smith, the director, left the company in 2019.", "the director peter smith left the company in 2019.",
     "Peter"),
    ("Talks between Ukraine and Russia resumed in the capital.", "talks between ukraine and belarus resumed.",
     "Belarus"),
])
def test_a_swapped_name_in_lower_case_is_caught(evidence: str, claim: str, name: str) -> None:
    source = f"{evidence} Nobody mentioned Belarus or Peter at all. Officials gave no further details."
    index = SourceIndex(segment(source))
    result = verify_claim(claim, [index.sentences[0].id], index)
    assert result.verdict == "unsupported"
    assert result.reason is not None and name in result.reason


def test_checks_report_nothing_on_an_identical_sentence() -> None:
    text = "At least 40 people could be hurt in May as £330m is spent 40 miles away on Tuesday."
    checks = check_meaning(analyze(text), [analyze(text)])
    assert checks.problems() == [] and checks.span == 0
