"""A summary sentence × its cited source sentences → a verdict, a score, evidence and a reason (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from service.core.schema import Sentence
from service.verifier.analysis import Analysis, analyze, lemma_free, lexicon
from service.verifier.features import FEATURE_NAMES, Comparison, SourceVocabulary, compare
from service.verifier.nli import NliScorer, configured_scorer
from service.verifier.scoring import VerifierModel, adds_clause, load_model

__all__ = ["DEFAULT_THRESHOLD", "SourceIndex", "Verification", "evades", "verify_claim", "warm_up"]

DEFAULT_THRESHOLD: float = load_model().threshold
_RECALL = FEATURE_NAMES.index("recall")


def warm_up() -> None:
    """Load the lemmatizer's dictionary, the shipped weights and any NLI model now instead of in the first request."""
    load_model()
    configured_scorer()  # with CITESUM_NLI_MODEL_PATH set: load the NLI model now, and fail now if it is unusable
    analyze("The analysts said the trucks were filmed 400km from the border on August 16.")


class SourceIndex:
    """Every source sentence analysed once, plus a word → sentences index for finding evidence."""

    def __init__(self, sentences: list[Sentence]) -> None:
        self.sentences = sentences
        self.by_id: dict[str, Sentence] = {s.id: s for s in sentences}
        self.position: dict[str, int] = {s.id: i for i, s in enumerate(sentences)}
        self.analyses: list[Analysis] = [analyze(s.text) for s in sentences]
        self.vocabulary = SourceVocabulary.of(self.analyses)
        postings: dict[str, list[int]] = {}
        for i, a in enumerate(self.analyses):
            for word in a.content | a.names | a.numbers:
                postings.setdefault(word, []).append(i)
        self.postings = postings


@dataclass(frozen=True)
class Verification:
    """The verifier's answer for one claim."""

    verdict: Literal["supported", "unsupported"]
    score: float
    evidence_ids: list[str] = field(default_factory=list)
    recited: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class _Scored:
    positions: tuple[int, ...]
    score: float
    comparison: Comparison


def _score(claim: Analysis, positions: Sequence[int], index: SourceIndex, model: VerifierModel,
           lent: Sequence[Analysis] = ()) -> _Scored:
    """The claim against the sentences at `positions`, plus any `lent` words that are not a whole sentence."""
    comparison = compare(claim, [index.analyses[p] for p in positions] + list(lent), index.vocabulary)
    # Rounded before any comparison with the threshold, so the reported score never contradicts the verdict.
    return _Scored(tuple(positions), round(model.score(comparison.values), 4), comparison)


def _written_as_name(first: str, second: str) -> re.Pattern[str]:
    """`first second` with both words capitalised, as a name is written ('Bill Condon', 'Baunov's')."""
    return re.compile(rf"\b{re.escape(first[:1].upper() + first[1:])}\s+{re.escape(second[:1].upper() + second[1:])}\b")


def _with_introductions(claim: Analysis, scored: _Scored, index: SourceIndex, model: VerifierModel) -> _Scored | None:
    """`scored`'s evidence plus the sentences that name in full someone or something it names only in part.

    "Bill Condon said …" citing "Condon said …": the summarize prompts ask for names in full, and the
    given name comes from the sentence that introduced him. A claim word is completed this way when
    the evidence lacks it, it stands beside a word of the evidence, and the claim and a source
    sentence both write the two side by side, in that order, capitalised; the first such sentence is
    added. Month and weekday names complete nothing ("Monday's Championship game" is not a name). A
    claim with no capitals gives no sign of where a name begins, so it gets none. None when nothing
    was added.
    """
    if claim.lowercased:
        return None
    evidence_words: set[str] = set()
    for p in scored.positions:
        evidence_words.update(index.analyses[p].tokens)
        evidence_words.update(index.analyses[p].lemmas)
    stopwords = lexicon().stopwords
    words = [lemma_free(t) for t in claim.tokens]
    usable = [w.isalpha() and w not in stopwords and w not in claim.dates for w in words]
    added: list[int] = []
    full_names: list[str] = []
    for i, word in enumerate(words):
        if word in evidence_words or not usable[i]:
            continue
        for j in (i - 1, i + 1):
            if not 0 <= j < len(words) or words[j] not in evidence_words or not usable[j]:
                continue
            first, second = min(i, j), max(i, j)
            written = _written_as_name(words[first], words[second])
            in_claim = written.search(claim.text)
            if in_claim is None:
                continue
            pair = (claim.lemmas[first], claim.lemmas[second])
            where = sorted(set(index.postings.get(word, ())) | set(index.postings.get(claim.lemmas[i], ())))
            intro = next((p for p in where if pair in index.analyses[p].bigrams
                          and written.search(index.sentences[p].text)), None)
            if intro is not None and intro not in scored.positions:
                if intro not in added:
                    added.append(intro)
                full_names.append(in_claim.group())
                break
    if not added:
        return None
    # The introducing sentence lends the name and nothing else: it is cited, but the claim is compared
    # with the evidence plus the full name alone, so its other words cannot prop up the claim.
    completed = _score(claim, scored.positions, index, model, lent=[analyze(name) for name in full_names])
    return replace(completed, positions=(*scored.positions, *added))


def candidate_evidence(
    claim: Analysis, index: SourceIndex, *, primaries: int = 4, window: int = 3, max_sentences: int = 3
) -> list[tuple[int, ...]]:
    """Evidence sets worth scoring: each of the best-overlapping sentences alone, and with up to two
    neighbours (within `window` positions) that cover claim words it lacks."""
    wanted = claim.content | claim.names | claim.numbers
    if not wanted:
        return []
    overlap: dict[int, float] = {}
    for word in wanted:
        # Longer words are rarer and say more about which sentence is meant.
        for p in index.postings.get(word, ()):
            overlap[p] = overlap.get(p, 0.0) + min(len(word), 10)
    candidates_out: list[tuple[int, ...]] = []
    for primary in sorted(overlap, key=lambda p: (-overlap[p], p))[:primaries]:
        chosen = [primary]
        covered = set(index.analyses[primary].content | index.analyses[primary].names)
        covered |= index.analyses[primary].numbers
        candidates = [p for p in range(primary - window, primary + window + 1)
                      if p != primary and 0 <= p < len(index.analyses)]
        while len(chosen) < max_sentences:
            gains = {
                p: len((wanted - covered) & (index.analyses[p].content | index.analyses[p].names
                                              | index.analyses[p].numbers))
                for p in candidates if p not in chosen
            }
            if not gains or max(gains.values()) == 0:
                break
            add = min(gains, key=lambda p: (-gains[p], abs(p - primary)))
            chosen.append(add)
            covered |= index.analyses[add].content | index.analyses[add].names | index.analyses[add].numbers
        candidates_out.append((primary,))
        if len(chosen) > 1:
            candidates_out.append(tuple(sorted(chosen)))
    return candidates_out


def _search(claim: Analysis, index: SourceIndex, model: VerifierModel, limit: float) -> _Scored | None:
    """Best-scoring evidence set in the whole source, or None when no sentence shares a word; a set scoring
    below `limit` (the threshold the verdict uses) is also tried with the names it lacks completed."""
    best: _Scored | None = None
    anchor: _Scored | None = None
    for positions in candidate_evidence(claim, index, **model.search):
        scored = _score(claim, positions, index, model)
        if scored.score < limit:
            scored = _with_introductions(claim, scored, index, model) or scored
        if anchor is None:
            anchor = scored
        elif evades(anchor.comparison.values, scored.comparison.values, model.span_veto):
            continue
        if best is None or scored.score > best.score:
            best = scored
    return best


# Checks that say the anchor contradicts the claim rather than lacks part of it: no evidence that
# holds less of the claim can cure them (`evades`). Absences (a name, number or date the anchor lacks)
# are left out: a faithful claim may take them from a far sentence ("Storey, 37, aims for a 17th title").
# So is the negation check: guarded too, it cost FaithBench 0.004 for at most +0.001 on FRANK
# (docs/verifier.md has the measurements).
CONTRADICTIONS = ("antonym_flip", "modality_shift", "bound_flip", "unit_mismatch")
_CONTRADICTIONS = tuple(FEATURE_NAMES.index(n) for n in CONTRADICTIONS)


def evades(anchor: Sequence[float], found: Sequence[float], span_veto: float) -> bool:
    """True when evidence with feature values `found` would pass only by holding less of the claim than
    the anchor (values `anchor`) does, where the anchor contradicts the claim or shows it adds a clause.

    The search's first candidate is the sentence that holds the most of the claim: its anchor, the
    sentence the claim was most likely made from. When it contradicts the claim ("won" where it says
    "lost", a dropped hedge, a flipped bound, a changed unit) or the claim copies it and adds a run of
    `span_veto` words it lacks (an invented clause), and it holds at least RELATED_RECALL of the claim,
    evidence that holds no more of the claim than the anchor is no better support: it only lies too far
    from the claim for the check to fire. This is `_launders`' rule for a model's own citation, with the
    anchor as the citation. Evidence that holds more (the anchor plus the sentence a fused claim took its
    second half from) is still tried. `train-verifier` drops the same candidates (training.units_of).
    """
    if not (adds_clause(anchor, span_veto) or any(anchor[i] > 0 for i in _CONTRADICTIONS)):
        return False
    return anchor[_RECALL] >= RELATED_RECALL and found[_RECALL] <= anchor[_RECALL]


def _reason(scored: _Scored | None, claim: Analysis, index: SourceIndex, cited_unrelated: bool) -> str:
    if cited_unrelated:
        return "cited sentences are unrelated"
    if scored is None:
        return "no source sentence shares its words"
    if scored.comparison.problems:
        return scored.comparison.problems[0]
    evidence_words: set[str] = set()
    for p in scored.positions:
        evidence_words |= index.analyses[p].content
    missing = sorted(claim.content - evidence_words)
    if missing:
        shown = ", ".join(f"'{w}'" for w in missing[:3])
        return f"words {shown} not in evidence" if len(missing) > 1 else f"word {shown} not in evidence"
    return "wording departs too far from evidence"


# Share of the claim's content words the cited sentences must hold for them to count as "related".
RELATED_RECALL = 0.5


def _launders(cited: _Scored | None, found: _Scored) -> bool:
    """True when re-citing would hide a fault rather than fix a citation.

    Re-citation exists for citations that point at the wrong place. When the model's own citation is
    related (it holds most of the claim's words) but contradicts the claim on a hard fact (a name,
    number, negation or quotation), evidence that keeps the cited sentence and adds another one that
    happens to hold the changed fact is a swap stitched together, not support: "Baunov said X"
    rewritten as "Schulmann said X" must not pass because Schulmann is quoted elsewhere. Nor may
    evidence that holds less of the claim than the citation did.
    """
    if cited is None or not cited.comparison.problems:
        return False
    cited_recall = cited.comparison.values[_RECALL]
    if cited_recall < RELATED_RECALL:
        return False
    # Evidence that holds less of the claim than the faulty citation is no better place for it: the
    # claim is the cited sentence with a fact changed ("has refuted" → "has not refuted"), and a
    # looser match elsewhere that lacks the changed word would only hide the change.
    return bool(set(found.positions) & set(cited.positions)) or found.comparison.values[_RECALL] <= cited_recall


def verify_claim(
    claim: str, cited_ids: list[str], index: SourceIndex, *, threshold: float | None = None,
    nli: NliScorer | None | Literal["settings"] = "settings",
) -> Verification:
    """Check `claim` against the sentences it cites; if they do not support it, look for better ones.

    Unknown ids are ignored. When the cited sentences fail and better evidence exists anywhere in
    the source, the claim is re-cited to the best 1-3 sentences (`recited=True`). `nli`: an NLI
    scorer whose entailment probability may veto or lift the verdict (`_apply_nli`); "settings" uses
    the one `CITESUM_NLI_MODEL_PATH` names, if any; None turns it off.
    """
    model = load_model()
    limit = model.threshold if threshold is None else threshold
    verification, scored = _verify(claim, cited_ids, index, model, limit)
    scorer = configured_scorer() if nli == "settings" else nli
    if scorer is None:
        return verification
    vetoed = scored is not None and model.vetoed(scored.comparison.values)
    return _apply_nli(verification, claim, index, limit, scorer, vetoed)


def _apply_nli(
    verification: Verification, claim: str, index: SourceIndex, limit: float, scorer: NliScorer, vetoed: bool
) -> Verification:
    """The combiner's verdict changed by the NLI model's entailment probability p of the claim given its
    evidence (the best of the evidence sentences together and each alone):

    - supported and p < veto_below: unsupported, the score pushed below the threshold as a hard check
      does (score × threshold / 2, so the LLM judge's band never reaches it), the reason gives p;
    - unsupported, no hard check failed, score within lift_band of the threshold and p ≥ lift_above:
      supported at the threshold;
    - otherwise unchanged (the model is not even run for claims it could not change).
    """
    rule = scorer.rule
    supported = verification.verdict == "supported"
    unsure = not vetoed and limit - rule.lift_band <= verification.score < limit
    if not verification.evidence_ids or not (supported or unsure):
        return verification
    evidence = [index.by_id[i].text for i in verification.evidence_ids]
    windows = [" ".join(evidence)] + (evidence if len(evidence) > 1 else [])
    p = scorer.entailment(windows, claim)
    if supported and p < rule.veto_below:
        return replace(verification, verdict="unsupported", score=round(verification.score * limit * 0.5, 4),
                       reason=f"NLI: evidence does not entail the claim (p={p:.2f})")
    if not supported and p >= rule.lift_above:
        return replace(verification, verdict="supported", score=round(limit, 4), reason=None)
    return verification


def _verify(
    claim: str, cited_ids: list[str], index: SourceIndex, model: VerifierModel, limit: float
) -> tuple[Verification, _Scored | None]:
    """The combiner's verdict, and the evidence set it was decided on (None when nothing shares a word)."""
    analysed = analyze(claim)
    positions: list[int] = []
    for sentence_id in cited_ids:
        p = index.position.get(sentence_id)
        if p is not None and p not in positions:
            positions.append(p)
    cited = _score(analysed, positions, index, model) if positions else None
    if cited is not None and cited.score < limit:
        completed = _with_introductions(analysed, cited, index, model)
        if completed is not None and completed.score >= limit:
            ids = [index.sentences[p].id for p in completed.positions]
            return Verification("supported", completed.score, ids, recited=True), completed
    if cited is not None and cited.score >= limit:
        return Verification("supported", cited.score, [index.sentences[p].id for p in positions]), cited

    found = _search(analysed, index, model, limit)
    if found is not None and _launders(cited, found):
        found = None
    if found is not None and found.score >= limit:
        ids = [index.sentences[p].id for p in found.positions]
        return Verification("supported", found.score, ids, recited=ids != [
            index.sentences[p].id for p in positions]), found

    if cited is not None:
        # The claim's own words barely appear in what it cites: say so rather than nit-pick.
        unrelated = cited.comparison.values[_RECALL] < 0.34 and (found is None or found.positions != cited.positions)
        return Verification(
            "unsupported", cited.score, [index.sentences[p].id for p in positions],
            reason=_reason(cited, analysed, index, unrelated),
        ), cited
    ids = [index.sentences[p].id for p in found.positions] if found is not None else []
    return Verification(
        "unsupported", found.score if found is not None else 0.0, ids,
        recited=bool(ids), reason=_reason(found, analysed, index, False),
    ), found
