"""A simulated OpenAI-compatible chat server on loopback, with set latency and injected faults.

It answers citesum's structured prompt (`[s12] sentence` lines, "Write at most N sentences") with
JSON summary sentences that quote the most central lines and cite them, and a LangChain-style
plain prompt with a plain-text summary. Seeded content faults (changed number, swapped name,
negation, wrong citation) and transport faults (429, 500, 503, hang, truncated body, non-JSON
content, connection reset) are recorded in an in-memory call log, so tests and `bench/` can
check what the client did with them. It imports nothing from `service/` on purpose: it stands
in for a model server the service knows nothing about.

In-process (tests):

    with SimServer(SimConfig(base_ms=0, fault_rate=0.2, seed=1)) as sim:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim")
        ...
        sim.calls()        # the call log, list of dicts
        sim.configure(transport_rates={"500": 1.0})
        sim.reset()

Latency model: `base_ms + ms_per_1k × prompt_tokens / 1000` before the first token (prefill),
then `ms_per_output_token` per completion token (decoding). `LATENCY_PROFILES` names the two the
benchmark uses: "decode" (300 ms + 20 ms/1k + 10 ms/token, the default since issue 15) and
"prefill-only" (400 ms + 20 ms/1k, nothing for decoding: the model behind earlier numbers).

`"stream": true` answers as OpenAI does: Server-Sent Events of `chat.completion.chunk` deltas
(about one token each, sent on the decoding schedule), `usage` in a last chunk when
`stream_options.include_usage` is set, then `data: [DONE]`. Mid-stream faults (`stream_cut`,
`stream_malformed`, `stream_stall`) strike at `stream_fault_at` of the content; a stream the client
abandons is logged with `"stream_completed": False`.

Command line: `python -m service.testing.sim_llm --port 8100 --profile decode`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service.testing.processes import stop_process

__all__ = [
    "CONTENT_FAULTS",
    "LATENCY_PROFILES",
    "STREAM_FAULTS",
    "TRANSPORT_FAULTS",
    "SimConfig",
    "SimProcess",
    "SimServer",
    "SimState",
    "create_app",
    "estimate_tokens",
    "inject_fault",
    "parse_prompt",
    "write_plain_summary",
    "write_summary",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
CONTENT_FAULTS = ("number", "name", "negation", "citation")
TRANSPORT_FAULTS = (
    "429_retry_after",  # 429 with a Retry-After header
    "429",  # 429 without one
    "500",
    "503",
    "hang",  # sleeps `hang_s` before answering (longer than the client's timeout)
    "truncated_body",  # HTTP body is the first half of the JSON envelope
    "non_json",  # a valid envelope whose message content is prose, not JSON
    "truncated_content",  # a valid envelope whose content JSON is cut off (finish_reason "length")
    "reset",  # the TCP connection is reset (SO_LINGER 0) without any response
    # Mid-stream faults: only a `"stream": true` request is struck (a plain one is answered cleanly).
    "stream_cut",  # the connection is aborted partway through the stream
    "stream_malformed",  # one chunk partway through is not JSON
    "stream_stall",  # the stream stops partway for `hang_s` (longer than the client's read timeout)
)
STREAM_FAULTS = ("stream_cut", "stream_malformed", "stream_stall")
# Named latency models, so earlier benchmark numbers stay comparable (SimConfig.updated(profile)).
LATENCY_PROFILES: dict[str, dict[str, float]] = {
    "decode": {"base_ms": 300.0, "ms_per_1k": 20.0, "ms_per_output_token": 10.0},
    "prefill-only": {"base_ms": 400.0, "ms_per_1k": 20.0, "ms_per_output_token": 0.0},
    "instant": {"base_ms": 0.0, "ms_per_1k": 0.0, "ms_per_output_token": 0.0},
}

_SOURCE_LINE = re.compile(r"^\[(s\d+(?:,\s*s\d+)*)\]\s+(.+)$", re.M)
_MAX_SENTENCES = re.compile(r"Write at most (\d+) sentences?\b", re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d[\d,.]*")
_STOP = frozenset(
    "a an the and or but of to in on at for by with from as is are was were be been being it its this that"
    " these those he she they we you i his her their our your not no has have had will would can could"
    " said says also than then there which who whom what when where while after before about into over"
    " more most some any all one two up out so if do did does".split()
)


def estimate_tokens(text: str) -> int:
    """Tokens as the service counts them offline: chars/4, rounded up."""
    return math.ceil(len(text) / 4)


# ---------------------------------------------------------------------------------------------
# Configuration and call log
# ---------------------------------------------------------------------------------------------


@dataclass
class SimConfig:
    """How the simulated model behaves; every field can be changed at run time."""

    base_ms: float = 0.0
    ms_per_1k: float = 0.0  # prefill: extra time to first token per 1,000 prompt tokens
    ms_per_output_token: float = 0.0  # decoding: time per completion token
    stream_fault_at: float = 0.5  # where in the content a mid-stream fault strikes (0..1)
    seed: int = 0
    fault_rate: float = 0.0  # chance that one output sentence carries a content fault
    fault_kinds: tuple[str, ...] = CONTENT_FAULTS
    transport_rates: dict[str, float] = field(default_factory=dict)  # kind -> chance per call
    hang_s: float = 30.0
    retry_after_s: float = 1.0
    model: str = "sim-llm"

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """A copy with `changes` applied; unknown keys and unknown fault kinds are refused."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        new = dataclasses.replace(self, **changes)
        new.fault_kinds = tuple(new.fault_kinds)
        new.transport_rates = {str(k): float(v) for k, v in dict(new.transport_rates).items()}
        if bad := set(new.fault_kinds) - set(CONTENT_FAULTS):
            raise ValueError(f"unknown content faults: {sorted(bad)}")
        if bad := set(new.transport_rates) - set(TRANSPORT_FAULTS):
            raise ValueError(f"unknown transport faults: {sorted(bad)}")
        if sum(new.transport_rates.values()) > 1.0 + 1e-9:
            raise ValueError("transport fault rates add up to more than 1")
        return new

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fault_kinds"] = list(self.fault_kinds)
        return data


class SimState:
    """The live config plus the call log (shared by the app and an in-process owner)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.calls: list[dict[str, Any]] = []
        self.arrivals = 0  # requests received since the last reset (a call is logged when it ends)
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls = []
            self.arrivals = 0
            self._seen = Counter()

    def next_attempt(self, key: str) -> int:
        """How many times this exact prompt was asked before (so a retry draws afresh)."""
        with self._lock:
            self.arrivals += 1
            n = self._seen[key]
            self._seen[key] += 1
            return n

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["id"] = len(self.calls) + 1
            self.calls.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.calls)


# ---------------------------------------------------------------------------------------------
# Reading the prompt and writing an answer (pure functions)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceLine:
    """One `[s3, s7] text` line of the prompt."""

    ids: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class ParsedPrompt:
    lines: tuple[SourceLine, ...]
    max_sentences: int | None
    user_text: str
    cited_line: bool = False  # the system prompt asks for plain `sentence [s3, s4]`, not JSON

    @property
    def structured(self) -> bool:
        return bool(self.lines)


def parse_prompt(messages: list[dict[str, Any]]) -> ParsedPrompt:
    """The source lines and sentence limit in the last user message, and the answer shape asked for."""
    user_text = ""
    cited_line = False
    for message in messages:
        if message.get("role") == "user":
            user_text = _content_text(message.get("content"))
        elif message.get("role") == "system":
            cited_line = CITED_LINE_MARK in _content_text(message.get("content"))
    lines = tuple(
        SourceLine(tuple(i.strip() for i in m.group(1).split(",")), m.group(2).strip())
        for m in _SOURCE_LINE.finditer(user_text)
    )
    limit = _MAX_SENTENCES.search(user_text)
    return ParsedPrompt(lines, int(limit.group(1)) if limit else None, user_text, cited_line)


CITED_LINE_MARK = "then the ids of the source lines it rests on"  # prompts/summarize_part.md
JUDGE_MARK = "Judge each numbered sentence"
_JUDGED = re.compile(r"^Sentence (\d+): (.*?)\nEvidence:\n(.*?)(?=^Sentence \d+: |^Judge each)", re.S | re.M)


def judge_reply(user_text: str) -> dict[str, Any]:
    """The judge prompt's answer: a sentence is supported when its content words are all in its evidence."""
    verdicts = []
    for match in _JUDGED.finditer(user_text):
        missing = _content_words(match.group(2)) - _content_words(match.group(3))
        verdicts.append({"index": int(match.group(1)), "supported": not missing,
                         "reason": "all in evidence" if not missing else f"not in evidence: {sorted(missing)[0]}"})
    return {"verdicts": verdicts}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> list[str]:
    return [w.lower().strip("'’") for w in _WORD.findall(text)]


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if w not in _STOP and len(w) > 1}


def _looks_like_noise(text: str, duplicates: set[str]) -> bool:
    """Page furniture a careful model skips: short lines, captions printed twice."""
    return (
        len(_words(text)) < 8
        or text in duplicates
        or "(file photo)" in text.lower()
        or text.rstrip()[-1:] not in set(".!?\"”'’)")  # headlines, bylines, player controls
    )


def rank_central(texts: list[str]) -> list[int]:
    """Indexes of `texts`, most central first: shared content words, with a lead bonus (news)."""
    bags = [_content_words(t) for t in texts]
    df = Counter(w for bag in bags for w in bag)
    counts = Counter(texts)
    duplicates = {t for t, n in counts.items() if n > 1}
    scores = []
    for index, (text, bag) in enumerate(zip(texts, bags, strict=True)):
        shared = sum(df[w] - 1 for w in bag)
        score = shared / (len(bag) + 8) * (1.0 + 1.0 / (1.0 + index / 4))
        if _looks_like_noise(text, duplicates):
            score -= 1_000.0
        scores.append(score)
    return sorted(range(len(texts)), key=lambda i: (-scores[i], i))


_LEADING_CONNECTIVE = re.compile(
    r"^(?:However|But|And|Meanwhile|Still|Moreover|Furthermore|In addition|Nevertheless|Yet|Also),?\s+",
)


def paraphrase(text: str) -> str:
    """A light paraphrase that keeps every fact: drop a leading connective, normalise spacing."""
    stripped = _LEADING_CONNECTIVE.sub("", text.strip())
    if stripped != text.strip() and stripped:
        stripped = stripped[0].upper() + stripped[1:]
    stripped = re.sub(r"\s+", " ", stripped)
    if stripped and stripped[-1] not in ".!?\"”'’":
        stripped += "."
    return stripped


def write_summary(lines: list[SourceLine], max_sentences: int | None) -> list[dict[str, Any]]:
    """Summary sentences: the most central lines, in source order, lightly paraphrased and cited.

    Two picked lines that are adjacent and short are merged into one sentence citing both.
    """
    if not lines:
        return []
    limit = max(1, max_sentences or 5)
    order = rank_central([line.text for line in lines])
    picked = sorted(order[:limit])
    sentences: list[dict[str, Any]] = []
    skip = False
    for position, index in enumerate(picked):
        if skip:
            skip = False
            continue
        line = lines[index]
        text = paraphrase(line.text)
        ids = list(line.ids)
        following = picked[position + 1] if position + 1 < len(picked) else None
        if (
            following == index + 1
            and len(_words(line.text)) + len(_words(lines[following].text)) < 34
            and text.endswith(".")
        ):
            text = text[:-1] + "; " + _lower_first(paraphrase(lines[following].text))
            ids += [i for i in lines[following].ids if i not in ids]
            skip = True
        sentences.append({"text": text, "citations": ids[:3]})
    return sentences


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    if first in {"The", "A", "An", "It", "This", "That", "They", "He", "She", "We", "There"}:
        return text[0].lower() + text[1:]
    return text


_LANGCHAIN_NOISE = re.compile(
    r"Write a concise summary of the following:|CONCISE SUMMARY:|Your job is to produce a final summary\.?"
    r"|We have provided an existing summary up to a certain point:|We have the opportunity to refine the"
    r" existing summary \(only if needed\) with some more context below\.|Given the new context, refine the"
    r" original summary\.?|If the context isn't useful, return the original summary\.?|-{4,}"
)
_PLAIN_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’']))\s+(?=[\"“‘']?[A-Z0-9])")


def write_plain_summary(user_text: str, max_words: int = 50) -> str:
    """A plain-text summary of a free-form prompt (LangChain's map/reduce/refine prompts).

    The most central sentences, in order, up to about `max_words` words (at least one sentence):
    ~70 tokens, the summary length behind the LangChain figures quoted in issue 5.
    """
    body = _LANGCHAIN_NOISE.sub(" ", user_text).strip().strip('"').strip()
    sentences = [s.strip() for line in body.splitlines() for s in _PLAIN_SENTENCE_END.split(line) if s.strip()]
    if not sentences:
        return "Nothing to summarize."
    picked: list[int] = []
    words = 0
    for index in rank_central(sentences):
        length = len(sentences[index].split())
        if picked and words + length > max_words:
            continue
        picked.append(index)
        words += length
    return " ".join(sentences[i] for i in sorted(picked))


# ---------------------------------------------------------------------------------------------
# Content faults
# ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?![\w])")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}(?:-[A-Z][a-z]+)?\b")
_NOT_NAMES = frozenset(
    "The This That These Those There Their They Then When Where What Which While Who Why How But And"
    " However Meanwhile Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March"
    " April May June July August September October November December Mr Mrs Ms Dr His Her Its Our Your"
    " After Before Since Until From With Without For Into Also Still Yet Now Some Many Most".split()
)
_NEGATED = re.compile(r"\b(not|never|no longer)\s+", re.I)
_CONTRACTED = re.compile(r"\b(did|does|do|is|are|was|were|has|have|had|could|would|should)n[’']t\b", re.I)
_IRREGULAR_NEGATIVE = {"won't": "will", "won’t": "will", "can't": "can", "can’t": "can"}
# Auxiliaries that take "not" right after them; has/have/had only before a participle, so that
# "has a dog" never becomes "has not a dog".
_AUXILIARY = re.compile(
    r"\b(is|are|was|were|will|would|can|could|should|may|might|must)\b(?!\s+not)"
    r"|\b(has|have|had)\b(?=\s+(?:been|[a-z]+ed|[a-z]+en)\b)"
)


def inject_fault(
    sentence: dict[str, Any], kind: str, lines: list[SourceLine], rng: random.Random
) -> dict[str, Any] | None:
    """`sentence` with one fault of `kind`, or None when the sentence offers no place for it.

    The fault is built so that the cited lines do not support it: the new number or name does
    not occur in them, and a wrong citation points at the line sharing fewest words.
    """
    text: str = sentence["text"]
    cited = [line for line in lines if set(line.ids) & set(sentence["citations"])]
    evidence = " ".join(line.text for line in cited)
    if kind == "number":
        numbers = list(_NUMBER.finditer(text))
        if not numbers:
            return None
        match = rng.choice(numbers)
        replacement = _changed_number(match.group(), evidence, rng)
        new_text = text[: match.start()] + replacement + text[match.end() :]
        return _faulted(sentence, kind, new_text, sentence["citations"], f"{match.group()} -> {replacement}")
    if kind == "name":
        known = _proper_names([line.text for line in lines])
        names = [m for m in _mid_sentence_capitals(text) if m.group() in known]
        pool = sorted(n for n in known if n not in evidence and n not in text)
        if not names or not pool:
            return None
        match = rng.choice(names)
        replacement = rng.choice(pool)  # another name from the same source, as a model's slip would be
        new_text = text[: match.start()] + replacement + text[match.end() :]
        return _faulted(sentence, kind, new_text, sentence["citations"], f"{match.group()} -> {replacement}")
    if kind == "negation":
        new_text = _flip_negation(text)
        if new_text is None or new_text == text:
            return None
        return _faulted(sentence, kind, new_text, sentence["citations"], "negation flipped")
    if kind == "citation":
        others = [line for line in lines if not set(line.ids) & set(sentence["citations"])]
        if not others:
            return None
        bag = _content_words(text)
        unrelated = min(others, key=lambda line: (len(bag & _content_words(line.text)), rng.random()))
        ids = list(unrelated.ids)
        return _faulted(sentence, kind, text, ids, f"{sentence['citations']} -> {ids}")
    raise ValueError(f"unknown content fault {kind!r}")


def _mid_sentence_capitals(text: str) -> list[re.Match[str]]:
    """Capitalised words that do not open a sentence (so the capital marks a name)."""
    found = []
    for match in _CAPITALISED.finditer(text):
        before = text[: match.start()].rstrip(" \"“‘'(")
        if before and before[-1] not in ".!?:;—–-" and match.group() not in _NOT_NAMES:
            found.append(match)
    return found


def _proper_names(texts: list[str]) -> set[str]:
    """Words written capitalised mid-sentence and never in lower case: names, not common words."""
    lower = {w.lower() for t in texts for w in re.findall(r"\b[a-z][a-z]+\b", t)}
    return {m.group() for t in texts for m in _mid_sentence_capitals(t) if m.group().lower() not in lower}


def _faulted(sentence: dict[str, Any], kind: str, text: str, citations: list[str], detail: str) -> dict[str, Any]:
    return {
        "text": text,
        "citations": list(citations),
        "fault": kind,
        "detail": detail,
        "original": sentence["text"],
        "original_citations": list(sentence["citations"]),
    }


def _changed_number(number: str, evidence: str, rng: random.Random) -> str:
    """A different number, formatted like the original, that the evidence does not contain."""
    digits = number.replace(",", "")
    is_year = digits.isdigit() and len(digits) == 4 and 1800 <= int(digits) <= 2100
    for _ in range(50):
        if "." in digits:
            whole, frac = digits.split(".", 1)
            candidate = f"{int(whole) + rng.randint(1, 9)}.{frac}"
        else:
            value = int(digits)
            step = rng.randint(1, 5) if is_year else rng.choice([rng.randint(1, 9), value or 3, 10, 100])
            candidate = str(value + step)
            if "," in number:
                candidate = f"{int(candidate):,}"
        if candidate not in evidence and candidate != number:
            return candidate
    return number + "7"


def _flip_negation(text: str) -> str | None:
    """Remove a negation when there is one, else insert "not" after the first auxiliary verb."""
    for negative, positive in _IRREGULAR_NEGATIVE.items():
        if negative in text:
            return text.replace(negative, positive, 1)
    if _CONTRACTED.search(text):
        return _CONTRACTED.sub(lambda m: m.group(1), text, count=1)
    if _NEGATED.search(text):
        return _NEGATED.sub("", text, count=1)
    if _AUXILIARY.search(text):
        return _AUXILIARY.sub(lambda m: m.group() + " not", text, count=1)
    return None


def add_faults(
    sentences: list[dict[str, Any]], lines: list[SourceLine], config: SimConfig, rng: random.Random
) -> list[dict[str, Any]]:
    """Each sentence, faulted with chance `config.fault_rate` (fault = None when clean)."""
    out = []
    for sentence in sentences:
        faulted = None
        if config.fault_kinds and rng.random() < config.fault_rate:
            kinds = list(config.fault_kinds)
            rng.shuffle(kinds)
            for kind in kinds:  # the first kind this sentence has room for
                faulted = inject_fault(sentence, kind, lines, rng)
                if faulted:
                    break
        out.append(faulted or {**sentence, "fault": None})
    return out


# ---------------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------------


def _rng(config: SimConfig, *parts: object) -> random.Random:
    """A generator seeded by the config seed and `parts`, independent of call order."""
    digest = hashlib.sha256(repr((config.seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _pick_transport_fault(config: SimConfig, rng: random.Random) -> str | None:
    draw = rng.random()
    total = 0.0
    for kind in TRANSPORT_FAULTS:
        total += config.transport_rates.get(kind, 0.0)
        if draw < total:
            return kind
    return None


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _completion(model: str, content: str, prompt_tokens: int, completion_tokens: int, finish: str) -> dict:
    return {
        "id": f"chatcmpl-sim-{random.getrandbits(48):012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _reset_connection(request: Request) -> None:
    """Abort the TCP connection with an RST, no response; uvicorn's receive carries the transport."""
    transport = getattr(getattr(request.receive, "__self__", None), "transport", None)
    if transport is None:  # not running under uvicorn's h11/httptools protocol
        raise RuntimeError("connection reset needs uvicorn")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0)


async def _sleep_until(deadline: float) -> None:
    """Sleep until time.time() reaches `deadline`: uvloop's timers have 1 ms resolution and may fire up to 1 ms early."""
    remaining = deadline - time.time()
    while remaining > 0:
        await asyncio.sleep(remaining)
        remaining = deadline - time.time()


def token_pieces(content: str) -> list[str]:
    """`content` cut into ~one-token pieces (4 characters), as many as `estimate_tokens` counts."""
    return [content[i : i + 4] for i in range(0, len(content), 4)]


def _chunk(base: dict[str, Any], delta: dict[str, Any], finish_reason: str | None) -> bytes:
    chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


async def _stream_chunks(
    request: Request,
    entry: dict[str, Any],
    finish: Any,
    config: SimConfig,
    transport_fault: str | None,
    model: str,
    content: str,
    finish_reason: str,
    prompt_tokens: int,
    first_token_at: float,
    per_token_s: float,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE `chat.completion.chunk`s: piece i is sent at first_token_at + i × per_token_s.

    Pieces already due when the loop wakes go out in one write (each its own chunk), so a slow
    simulator falls behind by a write, never by a token. A stream the client abandons (its task is
    cancelled, or the socket write fails) is logged with stream_completed False.
    """
    base = {
        "id": f"chatcmpl-sim-{random.getrandbits(48):012x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    pieces = token_pieces(content)
    fault_at = min(len(pieces) - 1, int(len(pieces) * config.stream_fault_at)) if pieces else 0
    stream_fault = transport_fault if transport_fault in STREAM_FAULTS else None
    sent = 0
    completed = False
    entry["stream_completed"] = False
    try:
        yield _chunk(base, {"role": "assistant", "content": ""}, None)
        while sent < len(pieces):
            await _sleep_until(first_token_at + sent * per_token_s)
            due = max(
                sent + 1,
                min(len(pieces), int((time.time() - first_token_at) / per_token_s) + 1)
                if per_token_s > 0
                else len(pieces),
            )
            if stream_fault is not None and sent <= fault_at < due:
                due = fault_at
                if due > sent:
                    yield b"".join(_chunk(base, {"content": p}, None) for p in pieces[sent:due])
                    sent = due
                entry["stream_fault_at_token"] = sent
                if stream_fault == "stream_cut":
                    await _reset_connection(request)
                    return
                if stream_fault == "stream_malformed":
                    yield b'data: {"id": "' + base["id"].encode() + b'", "choices": [{"delta": {"content": "\n\n'
                elif stream_fault == "stream_stall":
                    await asyncio.sleep(config.hang_s)
                stream_fault = None
                continue
            yield b"".join(_chunk(base, {"content": p}, None) for p in pieces[sent:due])
            sent = due
        await _sleep_until(first_token_at + len(pieces) * per_token_s)
        tail = _chunk(base, {}, finish_reason)
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
            }
            tail += b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield tail + b"data: [DONE]\n\n"
        completed = True
    finally:
        entry["stream_completed"] = completed
        entry["stream_tokens_sent"] = sent
        finish(200, len(pieces))


def create_app(state: SimState) -> Starlette:
    """The simulated server's ASGI app, reading config from and logging into `state`."""

    async def chat_completions(request: Request) -> Response:
        start = time.time()
        config = state.config
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "body must be JSON with a 'messages' list", "invalid_request_error")
        model = str(body.get("model") or config.model)
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        attempt = state.next_attempt(key)
        transport_fault = _pick_transport_fault(config, _rng(config, "transport", key, attempt))
        prompt_tokens = sum(estimate_tokens(_content_text(m.get("content"))) for m in messages)
        entry: dict[str, Any] = {
            "model": model,
            "kind": "unknown",
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 0,
            "start": start,
            "end": start,
            "attempt": attempt,
            "transport_fault": transport_fault,
            "status": 200,
            "sentences": [],
        }

        def finish(status: int, completion_tokens: int = 0) -> None:
            entry.update(end=time.time(), status=status, completion_tokens=completion_tokens)
            state.log(entry)

        if transport_fault == "reset":
            finish(0)
            await _reset_connection(request)
            return Response(status_code=500)  # never reaches the client: the socket is gone
        if transport_fault in ("429_retry_after", "429"):
            finish(429)
            headers = {"retry-after": f"{config.retry_after_s:g}"} if transport_fault == "429_retry_after" else {}
            return _error(429, "Rate limit reached (simulated)", "rate_limit_error", headers)
        if transport_fault in ("500", "503"):
            finish(int(transport_fault))
            return _error(int(transport_fault), "The server had an error (simulated)", "server_error")
        if transport_fault == "hang":
            await asyncio.sleep(config.hang_s)

        parsed = parse_prompt(messages)
        if JUDGE_MARK in parsed.user_text:
            entry["kind"] = "judge"
            content = json.dumps(judge_reply(parsed.user_text))
        elif parsed.structured:
            entry["kind"] = "cited_line" if parsed.cited_line else "structured"
            rng = _rng(config, "content", key)
            sentences = add_faults(
                write_summary(list(parsed.lines), parsed.max_sentences), list(parsed.lines), config, rng
            )
            entry["sentences"] = sentences
            if parsed.cited_line:
                content = " ".join(f"{s['text']} [{', '.join(s['citations'])}]" for s in sentences)
            else:
                content = json.dumps(
                    {"sentences": [{"text": s["text"], "citations": s["citations"]} for s in sentences]},
                    ensure_ascii=False,
                )
        else:
            entry["kind"] = "plain"
            content = write_plain_summary(parsed.user_text)
        finish_reason = "stop"
        if transport_fault == "non_json":
            content = "Sure! Here is a summary of the article. " + content[:200]
        elif transport_fault == "truncated_content":
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        completion_tokens = estimate_tokens(content)
        # The latency model is the whole call: the simulator's own work (parsing an 18k-token prompt
        # takes ~30 ms) is absorbed into it rather than added on top, for every client alike.
        first_token_at = start + (config.base_ms + config.ms_per_1k * prompt_tokens / 1000) / 1000
        per_token_s = config.ms_per_output_token / 1000

        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            entry["stream"] = True
            return StreamingResponse(
                _stream_chunks(
                    request,
                    entry,
                    finish,
                    config,
                    transport_fault,
                    model,
                    content,
                    finish_reason,
                    prompt_tokens,
                    first_token_at,
                    per_token_s,
                    include_usage,
                ),
                media_type="text/event-stream",
            )

        await _sleep_until(first_token_at + per_token_s * completion_tokens)
        payload = _completion(model, content, prompt_tokens, completion_tokens, finish_reason)
        finish(200, completion_tokens)
        raw = json.dumps(payload, ensure_ascii=False).encode()
        if transport_fault == "truncated_body":
            raw = raw[: len(raw) // 2]
        return Response(raw, media_type="application/json")

    async def models(request: Request) -> Response:
        model = state.config.model
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "sim"}]}
        )

    async def get_calls(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    async def config_endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.config = state.config.updated(await request.json())
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc), "invalid_request_error")
        return JSONResponse(state.config.as_dict())

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/_sim/calls", get_calls, methods=["GET"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/_sim/config", config_endpoint, methods=["GET", "POST"]),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Running it: in a thread (tests) or as a subprocess (benchmarks)
# ---------------------------------------------------------------------------------------------


def _bind_loopback(port: int = 0) -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


class _SimHandle:
    """What both ways of running the simulated server share: its loopback URLs and the context manager."""

    port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the OpenAI client's base_url."""
        return f"{self.url}/v1"

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimServer(_SimHandle):
    """The simulated server in a background thread of this process (a context manager)."""

    def __init__(self, config: SimConfig | None = None, **changes: Any) -> None:
        self.state = SimState((config or SimConfig()).updated(changes))
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        sock = _bind_loopback()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("simulated LLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def calls(self) -> list[dict[str, Any]]:
        """The call log since the last reset."""
        return self.state.snapshot()

    def reset(self) -> None:
        self.state.reset()

    def configure(self, **changes: Any) -> None:
        self.state.config = self.state.config.updated(changes)


class SimProcess(_SimHandle):
    """The simulated server as a child process (`python -m service.testing.sim_llm`), driven over HTTP."""

    def __init__(self, config: SimConfig | None = None, **changes: Any) -> None:
        self.config = (config or SimConfig()).updated(changes)
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.testing.sim_llm",
                "--port",
                "0",
                "--config-json",
                json.dumps(self.config.as_dict()),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=_REPO_ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if not match:
            self.stop()
            raise RuntimeError(f"simulated LLM process did not start: {line!r}")
        self.port = int(match.group(1))
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s=10)
            if self.process.stdout:
                self.process.stdout.close()
        self.process = None

    def calls(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_sim/calls", timeout=30).json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sim/reset", timeout=30).raise_for_status()

    def configure(self, **changes: Any) -> None:
        response = httpx.post(f"{self.url}/_sim/config", json=changes, timeout=30)
        response.raise_for_status()


def _parse_rates(pairs: list[str]) -> dict[str, float]:
    rates = {}
    for pair in pairs:
        kind, _, rate = pair.partition("=")
        rates[kind] = float(rate)
    return rates


def main(argv: list[str] | None = None) -> None:
    """Run the simulated server in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m service.testing.sim_llm", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port (printed on start)")
    parser.add_argument("--base-ms", type=float, default=0.0)
    parser.add_argument(
        "--ms-per-1k", "--prefill-ms-per-1k", type=float, default=0.0, help="extra ms per 1,000 prompt tokens"
    )
    parser.add_argument("--ms-per-output-token", type=float, default=0.0, help="decoding: ms per completion token")
    parser.add_argument(
        "--profile", choices=sorted(LATENCY_PROFILES), help="a named latency model (overrides the three flags above)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="content fault chance per sentence")
    parser.add_argument("--fault-kinds", default=",".join(CONTENT_FAULTS))
    parser.add_argument(
        "--transport",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"transport fault rate, repeatable; kinds: {', '.join(TRANSPORT_FAULTS)}",
    )
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    parser.add_argument("--config-json", help="a full SimConfig as JSON (overrides the flags)")
    args = parser.parse_args(argv)
    if args.config_json:
        config = SimConfig().updated(json.loads(args.config_json))
    else:
        config = SimConfig().updated(
            {
                "base_ms": args.base_ms,
                "ms_per_1k": args.ms_per_1k,
                "ms_per_output_token": args.ms_per_output_token,
                **(LATENCY_PROFILES[args.profile] if args.profile else {}),
                "seed": args.seed,
                "fault_rate": args.fault_rate,
                "fault_kinds": tuple(k for k in args.fault_kinds.split(",") if k),
                "transport_rates": _parse_rates(args.transport),
                "hang_s": args.hang_s,
                "retry_after_s": args.retry_after_s,
            }
        )
    sock = _bind_loopback(args.port)
    port = sock.getsockname()[1]
    print(f"simulated LLM listening on http://127.0.0.1:{port}/v1", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(SimState(config)),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
