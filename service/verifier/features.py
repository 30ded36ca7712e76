"""A claim × its evidence sentences → named feature values and the concrete problems found."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.verifier.analysis import Analysis, analyze, is_dictionary_word, lemma_free, lexicon
from service.verifier.meaning import aligned, check_meaning, out_of_place

__all__ = ["FEATURE_NAMES", "FEATURE_SIGNS", "OVERLAP_TERM", "REGIME_ONLY", "Comparison", "SourceVocabulary", "compare"]

# Order matters: the shipped weights in service/data/verifier.json are listed by these names.
FEATURE_NAMES: tuple[str, ...] = (
    "recall",  # share of the claim's content lemmas found in the evidence
    "weighted_recall",  # the same, longer (rarer) words weigh more
    "bigram_recall",  # share of the claim's lemma bigrams found in the evidence
    "best_sentence_recall",  # recall against the single best evidence sentence
    "longest_run",  # longest run of claim tokens found verbatim in one evidence sentence / claim length
    "novel_in_source",  # share of content lemmas that occur nowhere in the whole source
    "missing_numbers",  # numbers of the claim absent from the evidence (capped at 2)
    "missing_names",  # capitalised names absent from the evidence (capped at 3)
    "missing_quote",  # a quotation not found verbatim in the evidence
    "negation_flip",  # the claim drops or adds a negation of an evidence word
    "antonym_flip",  # the claim uses the antonym of an evidence word it does not contain
    "log_length",  # log(1 + number of content lemmas)
    "evidence_sentences",  # how many sentences the evidence spans (1-3)
    "log_missing_content",  # log(1 + content lemmas absent from the evidence)
    "names_not_in_source",  # names that occur nowhere in the source (capped at 3)
    "numbers_not_in_source",  # numbers that occur nowhere in the source (capped at 2)
    "repeated_words",  # content lemmas the claim repeats (capped at 2): degenerate output
    "modality_shift",  # the evidence hedges what the claim asserts ('could face' → 'will face')
    "bound_flip",  # a number's bound changed ('at least 5' → 'at most 5', 'nearly 500' → 'more than 500')
    "unit_mismatch",  # a number's currency, scale or unit changed (£330m → £330bn, miles → km)
    "date_mismatch",  # a month or weekday the evidence does not name
    "unsupported_span",  # longest run of claim content words the evidence lacks (capped at 4)
    "novel_bigrams",  # share of the claim's word pairs found nowhere in the source: how abstractive it is
    "clause_overlap",  # word overlap with the source, clause by clause, names aside
)

# Features that only pick the scoring regime (extractive or abstractive claim) and carry no weight:
# how abstractive a claim is says which calibration applies, not whether the claim is supported.
REGIME_ONLY: frozenset[str] = frozenset({"novel_bigrams"})

# Plain word overlap with the source (the best share of the claim's content words in any one source
# sentence) is added to each regression's log-odds with one weight chosen by the training objective,
# not fitted inside the regressions: fitted there, on every FRANK row, it gets no weight in the
# extractive regression (the XSum rows, where overlap says little, outweigh it), yet it orders
# CNN/DM-style and LLM-written sentences better than the regression alone (docs/verifier.md).
OVERLAP_TERM = "clause_overlap"

# The direction each weight may take when trained (+1: more of it never lowers the score; -1: never
# raises it; 0: free). Keeps the learned model monotone in what a reader would expect.
FEATURE_SIGNS: tuple[int, ...] = tuple(
    {
        "recall": 1,
        "weighted_recall": 1,
        "bigram_recall": 1,
        "best_sentence_recall": 1,
        "longest_run": 1,
        "novel_in_source": -1,
        "missing_numbers": -1,
        "missing_names": -1,
        "missing_quote": -1,
        "negation_flip": -1,
        "antonym_flip": -1,
        "log_length": 0,
        "evidence_sentences": 1,
        "log_missing_content": -1,
        "names_not_in_source": -1,
        "numbers_not_in_source": -1,
        "repeated_words": -1,
        "modality_shift": -1,
        "bound_flip": -1,
        "unit_mismatch": -1,
        "date_mismatch": -1,
        "unsupported_span": -1,
        "novel_bigrams": -1,
        "clause_overlap": 1,
    }[name]
    for name in FEATURE_NAMES
)


@dataclass(frozen=True)
class SourceVocabulary:
    """Everything the whole source says, for telling 'elsewhere in the article' from 'made up'."""

    content: frozenset[str]
    words: frozenset[str]  # surface tokens and lemmas
    numbers: frozenset[str]
    proper: frozenset[str]  # words only ever capitalised mid-sentence here: names
    bigrams: frozenset[tuple[str, str]] = frozenset()  # adjacent lemma pairs of every sentence
    sentence_content: tuple[frozenset[str], ...] = ()  # each sentence's content lemmas
    # clause_overlap by claim text: the value is the claim's, not its evidence's, so it is worked out
    # against every source sentence once per claim, not once per evidence set the search scores.
    clause_overlaps: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, analyses: Sequence[Analysis]) -> SourceVocabulary:
        """Collect the vocabulary of analysed source sentences."""
        content: set[str] = set()
        words: set[str] = set()
        numbers: set[str] = set()
        capitalised: set[str] = set()
        lower: set[str] = set()
        bigrams: set[tuple[str, str]] = set()
        for a in analyses:
            bigrams |= a.bigrams
            capitalised |= a.names
            lower |= a.lower_words
            content |= a.content
            words.update(a.tokens)
            words.update(a.lemmas)
            words.update(lemma_free(t) for t in a.tokens if t.endswith("'s"))
            numbers |= a.numbers
        return cls(frozenset(content), frozenset(words), frozenset(numbers), frozenset(capitalised - lower),
                   frozenset(bigrams), tuple(frozenset(a.content) for a in analyses))


@dataclass(frozen=True)
class Comparison:
    """Feature values (in FEATURE_NAMES order) and human-readable problems, most serious first."""

    values: tuple[float, ...]
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, float]:
        """Feature name → value, for debugging and docs."""
        return dict(zip(FEATURE_NAMES, self.values, strict=True))


def _weight(word: str) -> float:
    # Longer words are rarer and carry the content ("Lukashenka" vs "man"); cheap IDF stand-in.
    return min(len(word), 10) / 10.0


def _longest_run(claim: Analysis, evidence: Sequence[Analysis]) -> float:
    tokens = claim.tokens
    if not tokens:
        return 0.0
    best = 0
    for sentence in evidence:
        joined = sentence.joined
        # Grow a window greedily: cheap and exact enough for "is this copied" questions.
        start = 0
        while start < len(tokens) and len(tokens) - start > best:
            end = start + best + 1
            if (" " + " ".join(tokens[start:end]) + " ") not in joined:
                start += 1
                continue
            while end < len(tokens) and (" " + " ".join(tokens[start : end + 1]) + " ") in joined:
                end += 1
            best = max(best, end - start)
            start += 1
    return best / len(tokens)


def _contains_phrase(evidence: Sequence[Analysis], phrase: tuple[str, ...]) -> bool:
    needle = " " + " ".join(phrase) + " "
    return any(needle in sentence.joined for sentence in evidence)


def _as_written(claim: Analysis, value: str) -> str:
    # "number 'first' not in evidence" reads better than "number 1 not in evidence".
    words = lexicon().number_words
    for token, canonical in zip(claim.tokens, claim.lemmas, strict=True):
        if token in words and f"{words[token]:g}" == value:
            return f"'{token}'"
        if canonical == value:
            return value
    return value


def _mentions(words: frozenset[str] | set[str], name: str) -> bool:
    """True when `words` (tokens and lemmas) hold `name`, bare or possessive.

    A possessive token keeps its "'s" ("united's") and its lemma is a dictionary word's ("unite",
    "woman", "burn"), so the bare name "united" is in neither: look for the possessive form too.
    """
    return name in words or name + "'s" in words


# Two capitalised words in a row ('Manchester United', 'Theresa May'), possessive allowed.
_NAME_PAIR = re.compile(r"\b([A-Z][^\W\d_]+)\s+([A-Z][^\W\d_]+(?:'s)?)\b")


_STOP = lexicon().stopwords


def swapped_name_parts(claim: Analysis, evidence: Sequence[Analysis], ev_words: set[str]) -> list[str]:
    """In a lower-case claim, the second word of a two-word name of the evidence, swapped: 'manchester city'
    where the evidence says 'Manchester United' (neither word alone need look like a name)."""
    heads: dict[str, set[str]] = {}
    for sentence in evidence:
        if not sentence.lowercased:
            for first, second in _NAME_PAIR.findall(sentence.text):
                if first.lower() not in _STOP:
                    heads.setdefault(first.lower(), set()).add(lemma_free(second))
    if not heads:
        return []
    lowered = [lemma_free(t) for t in claim.tokens]
    return [t for prev, t in zip(lowered, lowered[1:], strict=False)
            if prev in heads and t not in heads[prev] and t.isalpha() and t not in _STOP and t not in ev_words
            and not t.endswith(("ed", "ing"))]


# A claim 'copies' a sentence when at least this share of its tokens is one verbatim run of it (the span
# veto's test too: scoring.SPAN_VETO_COPIED).
COPIES = 0.35


def names_out_of_place(claim: Analysis, anchor: Analysis, others: Sequence[Analysis], names: Iterable[str]) -> set[str]:
    """For a claim that copies its anchor (the evidence sentence holding the most of the claim), the names
    the anchor lacks that the `others` evidence sentences use only elsewhere, beside none of the words the
    claim has beside them: 'alec vaughan has expressed his interest …', made from 'Alec Stewart has
    expressed …', must not pass because a neighbour says 'Michael Vaughan … is the early favourite'.

    Only for claims with no capitals (compare): in cased LLM summaries a name is often taken from a
    far sentence without its neighbours ('Lucca, Italy', a subject the anchor calls 'he'), and applied
    to them this rejected 10 faithful FaithBench sentences and no unfaithful one.
    """
    anchor_words = set(anchor.tokens) | set(anchor.lemmas)
    lacking = [name for name in names if not _mentions(anchor_words, name)]
    return set(out_of_place(claim, lacking, [lemma_free(t) for t in claim.tokens], others))


def claim_names(claim: Analysis, source: SourceVocabulary) -> frozenset[str]:
    """Names in the claim, capitalised or not.

    A capitalised word mid-sentence is a name. A word written in lower case is one too when the source
    only ever capitalises it ('john smith' for 'John Smith'); in a claim with no capitals at all, so
    is a word the dictionary does not know. A possessive counts as its name ("United's" → "united").
    """
    stopwords = lexicon().stopwords
    lowered = (lemma_free(t) for t in claim.tokens)
    return claim.names | frozenset(
        t for t in lowered
        if t.isalpha() and len(t) > 2 and t not in stopwords
        and (t in source.proper or (claim.lowercased and not is_dictionary_word(t)))
    )


def title_names(claim: Analysis) -> frozenset[str]:
    """In a claim with no capitals, words after a title: names whatever the dictionary says ('mrs white').

    They veto when the evidence lacks them (missing_names) but are not counted as names new to the
    source (names_not_in_source), a soft feature fitted on FRANK's lower-cased claims.
    """
    if not claim.lowercased:
        return frozenset()
    stopwords, titles = lexicon().stopwords, lexicon().titles
    lowered = [lemma_free(t) for t in claim.tokens]
    return frozenset(t for prev, t in zip(lowered, lowered[1:], strict=False)
                     if prev in titles and t.isalpha() and len(t) > 1 and t not in stopwords)


def _near(lemmas: Sequence[str], one: str, other: str, span: int = 4) -> bool:
    """True when `one` and `other` occur within `span` words of each other in `lemmas`."""
    at = [i for i, lm in enumerate(lemmas) if lm == one]
    return any(0 < abs(j - i) <= span for j, lm in enumerate(lemmas) if lm == other for i in at)


def _negation_flip(claim: Analysis, evidence: Sequence[Analysis]) -> str | None:
    """The negating phrase, when the claim and the evidence disagree on whether a word is negated.

    Each word is judged against the evidence sentence that says the most of what the claim says
    among those holding it, so a negation elsewhere in multi-sentence evidence, or elsewhere in the
    same sentence, can neither hide a flip nor invent one. One side negating a word the other states
    plainly is a flip, unless the negation merely moved to a word beside it ("did not give any
    evidence" ≈ "gave no evidence") or the other side hedges it ("little to gain" ≈ "does not have
    much to gain"). A word negated twice on one side and once on the other is a flip too ("nobody is
    not forcing" ≠ "nobody is forcing").
    """
    content = claim.content
    words = set(claim.negated)
    for sentence in evidence:
        words |= sentence.negated & content
    for word in sorted(words):
        holding = [s for s in evidence if word in s.content]
        if not holding:
            continue
        aligned = max(holding, key=lambda s: len(content & s.content))
        if word in claim.negated and word not in aligned.negated:
            moved = any(_near(claim.lemmas, word, x) for x in aligned.negated & (content - claim.negated))
            if not moved and word not in aligned.hedged:
                return claim.negation_phrases.get(word, word)
        elif word in aligned.negated and word not in claim.negated:
            moved = any(_near(aligned.lemmas, word, y) for y in claim.negated & (aligned.content - aligned.negated))
            if not moved and word not in claim.hedged:
                return aligned.negation_phrases.get(word, word)
        elif (word in claim.doubly_negated) != (word in aligned.doubly_negated):
            side = claim if word in claim.doubly_negated else aligned
            return side.negation_phrases.get(word, word)
    return None


# Where a sentence fused from several is joined: a semicolon, colon or dash, or a comma before a word
# that opens a clause.
_CLAUSE_BREAK = re.compile(
    r"[;:\u2014\u2013]|\s--\s|,\s+(?=(?:and|but|while|which|who|whereas|after|before|as|with|where|when)\b)",
    re.IGNORECASE,
)


def clause_overlap(claim: Analysis, source: SourceVocabulary) -> float:
    """Plain word overlap, clause by clause: for each clause of the claim, the best share of its content
    words (names aside) found in any one source sentence; the lowest over the clauses.

    A faithful sentence fused from two ("X held two calls; the second …") keeps each clause inside one
    source sentence, where a spliced one ("Defoe scored twice for Sunderland against Sunderland") mixes
    words of several inside one clause. Names are left to the name check (a full name may be completed
    from the sentence that introduced it).
    """
    known = source.clause_overlaps.get(claim.text)
    if known is not None:
        return known
    skip = claim.names | source.proper
    clauses = [set(analyze(part).content) - skip for part in _CLAUSE_BREAK.split(claim.text)]
    scored = [c for c in clauses if len(c) >= 2] or [c for c in clauses if c]
    value = (
        min(max((len(c & s) / len(c) for s in source.sentence_content), default=0.0) for c in scored)
        if scored else 1.0
    )
    source.clause_overlaps[claim.text] = value
    return value


def compare(claim: Analysis, evidence: Sequence[Analysis], source: SourceVocabulary) -> Comparison:
    """Compare a claim with its evidence sentences, and with the `source` vocabulary as a whole."""
    ev_content: set[str] = set()
    ev_tokens: set[str] = set()
    ev_bigrams: set[tuple[str, str]] = set()
    ev_numbers: set[str] = set()
    ev_lemmas: set[str] = set()
    for sentence in evidence:
        ev_content |= sentence.content
        ev_tokens.update(sentence.tokens)
        ev_lemmas.update(sentence.lemmas)
        ev_bigrams |= sentence.bigrams
        ev_numbers |= sentence.numbers

    content = claim.content
    n = len(content)
    found = content & ev_content
    recall = len(found) / n if n else 1.0
    # Summed in sorted order: set order varies between processes and float sums must not.
    total_weight = sum(_weight(w) for w in sorted(content))
    weighted = sum(_weight(w) for w in sorted(found)) / total_weight if total_weight else 1.0
    bigram_recall = len(claim.bigrams & ev_bigrams) / len(claim.bigrams) if claim.bigrams else recall
    best_sentence = max((len(content & s.content) / n for s in evidence), default=0.0) if n else 1.0
    novel = len(content - source.content) / n if n else 0.0
    novel_bigrams = len(claim.bigrams - source.bigrams) / len(claim.bigrams) if claim.bigrams else 0.0

    problems: list[str] = []
    # A number that only numbers the claim's own list ('The second is …', 'two films: A and B') states no fact.
    numbers = claim.numbers - claim.list_numbers
    missing_numbers = sorted(numbers - ev_numbers)
    for number in missing_numbers[:1]:
        problems.append(f"number {_as_written(claim, number)} not in evidence")
    names = claim_names(claim, source)
    ev_words = ev_tokens | ev_lemmas
    absent = {name for name in names if not _mentions(ev_words, name)}
    if claim.lowercased:
        absent.update(name for name in title_names(claim) if not _mentions(ev_words, name))
        absent.update(swapped_name_parts(claim, evidence, ev_words))
    anchor = aligned(claim, evidence)
    longest_run = _longest_run(claim, evidence)
    near_copy = (anchor is not None and len(evidence) > 1 and longest_run >= COPIES
                 and _longest_run(claim, [anchor]) >= COPIES)
    if claim.lowercased and near_copy and anchor is not None:
        absent.update(names_out_of_place(claim, anchor, [s for s in evidence if s is not anchor], names - absent))
    # Report names in the order the claim uses them ("Yekaterina Schulmann" → Yekaterina first).
    missing_names = (
        list(dict.fromkeys(lemma_free(t) for t in claim.tokens if lemma_free(t) in absent)) if absent else []
    )
    for name in missing_names[:1]:
        problems.append(f"name '{name.title()}' not in evidence")
    missing_quote = any(not _contains_phrase(evidence, quote) for quote in claim.quotes)
    if missing_quote:
        problems.append("quotation not in evidence")

    flip = _negation_flip(claim, evidence)
    if flip is not None:
        problems.append(f"negation differs from evidence: '{flip}'")
    meaning = check_meaning(claim, evidence, anchor, near_copy)
    problems.extend(meaning.problems())

    values = (
        recall,
        weighted,
        bigram_recall,
        best_sentence,
        longest_run,
        novel,
        float(min(len(missing_numbers), 2)),
        float(min(len(missing_names), 3)),
        float(missing_quote),
        float(flip is not None),
        float(meaning.antonym is not None),
        math.log1p(n),
        float(len(evidence)),
        math.log1p(n - len(found)),
        float(min(sum(1 for name in names if not _mentions(source.words, name)), 3)),
        float(min(len(numbers - source.numbers), 2)),
        float(min(claim.repeated, 2)),
        float(meaning.modality is not None),
        float(meaning.bound is not None),
        float(meaning.unit is not None),
        float(meaning.date is not None),
        float(min(meaning.span, 4)),
        novel_bigrams,
        clause_overlap(claim, source),
    )
    return Comparison(values=values, problems=tuple(problems))
