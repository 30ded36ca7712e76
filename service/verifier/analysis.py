"""One sentence → the units the verifier compares: lemmas, numbers, names, quotations, negations."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import simplemma

from service.core.memo import short_key_cache, sized_cache

__all__ = ["Analysis", "Lexicon", "analyze", "lemma", "lexicon"]


@dataclass(frozen=True)
class Lexicon:
    """The hand-written word lists shipped in service/data/lexicon.json."""

    stopwords: frozenset[str]
    negation_cues: frozenset[str]
    number_words: dict[str, float]
    antonyms: dict[str, frozenset[str]]
    months: frozenset[str]
    weak_negation_cues: frozenset[str]  # 'few', 'little': negate without a clear scope
    auxiliaries: frozenset[str]
    negation_scope_skips: frozenset[str]  # 'longer' in 'no longer hand': part of the cue, not its scope


@cache
def lexicon() -> Lexicon:
    """Load the shipped word lists once."""
    raw = json.loads((Path(__file__).parent / "data" / "lexicon.json").read_text(encoding="utf-8"))
    antonyms: dict[str, set[str]] = {}
    for left, right in raw["antonyms"]:
        antonyms.setdefault(left, set()).add(right)
        antonyms.setdefault(right, set()).add(left)
    return Lexicon(
        stopwords=frozenset(raw["stopwords"]),
        negation_cues=frozenset(raw["negation_cues"]),
        number_words={word: float(value) for word, value in raw["number_words"].items()},
        antonyms={word: frozenset(others) for word, others in antonyms.items()},
        months=frozenset(raw["months"]),
        weak_negation_cues=frozenset(raw["weak_negation_cues"]),
        auxiliaries=frozenset(raw["auxiliaries"]),
        negation_scope_skips=frozenset(raw["negation_scope_skips"]),
    )


# Curly quotes, dashes and FRANK's tokenised "did n't" / "` '" forms are normalised first so the
# same sentence written two ways produces the same units.
_APOSTROPHES = ("\u2018", "\u2019", "\u201a", "`", "\u2032")
_QUOTE_MARKS = ('"', "\u201c", "\u201d", "\u201e")
_NOT = re.compile(r"\s?n't\b", re.IGNORECASE)
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d{3})*(?:\.\d+)?")
_CAPITALISED = re.compile(r"(?<![^\W\d_])[^\W\d_a-z][^\W_]*(?:'[^\W\d_]+)?")
_MONTH_ABBREVIATIONS = {
    "jan": "january", "feb": "february", "mar": "march", "apr": "april", "jun": "june", "jul": "july",
    "aug": "august", "sep": "september", "sept": "september", "oct": "october", "nov": "november",
    "dec": "december",
}
_QUOTE = re.compile(r"[\"\u201c\u201d\u201e](.+?)[\"\u201c\u201d\u201e]")


# Tokenised model output (FRANK, QAGS) writes brackets and quotes the Penn Treebank way.
_TREEBANK = (("-LRB-", "("), ("-RRB-", ")"), ("-LSB-", "["), ("-RSB-", "]"), ("-LCB-", "{"), ("-RCB-", "}"),
             ("``", '"'), ("''", '"'))


def _normalise(text: str) -> str:
    for token, mark in _TREEBANK:
        if token in text:
            text = text.replace(token, mark)
    # str.replace per character beats str.translate with a dict by ~10x on short sentences.
    for mark in _APOSTROPHES:
        if mark in text:
            text = text.replace(mark, "'")
    return _NOT.sub(" not", text) if "n't" in text or "N'T" in text else text


# Caches keyed by user text are bounded by size (issue 19: sentence-keyed lru_caches grew to GBs).
# No English word is longer than 32 characters; longer "words" are computed, not kept.
_WORD_KEY_CHARS = 32
# Sentences' analyses held at once, counted in characters of sentence text (~90 bytes of Analysis
# each): 1M characters, about 90 MB, is over twice the longest article (CITESUM_MAX_ARTICLE_CHARS).
_ANALYSIS_CACHE_CHARS = 1_000_000


@short_key_cache(maxsize=200_000, max_key_chars=_WORD_KEY_CHARS)
def lemma(word: str) -> str:
    """Dictionary lemma of a lower-cased word (gave → give), cached: the verifier asks for the same words often."""
    if word.endswith("'s"):
        word = word[:-2]
    elif "'" in word:
        word = word.replace("'", "")
    base = simplemma.lemmatize(word, lang="en").lower()
    return base


def _number_value(text: str) -> str:
    """Canonical form of a numeral: '1,000' → '1000', '2.50' → '2.5', '07' → '7'."""
    cleaned = text.replace(",", "")
    if cleaned.count(".") > 1:  # "1.000.000" continental thousands
        cleaned = cleaned.replace(".", "")
    try:
        value = float(cleaned)
    except ValueError:
        return cleaned
    return f"{value:g}" if value < 1e15 else cleaned


@dataclass(frozen=True)
class Analysis:
    """The comparable units of one sentence."""

    text: str
    tokens: tuple[str, ...]  # lower-cased surface tokens
    lemmas: tuple[str, ...]  # one per token
    content: frozenset[str]  # lemmas that are not stopwords, numbers or punctuation
    bigrams: frozenset[tuple[str, str]]  # adjacent lemma pairs (stopwords included)
    numbers: frozenset[str]  # canonical numerals, number words included ("two" → "2")
    names: frozenset[str]  # lower-cased capitalised words not at the start: people, places, months
    quotes: tuple[tuple[str, ...], ...]  # token sequences inside double quotes (≥ 3 tokens)
    negated: frozenset[str]  # first content lemma after each negation cue
    negation_phrases: dict[str, str]  # negated lemma → the words that negate it, for reasons
    doubly_negated: frozenset[str]  # lemmas two cues negate ('nobody is not forcing'): a double negative
    hedged: frozenset[str]  # first content lemma after a weak cue ('little to gain', 'few analysts')
    lower_words: frozenset[str]  # words written in lower case here (so not proper nouns)
    lowercased: bool  # no capital letter at all (tokenised datasets, chat output): names need the source
    repeated: int  # content lemmas used more than once, a sign of a degenerate summary

    joined: str  # tokens joined by single spaces and padded, for contiguous-phrase search


def _names(text: str, stopwords: frozenset[str]) -> set[str]:
    names: set[str] = set()
    # A capitalised word counts as a name unless it opens the sentence or follows an opening quote
    # or colon; all-caps acronyms (CSTO, BBC) count anywhere.
    for match in _CAPITALISED.finditer(text):
        word = match.group()
        if not word[0].isupper():  # the pattern only rules out ASCII lower case
            continue
        lower = lemma_free(word)
        lower = _MONTH_ABBREVIATIONS.get(lower, lower)  # "Aug." and "August" are one name
        if lower in stopwords or len(lower) < 2:
            continue
        at = match.start() - 1
        while at >= 0 and text[at].isspace():
            at -= 1
        sentence_start = at < 0 or text[at] in ".!?:\"'\u201c\u2018(-\u2014\u2013"
        if sentence_start and text[at] in "\"'" and text[:at].rstrip().endswith(","):
            sentence_start = False  # a straight quote after a comma closes the quotation: "…," Hall said
        if word.isupper() and len(word) >= 2 or not sentence_start:
            names.add(lower)
    return names


@short_key_cache(maxsize=200_000, max_key_chars=_WORD_KEY_CHARS)
def is_dictionary_word(word: str) -> bool:
    """True when the lemmatizer's English dictionary knows the word (so it is probably not a name)."""
    return simplemma.is_known(word, lang="en")


def lemma_free(word: str) -> str:
    """Lower-case a word and drop a possessive ending, without lemmatizing (names stay names)."""
    lower = word.lower()
    return lower[:-2] if lower.endswith("'s") else lower


@sized_cache(max_size=_ANALYSIS_CACHE_CHARS, size=lambda analysis: len(analysis.text) + 1)
def analyze(text: str) -> Analysis:
    """Break one sentence into the units the verifier compares (pure, cached by text)."""
    lex = lexicon()
    normal = _normalise(text)
    raw_tokens = _TOKEN.findall(normal)
    tokens = tuple(t.lower() for t in raw_tokens)
    lemmas = tuple(lemma(t) if not t[0].isdigit() else _number_value(t) for t in tokens)
    content = frozenset(
        lm for tok, lm in zip(tokens, lemmas, strict=True)
        if not tok[0].isdigit() and lm not in lex.stopwords and tok not in lex.stopwords
        and tok not in lex.number_words and len(lm) > 1
    )
    numbers = {_number_value(m.group()) for m in _NUMBER.finditer(normal)}
    numbers |= {f"{lex.number_words[t]:g}" for t in tokens if t in lex.number_words}
    negated: set[str] = set()
    phrases: dict[str, str] = {}
    doubly: set[str] = set()
    hedged: set[str] = set()

    def is_cue(k: int) -> bool:
        return tokens[k] in lex.negation_cues or lemmas[k] in lex.negation_cues

    for i, tok in enumerate(tokens):
        weak = tok in lex.weak_negation_cues
        if not weak and not is_cue(i):
            continue
        # A cue negates the first content word within the next four tokens.
        end = min(i + 5, len(tokens))
        for j in range(i + 1, len(tokens)):
            if j == end:
                break
            if not weak and is_cue(j) and lemmas[j] not in content:
                # Cues stack ("would not have been without that century"): both negate what the
                # second one does, so that word is negated twice, not left to the second alone.
                end = min(j + 5, len(tokens))
            elif lemmas[j] in content and tokens[j] not in lex.negation_scope_skips:
                if weak:
                    hedged.add(lemmas[j])
                    break
                (doubly if lemmas[j] in negated else negated).add(lemmas[j])
                # "did not give" reads better than "not give"; "leaders never held" does not.
                first = i - 1 if i > 0 and tokens[i - 1] in lex.auxiliaries else i
                phrases.setdefault(lemmas[j], " ".join(tokens[first : j + 1]))
                break
    quotes = tuple(
        q for q in (tuple(t.lower() for t in _TOKEN.findall(m.group(1))) for m in _QUOTE.finditer(normal))
        if len(q) >= 3
    ) if any(mark in normal for mark in _QUOTE_MARKS) else ()
    return Analysis(
        text=text,
        tokens=tokens,
        lemmas=lemmas,
        content=content,
        bigrams=frozenset(zip(lemmas, lemmas[1:], strict=False)),
        numbers=frozenset(numbers),
        names=frozenset(_names(normal, lex.stopwords)),
        quotes=quotes,
        negated=frozenset(negated),
        negation_phrases=phrases,
        doubly_negated=frozenset(doubly),
        hedged=frozenset(hedged),
        joined=" " + " ".join(tokens) + " ",
        lower_words=frozenset(t for t in raw_tokens if t.islower()),
        lowercased=text == text.lower(),
        repeated=sum(1 for n in Counter(lm for lm in lemmas if lm in content).values() if n > 1),
    )
