"""The embedded default summarizer: offline, deterministic extractive ranking with citations."""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import chain

from service.core.schema import Sentence
from service.pipeline.chunking import sentence_tokens

MODEL_NAME = "extractive-centroid-v4"  # v4: photo captions cut off the body, never quoted, no place in the lead
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
# A small English stop list: ranking only, so a missing word merely adds a little noise.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own said same says she
    should so some such than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will with would you your
    yours yourself told one two may might must us new like get got""".split()
)
MIN_WORDS = 8
MAX_WORDS = 60
MMR_LAMBDA = 0.6
ADJACENT = 2
ADJACENCY_PENALTY = 0.05
LEAD_BONUS = 1.2  # the first sentence's boost; it decays over the first few sentences
LEAD_DECAY = 4.0  # sentences (at least; an eighth of the article when that is more)
QUOTE_PENALTY = 0.8
TITLE_BONUS = 0.5
LENGTH_EXPONENT = 0.8  # centrality per content word^0.8: long sentences win little by length alone
# A sentence that opens on a reference back ("It reported…", "Her flashy pictures…", "But…") or is a
# bare quotation says little alone: ranked lower unless the sentence before it is in the summary.
DANGLING_PENALTY = 0.7
_DANGLING_OPENERS = frozenset(
    """it its he his him she her they their them this these those that such there here but and also however
    yet so meanwhile instead still then later earlier i we my our us me you your""".split()
)
_ATTRIBUTION = re.compile(
    r"\b(?:said|says|say|told|tells|added|adds|according|asked|wrote|writes|explained|stated|insisted|warned)\b",
    re.IGNORECASE,
)
# Photo captions run into the body on pasted news pages: "Scroll down for video Natalia Moon (pictured)…",
# "Done: Bobby Flay has filed…" (a one-word caption label). Never quoted as summary sentences.
_CAPTION = re.compile(r"^(?:(?i:scroll down for (?:video|more))\b|[A-Z][\w'’-]*:\s)")
_QUOTES = "\"“”'‘’"
# An end mark, then any closing quotes or brackets: "…he said.", "…'we won.'", "(He was freed.)". A
# closing mark alone ends no statement: "…the zoo (file photo)", "…a film dubbed ‘The Great Escape’"
# are photo captions pasted into the text.
_ENDED = re.compile(r"[.!?][\"'”’)\]]*$")


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stop words, no one-letter words)."""
    return [w for w in map(str.lower, _WORD.findall(text)) if len(w) > 1 and w not in STOPWORDS]


def _eligible(sentence: Sentence) -> bool:
    return _ineligibility(sentence) is None


def _ineligibility(sentence: Sentence) -> str | None:
    """Why the summarizer never picks `sentence` (None: it may)."""
    words = len(sentence.text.split())
    if words < MIN_WORDS:
        return f"shorter than {MIN_WORDS} words"
    if words > MAX_WORDS:
        return f"longer than {MAX_WORDS} words"
    if not _ENDED.search(sentence.text.rstrip()):
        return "without end punctuation"  # headings, captions and fragments carry no full statement
    if _CAPTION.match(sentence.text):
        return "a photo caption"
    return "a question" if sentence.text.endswith("?") else None


def why_none_usable(sentences: list[Sentence]) -> str:
    """Why no sentence can be picked, counted by reason: the message for a refusal."""
    reasons = Counter(_ineligibility(s) or "without content words" for s in sentences)
    found = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return (
        f"no sentence of the article can be quoted in a summary: of its {len(sentences)} sentence"
        f"{'s' if len(sentences) != 1 else ''}, {found}. The embedded summarizer quotes whole sentences of"
        f" {MIN_WORDS}-{MAX_WORDS} words that end in '.' or '!'; text without sentence punctuation (a"
        " transcript, a list, lower-case notes) cannot be summarized this way"
    )


def is_dangling(sentence: Sentence) -> bool:
    """True when `sentence` leans on the one before it: it opens on a pronoun, a demonstrative or a
    connective ("It reported…", "Her flashy pictures…", "But…"), it is a quotation nobody is said to
    say, or it ends a quotation opened in an earlier sentence ("…that's what the Kremlin wants.”")."""
    text = sentence.text.strip()
    if text[:1] in _QUOTES:  # a quotation stands alone when it says who speaks
        return _ATTRIBUTION.search(text) is None
    first = _WORD.match(text.lstrip("(["))
    if first is not None and first.group().lower() in _DANGLING_OPENERS:
        return True
    return text.count("\u201d") > text.count("\u201c") or (text.count('"') % 2 == 1 and text.rstrip(".!?")[-1:] == '"')


def _similarity(a: Counter[str], b: Counter[str], a_total: int, b_total: int) -> float:
    """Shared words (with counts) over the geometric mean of the sizes; totals are sum(bag.values())."""
    if len(b) < len(a):
        a, b = b, a
    shared = sum(min(count, b[word]) for word, count in a.items() if word in b)
    return shared / math.sqrt(max(1, a_total) * max(1, b_total))


def _statement_positions(sentences: list[Sentence]) -> list[int]:
    """Each sentence's place among the article's statements (0, 1, …): a caption or label with no end
    mark ("…the zoo (file photo)", "Scroll down for video") takes the place of the statement after it."""
    positions: list[int] = []
    count = 0
    for sentence in sentences:
        positions.append(count)
        count += bool(_ENDED.search(sentence.text.rstrip()))
    return positions


def rank_sentences(sentences: list[Sentence], title: str | None = None) -> list[tuple[float, Sentence]]:
    """Score every eligible sentence by centrality (shared content words), position and the headline."""
    return [(score, sentence) for score, sentence, _ in _ranked(sentences, title)]


def _ranked(sentences: list[Sentence], title: str | None) -> list[tuple[float, Sentence, Counter[str]]]:
    """rank_sentences, each with its bag of content words (so callers need not count them again)."""
    title_words = set(content_words(title or ""))
    words = [content_words(s.text) for s in sentences]
    bags = [Counter(w) for w in words]
    # Counted from flat iterables (C loops): a bag's keys once each, every word for the centroid.
    document_frequency = Counter(chain.from_iterable(bags))
    n = len(sentences)
    idf = {w: math.log(1 + n / df) for w, df in document_frequency.items()}
    centroid = Counter(chain.from_iterable(words))
    ranked: list[tuple[float, Sentence, Counter[str]]] = []
    for position, sentence, bag in zip(_statement_positions(sentences), sentences, bags, strict=True):
        if not _eligible(sentence) or not bag:
            continue
        weight = sum(idf[w] * min(centroid[w] - bag[w], 5) for w in bag) / (len(bag) ** LENGTH_EXPONENT * 10)
        lead_bonus = 1.0 + LEAD_BONUS * math.exp(-position / max(LEAD_DECAY, n / 8))
        # Direct quotations are colour, not the news: rank them a little lower.
        quote_penalty = QUOTE_PENALTY if sentence.text.lstrip()[:1] in "\"“'‘" else 1.0
        # The headline names the story: sentences that share its words carry it.
        title_bonus = 1.0 + TITLE_BONUS * len(title_words & set(bag)) / len(title_words) if title_words else 1.0
        ranked.append((weight * lead_bonus * quote_penalty * title_bonus, sentence, bag))
    ranked.sort(key=lambda item: (-item[0], item[1].start))
    return ranked


def summarize_extractive(sentences: list[Sentence], max_sentences: int, title: str | None = None) -> list[Sentence]:
    """The best sentences by maximal marginal relevance (rank minus overlap with those already chosen),
    returned in article order, so the summary covers the article rather than repeating its lead."""
    ranked = _ranked(sentences, title)
    # Places count statements: a caption between two sentences neither pushes the second down the
    # lead prior nor parts a dangling sentence from the one it leans on.
    position = dict(zip((s.id for s in sentences), _statement_positions(sentences), strict=True))
    if not ranked:
        return []
    top = ranked[0][0] or 1.0
    relevance = [score / top for score, _, _ in ranked]
    totals = [sum(bag.values()) for _, _, bag in ranked]
    places = [position[sentence.id] for _, sentence, _ in ranked]
    dangling = [is_dangling(sentence) for _, sentence, _ in ranked]
    chosen_places: set[int] = set()
    # Each candidate's largest similarity to a chosen sentence, and whether one is its neighbour:
    # updated once per pick (not recomputed against every chosen sentence on every round).
    most_similar = [0.0] * len(ranked)
    near_chosen = [False] * len(ranked)
    open_candidates = list(range(len(ranked)))
    chosen: list[Sentence] = []
    while open_candidates and len(chosen) < max_sentences:
        best, best_value = -1, -math.inf
        for i in open_candidates:
            redundancy = most_similar[i]
            # The sentence a dangling one leans on is in: it reads as its continuation, not a repeat.
            introduced = dangling[i] and places[i] - 1 in chosen_places
            # Neighbours of a chosen sentence usually continue its point: prefer spread.
            if near_chosen[i] and not introduced:
                redundancy += ADJACENCY_PENALTY
            if redundancy > 0.5 + ADJACENCY_PENALTY:
                continue  # a near-duplicate says nothing new
            weight = DANGLING_PENALTY if dangling[i] and not introduced else 1.0
            value = MMR_LAMBDA * relevance[i] * weight - (1 - MMR_LAMBDA) * redundancy
            if value > best_value:
                best, best_value = i, value
        if best < 0:
            break
        open_candidates.remove(best)
        chosen.append(ranked[best][1])
        chosen_places.add(places[best])
        picked_bag, picked_total, picked_place = ranked[best][2], totals[best], places[best]
        for i in open_candidates:
            similarity = _similarity(ranked[i][2], picked_bag, totals[i], picked_total)
            most_similar[i] = max(most_similar[i], similarity)
            near_chosen[i] = near_chosen[i] or abs(places[i] - picked_place) <= ADJACENT
    return sorted(chosen, key=lambda s: s.start)


def select_excerpt(
    sentences: list[Sentence], budget_tokens: int, title: str | None = None, lead: int = 3
) -> list[Sentence]:
    """The first `lead` sentences and then the highest-ranked ones, in article order, within `budget_tokens`.

    Costs are prompt-line tokens (chunking.sentence_tokens). Every sentence keeps its own id, so
    what is cited from the excerpt still points into the whole article.
    """
    costs = {s.id: sentence_tokens(s) for s in sentences}
    if sum(costs.values()) <= budget_tokens:
        return list(sentences)
    chosen: set[str] = set()
    used = 0
    for sentence in [*sentences[:lead], *(s for _, s in rank_sentences(sentences, title))]:
        cost = costs[sentence.id]
        if sentence.id not in chosen and used + cost <= budget_tokens:
            chosen.add(sentence.id)
            used += cost
    return [s for s in sentences if s.id in chosen]
