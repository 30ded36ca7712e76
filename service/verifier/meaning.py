"""A claim × its evidence → the meaning changes word overlap cannot see: antonyms, dropped hedges,
flipped bounds, changed units, changed dates, and invented spans of content."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.verifier.analysis import Analysis, lemma_free, lexicon

__all__ = ["MeaningChecks", "aligned", "check_meaning", "found_in_place", "out_of_place"]

# Function words that carry a direction; they are stopwords, so the content-word antonym check skips them.
# ('over', 'under', 'above', 'below' are left to the bound check: 'under control' is no number.)
_DIRECTION_WORDS = frozenset({"before", "after", "more", "less", "fewer", "most", "least", "up", "down", "for",
                              "against", "many", "few", "much", "little"})
# Beside a number these set its bound ('12 or more', 'more than 300'): the bound check decides.
_QUANTITY_WORDS = frozenset({"more", "less", "fewer", "most", "least", "many", "few", "much", "little"})
# Negated, these say their antonym: 'not much' = 'little', 'not many' = 'few'.
_NEGATABLE_QUANTITIES = frozenset({"many", "few", "much", "little"})
_DATE_ABBREVIATIONS = {"jan": "january", "feb": "february", "aug": "august", "sept": "september",
                       "sep": "september", "oct": "october", "nov": "november", "dec": "december",
                       "mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday", "thu": "thursday",
                       "thur": "thursday", "thurs": "thursday", "fri": "friday", "sat": "saturday"}
# Runs of this many unsupported content words make the span check report a phrase.
SPAN_REPORTED = 3


@dataclass(frozen=True)
class MeaningChecks:
    """One problem text (or None) per check, and the longest run of unsupported content words."""

    antonym: str | None
    modality: str | None
    bound: str | None
    unit: str | None
    date: str | None
    span: int
    span_text: str | None

    def problems(self) -> list[str]:
        """The problems found, most specific first."""
        found = [self.bound, self.unit, self.date, self.antonym, self.modality]
        if self.span >= SPAN_REPORTED and self.span_text:
            found.append(self.span_text)
        return [p for p in found if p]


def aligned(claim: Analysis, evidence: Sequence[Analysis]) -> Analysis | None:
    """The evidence sentence that says the most of what the claim says: its anchor (ties: the first)."""
    return max(evidence, key=lambda s: len(claim.content & s.content), default=None)


def _context(analysis: Analysis, at: int, width: int = 4) -> set[str]:
    """Content lemmas within `width` words of position `at`, the word itself excluded."""
    lo, hi = max(0, at - width), min(len(analysis.lemmas), at + width + 1)
    return {analysis.lemmas[k] for k in range(lo, hi) if k != at and analysis.lemmas[k] in analysis.content}


def _forms(sentence: Analysis) -> set[str]:
    """Every form a sentence's words can be matched by: tokens, lemmas, possessive stems, verb bases."""
    forms = set(sentence.tokens) | set(sentence.lemmas)
    forms.update(t[:-2] for t in sentence.tokens if t.endswith("'s"))  # "United's" holds "united"
    verbs = lexicon().verb_forms
    forms.update(verbs[t] for t in verbs.keys() & set(sentence.tokens))
    return forms


@dataclass(frozen=True)
class _Evidence:
    """The evidence as the checks read it: the anchor (the sentence that says the most of what the
    claim says) and its forms, and the forms of each other sentence.

    A word of the claim counts as found when the anchor has it, or when another sentence has it in
    the same place (beside a word the claim has beside it). A word another sentence uses elsewhere
    does not lend support: "Almagro surprised Nadal … Nishikori lost last year's event" with 'won'
    changed to 'lost' must not pass because "the Majorca native lost to Djokovic" two sentences on.
    With one evidence sentence this is the plain membership test.
    """

    anchor: Analysis | None
    anchor_forms: set[str]
    others: tuple[tuple[Analysis, set[str]], ...]

    def has(self, claim: Analysis, at: int, forms: Sequence[str]) -> bool:
        """True when the claim word at `at` (matched by any of `forms`) is found, as above."""
        if any(f in self.anchor_forms for f in forms):
            return True
        holding = [sentence for sentence, sentence_forms in self.others if any(f in sentence_forms for f in forms)]
        return bool(holding) and found_in_place(claim, at, forms, holding)

    def all_forms(self) -> set[str]:
        """The forms of every evidence sentence together."""
        return self.anchor_forms.union(*(sentence_forms for _, sentence_forms in self.others))


def _found_beside(sentence: Analysis, forms: Sequence[str], around: set[str]) -> bool:
    """True when `sentence` uses one of `forms` next to (within the context width of) a word of `around`."""
    verbs = lexicon().verb_forms
    for j, (t, lm) in enumerate(zip(sentence.tokens, sentence.lemmas, strict=True)):
        if (t in forms or lm in forms or verbs.get(t) in forms or lemma_free(t) in forms) and around & _context(
                sentence, j):
            return True
    return False


def found_in_place(claim: Analysis, at: int, forms: Sequence[str], sentences: Sequence[Analysis]) -> bool:
    """True when one of `sentences` uses one of `forms` beside a word the claim has beside position `at`."""
    around = _context(claim, at)
    return bool(around) and any(_found_beside(s, forms, around) for s in sentences)


def out_of_place(claim: Analysis, words: Iterable[str], spelled: Sequence[str], others: Sequence[Analysis]) -> list[str]:
    """Of `words` (found where `spelled`, the claim's tokens as the caller normalises them, equals one), those
    that none of `others` uses, plain or possessive, beside a word the claim has beside it; in `words` order."""
    out = []
    for word in words:
        places = [i for i, t in enumerate(spelled) if t == word]
        if places and not any(found_in_place(claim, i, (word, word + "'s"), others) for i in places):
            out.append(word)
    return out


def _evidence(anchor: Analysis | None, evidence: Sequence[Analysis]) -> _Evidence:
    return _Evidence(
        anchor,
        _forms(anchor) if anchor is not None else set(),
        tuple((s, _forms(s)) for s in evidence if s is not anchor),
    )


def _antonym(claim: Analysis, evidence: Sequence[Analysis], ev_forms: set[str], found: _Evidence) -> str | None:
    """A claim word whose antonym the evidence uses in the same place (sharing a neighbouring word),
    where the evidence does not also use the word itself (in the anchor, or in the same place)."""
    lex = lexicon()
    antonyms, verbs, numbers = lex.antonyms, lex.verb_forms, lex.number_words
    claim_forms = set(claim.lemmas) | set(claim.tokens) | {verbs[t] for t in claim.tokens if t in verbs}
    for i, (token, lemma) in enumerate(zip(claim.tokens, claim.lemmas, strict=True)):
        if lemma not in claim.content and token not in _DIRECTION_WORDS:
            continue
        if token in _QUANTITY_WORDS and any(t[0].isdigit() or t in numbers for t in claim.tokens[max(0, i - 2) : i + 3]):
            continue  # '12 or more', 'more than 300': the bound check's business
        if token in _NEGATABLE_QUANTITIES and lex.negation_cues & set(claim.tokens[max(0, i - 3) : i]):
            continue  # 'does not have much to gain' says 'little to gain'; 'not many' says 'few'
        forms = (token, lemma, verbs.get(token, lemma))
        if found.has(claim, i, forms):
            continue
        others = {o for form in forms for o in antonyms.get(form, ()) if o in ev_forms and o not in claim_forms}
        if not others:
            continue
        around = _context(claim, i)
        for sentence in evidence:
            for j, (t, lm) in enumerate(zip(sentence.tokens, sentence.lemmas, strict=True)):
                if (t in others or lm in others or verbs.get(t) in others) and around & _context(sentence, j):
                    return f"'{token}' contradicts '{t}' in evidence"
    return None


def _modality(claim: Analysis, aligned: Analysis | None) -> str | None:
    """A word the evidence hedges ('could face', 'is expected to rise', 'allegedly stole', 'accused of
    smuggling') that the claim states with no hedge or keeper of its own before it ('faces', 'will rise')."""
    if aligned is None:
        return None
    for word in sorted(claim.bases & aligned.hedged_words.keys() - claim.hedge_scope):
        return f"evidence hedges '{word}' ('{aligned.hedged_words[word]}'), the claim states it as fact"
    # 'would' is also a past tense ('he would later win' = he won), so only 'would X' → 'will X' counts.
    for word in sorted(claim.future & aligned.conditional - claim.hedge_scope):
        return f"evidence hedges '{word}' ('would'), the claim states it as fact ('will')"
    return None


def _bound(claim: Analysis, evidence: Sequence[Analysis]) -> str | None:
    for q in claim.quantities:
        if q.bound not in ("lower", "upper"):
            continue
        same = [e for s in evidence for e in s.quantities if e.value == q.value]
        if same and not any(e.bound == q.bound for e in same):
            other = same[0]
            written = f"{other.qualifier} {other.text}".strip()
            return f"'{q.qualifier} {q.text}' but evidence says '{written}'"
    return None


def _unit(claim: Analysis, evidence: Sequence[Analysis]) -> str | None:
    for q in claim.quantities:
        if not (q.currency or q.scale or q.measure):
            continue
        same = [e for s in evidence for e in s.quantities if e.value == q.value]
        if same and all(q.conflicts(e) for e in same):
            return f"'{q.text}' but evidence says '{same[0].text}'"
    return None


def _date_words(tokens: Iterable[str]) -> list[str]:
    """Tokens with possessives dropped and month and weekday abbreviations spelled out."""
    return [_DATE_ABBREVIATIONS.get(t, t) for t in (lemma_free(t) for t in tokens)]


def _date(claim: Analysis, ev_tokens: set[str], found: _Evidence, near_copy: bool) -> str | None:
    """A month or weekday the evidence does not name; in a claim that copies its anchor sentence, also
    one the anchor lacks that no other evidence sentence names in the same place ('on Thursday' made
    from the anchor's 'on Wednesday' is not rescued by a neighbour's 'Thursday's match')."""
    if not claim.dates:
        return None
    missing = sorted(claim.dates - set(_date_words(ev_tokens)))
    if not missing and near_copy and found.anchor is not None:
        lacking = sorted(claim.dates - set(_date_words(found.anchor.tokens)))
        missing = out_of_place(claim, lacking, _date_words(claim.tokens), [sentence for sentence, _ in found.others])
    return f"date '{missing[0].title()}' not in evidence" if missing else None


def _span(claim: Analysis, found: _Evidence) -> tuple[int, str | None]:
    """Longest run of claim content words (stopwords between them allowed) that the evidence lacks
    (a word of a sentence other than the anchor counts only in the same place: `_Evidence`)."""
    best: list[int] = []
    run: list[int] = []
    for i, (token, lemma) in enumerate(zip(claim.tokens, claim.lemmas, strict=True)):
        if lemma not in claim.content:
            continue
        if found.has(claim, i, (token, lemma, lemma_free(token))):
            run = []
            continue
        run.append(i)
        if len(run) > len(best):
            best = list(run)
    if not best:
        return 0, None
    phrase = " ".join(claim.tokens[best[0] : best[-1] + 1])
    return len(best), f"phrase '{phrase}' not in evidence"


def check_meaning(
    claim: Analysis, evidence: Sequence[Analysis], anchor: Analysis | None = None, near_copy: bool = False
) -> MeaningChecks:
    """Run every meaning check of the claim against its evidence sentences. `anchor`: `aligned(claim,
    evidence)` when the caller has it already; `near_copy`: the claim copies the anchor, a verbatim run
    of at least features.COPIES of its tokens."""
    ev_tokens: set[str] = set()
    for sentence in evidence:
        ev_tokens.update(sentence.tokens)
    found = _evidence(aligned(claim, evidence) if anchor is None else anchor, evidence)
    span, span_text = _span(claim, found)
    return MeaningChecks(
        antonym=_antonym(claim, evidence, found.all_forms(), found),
        modality=_modality(claim, found.anchor),
        bound=_bound(claim, evidence),
        unit=_unit(claim, evidence),
        date=_date(claim, ev_tokens, found, near_copy),
        span=span,
        span_text=span_text,
    )
