"""The verifier's catches, each on the seed article: changed number, swapped name, negation, mis-citation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.segment import segment
from service.verifier.verify import DEFAULT_THRESHOLD, SourceIndex, Verification, verify_claim

SEED = Path(__file__).resolve().parents[2] / "seeds" / "belarus-putin-options.txt"


@pytest.fixture(scope="module")
def index() -> SourceIndex:
    return SourceIndex(segment(SEED.read_text(encoding="utf-8")))


def sentence_with(index: SourceIndex, fragment: str) -> tuple[str, str]:
    """(id, text) of the first source sentence containing `fragment`."""
    found = next(s for s in index.sentences if fragment in s.text)
    return found.id, found.text


# (name, fragment locating the cited sentence, edit (old, new) or None, expected verdict, reason contains)
EDITS = [
    ("verbatim", "400km", None, "supported", None),
    ("changed number", "400km", ("400km", "500km"), "unsupported", "number 500 not in evidence"),
    ("changed date", "On August 15", ("August 15", "August 19"), "unsupported", "number 19 not in evidence"),
    ("swapped name", "too risky, even for Putin", ("Aleksandr Baunov", "Yekaterina Schulmann"),
     "unsupported", "name 'Yekaterina' not in evidence"),
    ("swapped name back", "Moscow-based political scientist", ("Yekaterina Schulmann", "Aleksandr Baunov"),
     "unsupported", "name 'Aleksandr' not in evidence"),
    ("negation dropped", "did not give any evidence", ("did not give any evidence", "gave evidence"),
     "unsupported", "negation differs from evidence: 'did not give'"),
    ("negation added", "Russia has little to gain", ("Russia has little to gain", "Russia does not have much to gain"),
     "supported", None),
    ("negation added to a plain statement", "The leaders held two phone calls",
     ("The leaders held two phone calls", "The leaders never held two phone calls"),
     "unsupported", "negation differs from evidence: 'never held'"),
    ("number word changed", "The leaders held two phone calls", ("two phone calls", "three phone calls"),
     "unsupported", "number 'three' not in evidence"),
    ("abbreviated month", "On August 15", ("August 15", "Aug. 15"), "supported", None),
    ("quotation changed", "It would change the mind of the population",
     ("change the mind of the population", "change the heart of the nation"),
     "unsupported", "quotation not in evidence"),
]


@pytest.mark.parametrize(("fragment", "edit", "verdict", "reason"), [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_catches_edits_to_the_cited_sentence(
    index: SourceIndex, fragment: str, edit: tuple[str, str] | None, verdict: str, reason: str | None
) -> None:
    sentence_id, text = sentence_with(index, fragment)
    claim = text if edit is None else text.replace(*edit)
    assert claim != text or edit is None
    result = verify_claim(claim, [sentence_id], index)
    assert result.verdict == verdict, result
    if reason is None:
        assert result.reason is None
    else:
        assert result.reason is not None and reason in result.reason, result
    assert 0.0 <= result.score <= 1.0


@pytest.mark.parametrize("fragment", ["400km", "did not give any evidence", "too risky, even for Putin",
                                      "Kremlin’s official statements fell well short"])
def test_verbatim_sentence_scores_about_one(index: SourceIndex, fragment: str) -> None:
    sentence_id, text = sentence_with(index, fragment)
    result = verify_claim(text, [sentence_id], index)
    assert result == Verification("supported", result.score, [sentence_id], False, None)
    assert result.score >= 0.95


# (name, claim, cited fragment, expected verdict, expected evidence fragment or None, reason contains)
MISCITATIONS = [
    ("right claim, wrong sentence", "The investigative group cited eyewitness accounts in a follow-up Facebook post.",
     "Accessibility links", "supported", "follow-up Facebook post", None),
    ("paraphrase cited elsewhere", "Baunov said using force against a friendly population may be too risky for Putin.",
     "The leaders held two phone calls", "supported", "too risky, even for Putin", None),
    ("unsupported anywhere", "The moon is made of green cheese, scientists said.", "400km",
     "unsupported", None, "cited sentences are unrelated"),
]


@pytest.mark.parametrize(("claim", "cited", "verdict", "evidence", "reason"), [m[1:] for m in MISCITATIONS],
                         ids=[m[0] for m in MISCITATIONS])
def test_miscitation_is_recited_when_better_evidence_exists(
    index: SourceIndex, claim: str, cited: str, verdict: str, evidence: str | None, reason: str | None
) -> None:
    cited_id, _ = sentence_with(index, cited)
    result = verify_claim(claim, [cited_id], index)
    assert result.verdict == verdict, result
    if evidence is not None:
        evidence_id, _ = sentence_with(index, evidence)
        assert evidence_id in result.evidence_ids and cited_id not in result.evidence_ids
        assert result.recited is True
    else:
        assert result.evidence_ids == [cited_id] and result.recited is False
        assert result.reason is not None and reason in result.reason


@pytest.mark.parametrize("cited", [[], ["s999"], ["nonsense", "s999"]])
def test_unknown_or_missing_ids_are_ignored_and_evidence_is_searched(index: SourceIndex, cited: list[str]) -> None:
    sentence_id, text = sentence_with(index, "400km")
    result = verify_claim(text, cited, index)
    assert result.verdict == "supported" and sentence_id in result.evidence_ids and result.recited


def test_multi_sentence_evidence_is_combined(index: SourceIndex) -> None:
    first, _ = sentence_with(index, "The leaders held two phone calls")
    second, _ = sentence_with(index, "But it was the second conversation")
    # 'apparently' kept: dropping the source's hedge is a meaning change the verifier flags.
    claim = "The leaders held two phone calls; the second, on August 16, apparently coaxed Moscow into citing the CSTO."
    result = verify_claim(claim, [first, second], index)
    assert result.verdict == "supported", result
    assert result.evidence_ids == [first, second]


def test_threshold_override_changes_only_the_verdict(index: SourceIndex) -> None:
    sentence_id, _ = sentence_with(index, "too risky, even for Putin")
    claim = "Baunov said using force against a friendly population may be too risky for Putin."
    default = verify_claim(claim, [sentence_id], index)
    assert 0.0 < default.score < 1.0
    lenient = verify_claim(claim, [sentence_id], index, threshold=max(0.0, default.score - 0.01))
    strict = verify_claim(claim, [sentence_id], index, threshold=min(1.0, default.score + 0.01))
    assert lenient.score == default.score and lenient.verdict == "supported"
    assert strict.verdict == "unsupported"
    assert 0.0 < DEFAULT_THRESHOLD < 1.0


def test_empty_claim_and_empty_source_do_not_crash() -> None:
    empty = SourceIndex([])
    assert verify_claim("Something happened.", ["s1"], empty).verdict == "unsupported"
    assert verify_claim("", [], empty).verdict in ("supported", "unsupported")


def test_is_deterministic(index: SourceIndex) -> None:
    sentence_id, text = sentence_with(index, "did not give any evidence")
    claim = text.replace("did not give any evidence", "gave evidence")
    assert len({repr(verify_claim(claim, [sentence_id], index)) for _ in range(3)}) == 1


@settings(max_examples=60, deadline=None)
@given(claim=st.text(max_size=300), cited=st.lists(st.sampled_from(["s1", "s5", "s12", "x", ""]), max_size=4))
def test_any_text_gets_a_valid_verification(index: SourceIndex, claim: str, cited: list[str]) -> None:
    result = verify_claim(claim, cited, index)
    assert result.verdict in ("supported", "unsupported")
    assert 0.0 <= result.score <= 1.0
    assert all(e in index.by_id for e in result.evidence_ids)
    assert (result.reason is None) == (result.verdict == "supported")


@settings(max_examples=30, deadline=None)
@given(words=st.lists(st.sampled_from(["Putin", "400km", "not", "“quoted words here”", "Baunov", "the",
                                       "never", "August", "16", "convoys", "n't", "Ünïcödé", "\u2019s"]),
                      max_size=30))
def test_word_soup_never_crashes(index: SourceIndex, words: list[str]) -> None:
    result = verify_claim(" ".join(words), ["s12"], index)
    assert 0.0 <= result.score <= 1.0


def test_a_swapped_name_is_not_rescued_by_stitching_in_another_sentence(seed_text: str) -> None:
    """The cited sentence holds the claim's facts but another speaker's name: re-citing it together
    with a sentence that merely mentions the swapped-in name must not turn the swap into support."""
    import asyncio

    from service.core.config import Settings
    from service.core.schema import SummaryRequest
    from service.pipeline.ingest import ingest
    from service.pipeline.segment import segment as split

    document = asyncio.run(ingest(SummaryRequest(text=seed_text), Settings()))
    sentences = split(document.text)
    index = SourceIndex(sentences)
    quote = next(s for s in sentences if "Schulmann said of possible international discussions" in s.text)
    swapped = quote.text.replace("Schulmann", "Putin")  # Putin is named elsewhere in the article
    verdict = verify_claim(swapped, [quote.id], index)
    assert verdict.verdict == "unsupported" and not verdict.recited, verdict
    # The honest sentence still passes, and a genuinely wrong citation is still re-cited.
    assert verify_claim(quote.text, [quote.id], index).verdict == "supported"
    assert verify_claim(quote.text, [sentences[0].id], index).recited


def test_negation_elsewhere_in_multi_sentence_evidence_does_not_hide_a_flip(index: SourceIndex) -> None:
    # The second cited sentence holds a negation ("did not give"), which used to silence the check.
    calls, _ = sentence_with(index, "The leaders held two phone calls")
    evidence, _ = sentence_with(index, "did not give any evidence")
    claim = "The leaders never held two phone calls, and the group did not give any evidence of troop movements."
    result = verify_claim(claim, [calls, evidence], index)
    assert result.verdict == "unsupported", result
    assert result.reason == "negation differs from evidence: 'never held'"


def test_negation_moved_within_the_clause_still_agrees(index: SourceIndex) -> None:
    sentence_id, _ = sentence_with(index, "did not give any evidence")
    claim = "The investigative group gave no evidence of troop movements."
    assert verify_claim(claim, [sentence_id], index).reason != "negation differs from evidence: 'gave no'"
    claim = "The investigative group cited eyewitness accounts but gave no evidence of troop movements."
    assert verify_claim(claim, [sentence_id], index).verdict == "supported"


def test_a_double_negative_is_a_flip(index: SourceIndex) -> None:
    sentence_id, text = sentence_with(index, "are not fueled by anti-Russia sentiment")
    claim = "The protests in Belarus, unlike those in Ukraine, are not never fueled by anti-Russia sentiment."
    result = verify_claim(claim, [sentence_id], index)
    assert result.verdict == "unsupported", result
    assert result.reason is not None and result.reason.startswith("negation differs from evidence")


def test_a_flipped_citation_is_not_recited_to_looser_evidence() -> None:
    # The claim is the first sentence with its negation flipped. The second sentence shares enough
    # words to score well on its own, but lacks "refuted": moving the citation there hid the flip.
    source = SourceIndex(segment(
        "City council member Dana Reyes has refuted claims suggesting she will run for mayor next spring "
        "by insisting she is yet to make a decision on her future. "
        "City council member Dana Reyes is yet to make a final decision on her future despite constant "
        "talk of a mayoral run."
    ))
    first = source.sentences[0]
    claim = first.text.replace("has refuted", "has not refuted")
    result = verify_claim(claim, [first.id], source)
    assert result.verdict == "unsupported" and result.evidence_ids == [first.id] and not result.recited, result
    assert result.reason == "negation differs from evidence: 'has not refuted'"


@pytest.mark.parametrize(
    ("source", "claim"),
    [
        (  # "no longer" dropped (the simulator's negation fault, missed until "longer" was read as part of the cue)
            "Mr Rose said the officers told him that he must no longer hand out sausage rolls to voters.",
            "Mr Rose said the officers told him that he must hand out sausage rolls to voters.",
        ),
        (  # a "not" added before "without": a double negative where the source has one
            "Take a minute to think where City would have been without that century from Aguero.",
            "Take a minute to think where City would not have been without that century from Aguero.",
        ),
    ],
)
def test_negation_faults_the_benchmark_found(source: str, claim: str) -> None:
    index = SourceIndex(segment(source))
    assert verify_claim(source, ["s1"], index).verdict == "supported"
    result = verify_claim(claim, ["s1"], index)
    assert result.verdict == "unsupported", result
    assert result.reason is not None and result.reason.startswith("negation differs from evidence"), result


def test_a_swapped_speaker_after_a_quotation_is_caught() -> None:
    source = (
        "Hall was injured in training on Monday. 'The last thing you want to do when you have played for"
        " all those years is to pick up an injury in the gym,' Hall explained."
    )
    index = SourceIndex(segment(source))
    honest = verify_claim(segment(source)[1].text, ["s2"], index)
    assert honest.verdict == "supported", honest
    swapped = segment(source)[1].text.replace("Hall explained", "Irish explained")
    result = verify_claim(swapped, ["s2"], index)
    assert result.verdict == "unsupported", result


# A possessive token keeps its "'s" and lemmatizes to a dictionary word ("United's" → "unite",
# "Women's" → "woman"), so the bare name used to be missing from the very sentence it came from.
POSSESSIVE_SOURCES = [
    "Manchester United's manager said the club would appeal the decision on Monday.",
    "Robert Burns's poems were read aloud at the festival in Glasgow on Saturday.",
    "Critics said the SAT\u2019s new format was unfair to students in rural Ohio.",
    "The Women's World Cup final drew a record crowd in Sydney on Sunday evening.",
]


@pytest.mark.parametrize("text", POSSESSIVE_SOURCES)
def test_verbatim_sentence_with_a_possessive_name_is_supported(text: str) -> None:
    index = SourceIndex(segment(text + " The statement was issued by the press office."))
    cited = index.sentences[0]
    result = verify_claim(cited.text, [cited.id], index)
    assert result == Verification("supported", result.score, [cited.id], False, None)


@pytest.mark.parametrize(("text", "swap", "reason"), [
    (POSSESSIVE_SOURCES[0], ("United's", "City's"), "name 'City' not in evidence"),
    (POSSESSIVE_SOURCES[1], ("Burns's", "Scott's"), "name 'Scott' not in evidence"),
])
def test_a_swapped_possessive_name_is_still_caught(text: str, swap: tuple[str, str], reason: str) -> None:
    index = SourceIndex(segment(text))
    cited = index.sentences[0]
    result = verify_claim(cited.text.replace(*swap), [cited.id], index)
    assert result.verdict == "unsupported" and result.reason == reason, result


def test_a_name_written_in_full_cites_the_sentence_that_introduced_it(index: SourceIndex) -> None:
    # s28 says only "Baunov"; s21, seven sentences earlier, introduces "Aleksandr Baunov". The summarize
    # prompts ask for names in full, so a faithful sentence may name him in full while citing s28.
    cited, _ = sentence_with(index, "change the mind of the population")
    intro, _ = sentence_with(index, "Aleksandr Baunov")
    claim = "Aleksandr Baunov said a Russian attack would change the mind of the population."
    result = verify_claim(claim, [cited], index)
    assert result.verdict == "supported", result.reason
    assert result.evidence_ids == [cited, intro] and result.recited
    # Searching the whole source (no citation) finds the same completion.
    assert verify_claim(claim, [], index).verdict == "supported"


@pytest.mark.parametrize(
    "claim",
    [
        # a first name the source never writes beside "Baunov": another person's, not a completion
        "Yekaterina Baunov said a Russian attack would change the mind of the population.",
        # no capitals: nothing marks "aleksandr baunov" as one name, so no completion is tried
        "aleksandr baunov said a russian attack would change the mind of the population.",
    ],
)
def test_a_first_name_the_source_does_not_pair_with_the_surname_is_not_completed(
    index: SourceIndex, claim: str
) -> None:
    cited, _ = sentence_with(index, "change the mind of the population")
    result = verify_claim(claim, [cited], index)
    assert result.verdict == "unsupported"
    assert "not in evidence" in (result.reason or "")


def test_the_introducing_sentence_lends_the_name_and_nothing_else(index: SourceIndex) -> None:
    # s21 also says Baunov is "a senior fellow at the Carnegie Moscow Center"; cited alone, s28 does not,
    # and completing "Aleksandr" must not bring the rest of s21 along.
    cited, _ = sentence_with(index, "change the mind of the population")
    intro, _ = sentence_with(index, "Aleksandr Baunov")
    claim = ("Aleksandr Baunov, a senior fellow at the Carnegie Moscow Center, said a Russian attack would "
             "change the mind of the population.")
    alone = verify_claim(claim, [cited], index)
    assert alone.verdict == "unsupported" and "not in evidence" in (alone.reason or "")
    assert verify_claim(claim, [cited, intro], index).verdict == "supported"


FILMS = ("Veeram is a 2014 Indian Tamil action film directed by Siva and produced by Vijaya Productions. "
         "Veeram is a 2016 Indian epic historical drama film written and directed by Jayaraj.")


@pytest.mark.parametrize(
    "claim",
    [
        "The first is a 2014 Indian Tamil action film directed by Siva and produced by Vijaya Productions.",
        "The second is a 2016 Indian epic historical drama film written and directed by Jayaraj.",
        "The second one is a 2016 Indian epic historical drama film written and directed by Jayaraj.",
        "There are two films titled Veeram: one is a 2014 Indian Tamil action film directed by Siva, and the other "
        "is a 2016 Indian epic historical drama film directed by Jayaraj.",
    ],
)
def test_a_number_that_only_numbers_the_summarys_own_list_needs_no_number_in_evidence(claim: str) -> None:
    # "The first is …" after "Veeram is the title of two films.": the ordinal is a place in the summary's
    # own list, and "two films: one …, the other …" counts the pair it names; the source numbers neither.
    result = verify_claim(claim, [], SourceIndex(segment(FILMS)))
    assert result.verdict == "supported", result


@pytest.mark.parametrize(
    ("source", "claim", "reason"),
    [
        ("Smith was the first woman to lead the studio.", "Smith was the second woman to lead the studio.",
         "number 'second' not in evidence"),
        ("Vettel finished second in Monaco.", "Vettel finished third in Monaco.", "number 'third' not in evidence"),
        ("The studio made two films in 2016.", "The studio made three films in 2016.",
         "number 'three' not in evidence"),
        ("Veeram is a 2014 film by Siva. Veeram is a 2016 film by Jayaraj.",
         "There are three films titled Veeram: one is a 2014 film by Siva, and the other is a 2016 film by Jayaraj.",
         "number 'three' not in evidence"),
    ],
)
def test_a_changed_count_or_ranking_is_still_caught(source: str, claim: str, reason: str) -> None:
    result = verify_claim(claim, [], SourceIndex(segment(source)))
    assert result.verdict == "unsupported" and result.reason == reason, result


# A match report: the claims below are changed copies of its sentences, verified with no citation, so
# the verifier searches the whole source (as eval-verifier does, and as a failed citation does).
TENNIS = (
    "Rafael Nadal beat Nicolas Almagro 6-3 6-1 in Barcelona on Wednesday. "
    "The pair met in the 2013 final, when Nadal won his eighth title. "
    "Officials held a meeting about the schedule of the tournament. "
    "Last week the Majorca native lost to Novak Djokovic in the semi-finals in Monte Carlo. "
    "He could face David Ferrer in the quarter-finals."
)


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        # 'won' is in the 2013 sentence, in another place: it must not hide the flip, nor may that sentence
        # (which holds less of the claim) stand in for the one the claim was made from.
        ("Last week the Majorca native won to Novak Djokovic in the semi-finals in Monte Carlo.",
         "'won' contradicts 'lost' in evidence"),
        # 'meeting' is in the officials' sentence, in another place: the invented clause stays whole.
        ("Rafael Nadal beat Nicolas Almagro 6-3 6-1 in Barcelona on Wednesday after a secret meeting with "
         "foreign bankers.", "phrase 'secret meeting with foreign bankers' not in evidence"),
        ("He will face David Ferrer in the quarter-finals.", "evidence hedges 'face' ('could')"),
    ],
)
def test_an_uncited_fault_is_judged_against_the_sentence_it_was_made_from(claim: str, reason: str) -> None:
    result = verify_claim(claim, [], SourceIndex(segment(TENNIS)))
    assert result.verdict == "unsupported" and result.reason is not None and result.reason.startswith(reason), result


@pytest.mark.parametrize(
    "claim",
    [
        "Last week the Majorca native lost to Novak Djokovic in the semi-finals in Monte Carlo.",
        # fused from two sentences: the second half's words are in place in their own sentence
        "Nadal beat Almagro 6-3 6-1 in Barcelona on Wednesday, and officials held a meeting about the schedule.",
        "Nadal lost to Djokovic in Monte Carlo last week, and he won his eighth title in the 2013 final.",
    ],
)
def test_an_uncited_faithful_claim_is_still_supported(claim: str) -> None:
    result = verify_claim(claim, [], SourceIndex(segment(TENNIS)))
    assert result.verdict == "supported", result


def test_evades_only_guards_a_contradicting_anchor_that_holds_the_claim() -> None:
    from service.verifier.features import FEATURE_NAMES
    from service.verifier.verify import evades

    def values(**named: float) -> list[float]:
        out = [0.0] * len(FEATURE_NAMES)
        for name, value in named.items():
            out[FEATURE_NAMES.index(name)] = value
        return out

    flipped = values(recall=0.9, antonym_flip=1.0)
    assert evades(flipped, values(recall=0.6), 3.0)
    assert evades(flipped, values(recall=0.9), 3.0)
    assert not evades(flipped, values(recall=1.0), 3.0)  # holds more of the claim: still tried
    assert not evades(values(recall=0.4, antonym_flip=1.0), values(recall=0.3), 3.0)  # anchor unrelated
    assert not evades(values(recall=0.9, missing_numbers=1.0), values(recall=0.5), 3.0)  # an absence, not a contradiction
    invented = values(recall=0.8, unsupported_span=4.0, longest_run=0.6)
    assert evades(invented, values(recall=0.5), 3.0)
    assert not evades(invented, values(recall=0.5), 0.0)  # span veto off
    assert not evades(values(recall=0.8, unsupported_span=4.0, longest_run=0.2), values(recall=0.5), 3.0)



CRICKET = (
    "Alec Stewart has expressed his interest in becoming the new Director of England Cricket. "
    "Stewart, who played in a record 133 Tests for England, has not yet been approached by the ECB. "
    "Michael Vaughan, the former England captain, is the early favourite for the post."
)


def test_a_lower_case_name_swap_is_not_rescued_by_the_name_elsewhere_in_a_neighbour() -> None:
    # 'Vaughan' is in the third sentence, in another place: it must not stand in for 'Stewart'.
    result = verify_claim("alec vaughan has expressed his interest in becoming the new director of england cricket.",
                          [], SourceIndex(segment(CRICKET)))
    assert result.verdict == "unsupported" and result.reason == "name 'Vaughan' not in evidence", result


@pytest.mark.parametrize(
    "claim",
    [
        "alec stewart has expressed his interest in becoming the new director of england cricket, but michael "
        "vaughan is the early favourite for the post.",
        "alec stewart has expressed his interest in the post, for which michael vaughan is the early favourite.",
    ],
)
def test_a_lower_case_claim_fused_from_two_sentences_keeps_its_names(claim: str) -> None:
    result = verify_claim(claim, [], SourceIndex(segment(CRICKET)))
    assert result.verdict == "supported", result


MATCHDAY = (
    "Rafael Nadal beat Nicolas Almagro in the Barcelona Open on Wednesday. "
    "The final of the tournament will be played on Sunday, the organisers said."
)


def test_a_changed_weekday_is_not_rescued_by_the_day_elsewhere_in_a_neighbour() -> None:
    result = verify_claim("Rafael Nadal beat Nicolas Almagro in the Barcelona Open on Sunday.", [],
                          SourceIndex(segment(MATCHDAY)))
    assert result.verdict == "unsupported" and result.reason == "date 'Sunday' not in evidence", result


def test_a_claim_fused_from_two_sentences_keeps_its_weekdays() -> None:
    result = verify_claim("Rafael Nadal beat Nicolas Almagro in the Barcelona Open on Wednesday, and the final of the "
                          "tournament will be played on Sunday.", [], SourceIndex(segment(MATCHDAY)))
    assert result.verdict == "supported", result
