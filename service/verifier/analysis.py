"""One sentence → the units the verifier compares: lemmas, numbers, names, quotations, negations."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import simplemma

from service.core.memo import short_key_cache, sized_cache

__all__ = ["Analysis", "Lexicon", "Quantity", "analyze", "base_form", "lemma", "lexicon"]

# Negation cues that negate only the verb after 'to' ('failed to win'); see analyze.
_NEGATES_BEFORE_TO = frozenset({"fail", "failed", "fails", "refuse", "refused", "refuses", "unable"})


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
    weekdays: frozenset[str] = frozenset()
    hedge_cues: frozenset[str] = frozenset()  # 'could', 'allegedly': the statement after them is not a fact
    hedge_keepers: frozenset[str] = frozenset()  # words that keep the words after them hedged ('would', 'if')
    hedge_verbs: frozenset[str] = frozenset()  # hedge only before 'to': 'plans to', 'expected to', 'aims to'
    hedge_participles: frozenset[str] = frozenset()  # hedge only as 'is believed to', 'was said to'
    hedge_prepositional: dict[str, str] = field(default_factory=dict)  # 'accused' hedges before 'of'
    bounds: tuple[tuple[str, str], ...] = ()  # ('at least', 'lower'), longest phrase first
    currency_symbols: dict[str, str] = field(default_factory=dict)
    currency_words: dict[str, str] = field(default_factory=dict)
    scales: dict[str, str] = field(default_factory=dict)
    measures: dict[str, str] = field(default_factory=dict)
    date_prepositions: frozenset[str] = frozenset()
    verb_forms: dict[str, str] = field(default_factory=dict)  # irregular past forms the lemmatizer misses ('rose')
    titles: frozenset[str] = frozenset()  # 'mr', 'president': the next word is a name


@cache
def lexicon() -> Lexicon:
    """Load the shipped word lists once."""
    raw = json.loads((Path(__file__).parent / "data" / "lexicon.json").read_text(encoding="utf-8"))
    wordnet = json.loads((Path(__file__).parent / "data" / "antonyms_wordnet.json").read_text(encoding="utf-8"))
    antonyms: dict[str, set[str]] = {}
    # A quantity going up contradicts the same quantity going down, whichever verbs say so ('soared'/'plummeted').
    directions = [(up, down) for up in raw["directions"]["up"] for down in raw["directions"]["down"]]
    for left, right in [*raw["antonyms"], *directions, *wordnet["pairs"]]:
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
        weekdays=frozenset(raw["weekdays"]),
        hedge_cues=frozenset(raw["hedge_cues"]),
        hedge_keepers=frozenset(raw["hedge_keepers"]),
        hedge_verbs=frozenset(raw["hedge_verbs"]),
        hedge_participles=frozenset(raw["hedge_participles"]),
        hedge_prepositional=dict(raw["hedge_prepositional"]),
        bounds=tuple(sorted(((phrase, kind) for kind, phrases in raw["bounds"].items() for phrase in phrases),
                            key=lambda pair: -len(pair[0]))),
        currency_symbols=dict(raw["units"]["currency_symbols"]),
        currency_words=dict(raw["units"]["currency_words"]),
        scales=dict(raw["units"]["scale"]),
        measures=dict(raw["units"]["measure"]),
        date_prepositions=frozenset(raw["date_prepositions"]),
        verb_forms=dict(raw["verb_forms"]),
        titles=frozenset(raw["titles"]),
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
    if not text.isascii():  # one spelling per letter: "Angoulême" with a combining accent is NFC's é
        text = unicodedata.normalize("NFC", text)
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
    quantities: tuple[Quantity, ...]  # numerals with their currency, scale, unit and bound ('more than £5m')
    hedged_words: dict[str, str]  # base form a hedge governs → that hedge ('could face' → face: 'could')
    hedge_scope: frozenset[str]  # base forms within a few words after any hedge or keeper: not asserted here
    conditional: frozenset[str]  # base forms 'would' governs ('would create' → create)
    future: frozenset[str]  # base forms 'will' governs ('will create' → create)
    bases: frozenset[str]  # base forms of the content words ('broke' → break, 'closing' → close)
    dates: frozenset[str]  # month and weekday names (an ambiguous 'may'/'march' only in a date context)
    list_numbers: frozenset[str]  # values that only number the sentence's own list ('the second is …', 'two films: …')

    joined: str  # tokens joined by single spaces and padded, for contiguous-phrase search


@dataclass(frozen=True)
class Quantity:
    """A numeral and what is attached to it: '£330m' → value 330, currency gbp, scale million."""

    value: str
    currency: str
    scale: str
    measure: str
    bound: str  # 'lower' (at least, more than), 'upper' (at most, nearly), 'approx' (about) or ''
    qualifier: str  # the words that set the bound ('more than'), for reasons
    text: str  # as written, for reasons

    def conflicts(self, other: Quantity) -> bool:
        """True when the same value is attached to a different currency, scale or unit."""
        return any(a and b and a != b for a, b in ((self.currency, other.currency), (self.scale, other.scale),
                                                   (self.measure, other.measure)))


_QUANTITY = re.compile(
    r"(?P<cur>(?:us|a|c|hk)?[£$€¥])?\s?(?P<num>\d+(?:[.,]\d+)*)"
    r"(?:\s?(?P<unit>%|per ?cent\b|[^\W\d_]+(?:/h)?))?(?:\s(?P<unit2>[^\W\d_]+))?",
    re.IGNORECASE,
)


def _quantities(normal: str, lex: Lexicon) -> tuple[Quantity, ...]:
    found = []
    for match in _QUANTITY.finditer(normal):
        currency = lex.currency_symbols.get((match.group("cur") or "").lower(), "")
        scale = measure = ""
        end = match.end("num")
        for group in ("unit", "unit2"):
            word = match.group(group)
            if not word:
                break
            word = word.lower().replace(" ", "")
            if word == "percent":
                word = "%"
            if word in lex.scales and not scale and not measure:
                scale = lex.scales[word]
            elif word == "m" and not scale and not measure:
                # '£330m' is money; a bare '100m' may be metres: leave it open.
                scale = "million" if currency else ""
            elif word == "b" and currency and not scale:
                scale = "billion"
            elif word in lex.currency_words and not currency:
                currency = lex.currency_words[word]
            elif word in lex.measures and not measure:
                measure = lex.measures[word]
            else:
                break
            end = match.end(group)
        before = " " + normal[max(0, match.start() - 30) : match.start()].lower().rstrip()
        qualifier, bound = next(((phrase, kind) for phrase, kind in lex.bounds if before.endswith(" " + phrase)),
                                ("", ""))
        found.append(Quantity(_number_value(match.group("num")), currency, scale, measure, bound, qualifier,
                              normal[match.start() : end].strip()))
    if any(word in normal.lower() for word in _SPELLED_UNITS):
        found.extend(_spelled_quantities(normal, lex))
    return tuple(found)


# Spelled-out counts of a unit ('two weeks', 'three miles'); ordinals and 'once' are not counts.
_SPELLED_UNITS = ("second", "minute", "hour", "day", "week", "month", "year", "decade", "mile", "metre", "meter",
                  "kilomet", "feet", "foot", "tonne", "pound", "inch")
_SPELLED = re.compile(r"\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
                      r"hundred|thousand|dozen)[ -]([a-z]+)\b", re.IGNORECASE)


def _spelled_quantities(normal: str, lex: Lexicon) -> list[Quantity]:
    found = []
    for match in _SPELLED.finditer(normal):
        unit = match.group(2).lower()
        measure = lex.measures.get(unit) or lex.measures.get(unit + "s", "")
        if measure:
            found.append(Quantity(f"{lex.number_words[match.group(1).lower()]:g}", "", "", measure, "", "",
                                  match.group().strip()))
    return found


# A hedge or keeper covers this many words after it ('would almost certainly have been sold').
_HEDGE_SCOPE = 6
_BE = frozenset({"is", "are", "was", "were", "be", "been", "being", "s"})
# A keeper after one of these is a noun ('the suspect', 'a claim'), which hedges nothing.
_DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "his", "her", "their", "its", "our",
                          "my", "your", "one", "no", "any", "each", "every", "another", "such"})
# Words a hedge reaches past to the verb it governs ('could have been sold', 'accused of having stolen').
_HEDGE_SKIPS = frozenset({"to", "have", "has", "had", "be", "been", "being", "of", "having", "also", "still", "soon",
                          "even", "well", "yet", "eventually", "now", "not", "never"})


@short_key_cache(maxsize=200_000, max_key_chars=_WORD_KEY_CHARS)
def base_form(token: str) -> str:
    """The verb behind a word form the lemmatizer leaves alone ('broke' → break, 'closing' → close)."""
    lex = lexicon()
    if token in lex.verb_forms:
        return lex.verb_forms[token]
    base = lemma(token)
    if base == token and token.endswith("ing") and len(token) > 5:
        stem = token[:-3]
        for candidate in (stem + "e", stem, stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else ""):
            if candidate and is_dictionary_word(candidate) and lemma(candidate) == candidate:
                return candidate
    return base


def _hedges(tokens: tuple[str, ...], lemmas: tuple[str, ...], content: frozenset[str], names: set[str],
            lex: Lexicon) -> tuple[dict[str, str], frozenset[str], frozenset[str], frozenset[str]]:
    """(base form a hedge governs → the hedge, base forms any hedge or keeper covers, base forms 'would'
    governs, base forms 'will' governs).

    A hedge ('could', 'allegedly', 'is expected to', 'accused of') governs the first content word after
    it, like a negation: 'could face' → face. A word the sentence also uses unhedged is not hedged.
    Keepers ('would', 'if', 'wants') hedge nothing in evidence, but in a claim they, like hedges, keep
    the next few words from being read as asserted.
    """
    governed: dict[str, str] = {}
    modal: dict[str, set[str]] = {"would": set(), "will": set()}
    governed_at: set[int] = set()
    scope: set[str] = set()
    n = len(tokens)
    for i, tok in enumerate(tokens):
        if tok in ("may", "march") and (tok in names or _dated(tokens, i, lex)):
            continue  # the month, not the modal
        nxt = tokens[i + 1] if i + 1 < n else ""
        if tok in modal:
            word = _governed(tokens, lemmas, content, i, lex)
            if word is not None:
                modal[tok].add(base_form(tokens[word]))
        prev = tokens[i - 1] if i else ""
        cue = (tok in lex.hedge_cues
               or (tok in lex.hedge_verbs and nxt == "to")
               or (tok in lex.hedge_participles and nxt == "to" and prev in _BE)
               or lex.hedge_prepositional.get(tok) == nxt)
        keeper = (tok in lex.hedge_keepers and prev not in _DETERMINERS) or (tok == "said" and nxt == "to"
                                                                             and prev in _BE)
        if not cue and not keeper:
            continue
        for j in range(i + 1, min(i + 1 + _HEDGE_SCOPE, n)):
            if lemmas[j] in content:
                scope.add(base_form(tokens[j]))
        if not cue:
            continue
        word = _governed(tokens, lemmas, content, i, lex)
        if word is not None:
            governed.setdefault(base_form(tokens[word]), tok)
            governed_at.add(word)
    if governed:
        plain = {base_form(tokens[k]) for k in range(n) if k not in governed_at and lemmas[k] in content}
        governed = {word: cue for word, cue in governed.items() if word not in plain}
    return governed, frozenset(scope), frozenset(modal["would"]), frozenset(modal["will"])


def _governed(tokens: tuple[str, ...], lemmas: tuple[str, ...], content: frozenset[str], i: int,
              lex: Lexicon) -> int | None:
    """Position of the content word a hedge or modal at i governs: the first within five words."""
    for j in range(i + 1, min(i + 6, len(tokens))):
        if lemmas[j] in content and tokens[j] not in _HEDGE_SKIPS and tokens[j] not in lex.hedge_cues:
            return j
    return None


def _dated(tokens: tuple[str, ...], i: int, lex: Lexicon) -> bool:
    """True when the word at i sits where a month would: beside a numeral or after 'in', 'since' …"""
    near = [tokens[k] for k in (i - 1, i + 1) if 0 <= k < len(tokens)]
    return any(t[0].isdigit() for t in near) or (i > 0 and tokens[i - 1] in lex.date_prepositions)


def _dates(tokens: tuple[str, ...], names: set[str], lex: Lexicon) -> frozenset[str]:
    found = set()
    for i, tok in enumerate(tokens):
        tok = tok[:-2] if tok.endswith("'s") else tok  # "Thursday's vote"
        word = _MONTH_ABBREVIATIONS.get(tok, tok) if tok in ("sept", "aug", "dec", "jan", "feb", "oct", "nov") else tok
        if word in ("may", "march"):
            if word in names or _dated(tokens, i, lex):
                found.add(word)
        elif word in lex.months or word in lex.weekdays:
            found.add(word)
    return frozenset(found)


# 'The first is …', 'The second, Francis I, was …': an ordinal standing for a noun at the start of a sentence
# picks an item of a list the summary has just made ('two films'); its value is a place in that list, not a
# fact. Once a sentence opens so, later clauses may go on ('…, and the second is …'). 'was the first to',
# 'finished second', 'the second-largest', 'the second time' and a mid-sentence ', the second was X' are
# not this form and stay numbers.
_LIST_ORDINAL = re.compile(
    r"(?P<at>^|[.;:]\s*|[,(]\s*|\b(?:and|but|while|whereas)\s+)the\s+(?P<word>first|second|third|fourth|fifth|"
    r"sixth|seventh|eighth|ninth|tenth)(?:\s+one)?(?=\s*,|\s+(?:is|was|are|were)\b)",
    re.IGNORECASE,
)
# 'two films: A and B', 'two actresses, A and B', 'two films: one is …, and the other …', 'A and B are two …':
# the count sums up the pair the sentence itself names, and the evidence is asked for the pair, not for
# the word 'two'. The pair is spelled out after a colon or comma that closes the count's noun phrase (at
# most 8 words, brackets and quotations left out): one 'and' with no comma before it, one ', and' after
# items that are not all short ('A, B, and C' is three), or 'one … the other'.
_PAIR_COUNT = re.compile(r"\b(two|2)\b", re.IGNORECASE)
_ASIDE = re.compile(r"\([^()]*\)|\"[^\"]*\"")
_PAIR_HEAD = re.compile(r"(?:\s[^\s,:;.]+){1,8}?\s?[:,]\s(?P<items>.*)$")
_PAIR_SUBJECT = re.compile(r"(?:^|[.;:]\s)(?P<items>[^,;:.]*?)\s(?:are|were)\s$", re.IGNORECASE)
_APPOSITIVE = re.compile(r"(?:a|an|the|who|which|whose|now|aged|born|\d+)\b", re.IGNORECASE)
_NEXT_SENTENCE = re.compile(r"(?<=[a-z0-9])\.\s(?=[A-Z])")


def _is_pair(items: str) -> bool:
    if re.match(r"one\b", items, re.IGNORECASE) and re.search(r"\b(?:the other|another)\b", items, re.IGNORECASE):
        return True
    if items.count(", and ") == 1:
        # 'A, B, and C' is three; 'Anderson, a 27-year-old defender, and Keating' is two: a part after the
        # first that opens like an aside (an article, a number, 'who') or runs long is said of the first.
        later = items.split(", and ")[0].split(", ")[1:]
        return not any(len(part.split()) <= 3 and not _APPOSITIVE.match(part) for part in later)
    return ", and " not in items and items.count(" and ") == 1 and "," not in items.split(" and ")[0]


def _pair_counts(normal: str) -> Counter[str]:
    """The 'two' words (or '2's) that count a pair the sentence names itself."""
    text = re.sub(r"\s+", " ", re.sub(r"\s+(?=[,:;.])", "", _ASIDE.sub("", normal))).strip()
    found: Counter[str] = Counter()
    for match in _PAIR_COUNT.finditer(text):
        subject = _PAIR_SUBJECT.search(text[: match.start()])
        head = _PAIR_HEAD.match(text[match.end() :])
        if (subject and _is_pair(subject.group("items"))) or (
            head and _is_pair(_NEXT_SENTENCE.split(head.group("items"))[0])
        ):
            found[match.group(1).lower()] += 1
    return found


def _list_numbers(normal: str, tokens: tuple[str, ...], lex: Lexicon) -> frozenset[str]:
    """Values that only number the sentence's own list: unless the sentence also gives them another way."""
    matches = list(_LIST_ORDINAL.finditer(normal.strip()))
    listed: Counter[str] = Counter()
    if any(m.group("at") == "" or m.group("at")[0] in ".;:" for m in matches):
        listed.update(m.group("word").lower() for m in matches)
    listed.update(_pair_counts(normal))
    if not listed:
        return frozenset()

    def value(token: str) -> str:
        return _number_value(token) if token[0].isdigit() else f"{lex.number_words[token]:g}"

    # A value is said another way when a token gives it more often than the list forms use it:
    # a numeral, another number word, or the same word again ('The second, X, was the second king').
    said = {value(t) for t, n in Counter(tokens).items()
            if (t[0].isdigit() or t in lex.number_words) and n > listed.get(t, 0)}
    return frozenset({value(word) for word in listed} - said)


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
        if not (tokens[k] in lex.negation_cues or lemmas[k] in lex.negation_cues):
            return False
        # 'failed to win', 'refused to pay' negate; 'failed in its bid', 'refused the offer' say nothing
        # of the next word. 'Out of nowhere' is an idiom, not a negation.
        if tokens[k] in _NEGATES_BEFORE_TO or lemmas[k] in _NEGATES_BEFORE_TO:
            return k + 1 < len(tokens) and tokens[k + 1] == "to"
        return not (tokens[k] == "nowhere" and k > 0 and tokens[k - 1] in ("of", "from"))

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
    names = _names(normal, lex.stopwords)
    hedged_words, hedge_scope, conditional, future = _hedges(tokens, lemmas, content, names, lex)
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
        names=frozenset(names),
        quotes=quotes,
        negated=frozenset(negated),
        negation_phrases=phrases,
        doubly_negated=frozenset(doubly),
        hedged=frozenset(hedged),
        joined=" " + " ".join(tokens) + " ",
        lower_words=frozenset(t for t in raw_tokens if t.islower()),
        lowercased=text == text.lower(),
        repeated=sum(1 for n in Counter(lm for lm in lemmas if lm in content).values() if n > 1),
        quantities=_quantities(normal, lex) if numbers else (),
        hedged_words=hedged_words,
        hedge_scope=hedge_scope,
        conditional=conditional,
        future=future,
        bases=frozenset(base_form(t) for t, lm in zip(tokens, lemmas, strict=True) if lm in content),
        dates=_dates(tokens, names, lex),
        list_numbers=_list_numbers(normal, tokens, lex) if numbers else frozenset(),
    )
