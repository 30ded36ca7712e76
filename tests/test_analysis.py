"""Sentence analysis: the units the verifier compares, however the sentence was written down."""

from __future__ import annotations

from service.analysis import analyze


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
