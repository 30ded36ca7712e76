"""Wire the stages: ingest → segment → chunk → draft (LLM map/combine, or extractive) → verify → respond."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from service.core.config import Settings
from service.core.errors import LLMError, LLMTimeout, UnprocessableArticle
from service.core.metrics import record_summary_verdicts
from service.core.offload import run_cpu_bound
from service.core.redact import redact_url
from service.core.schema import (
    Citation,
    Document,
    DocumentInfo,
    DroppedSentence,
    PolicyName,
    Sentence,
    SummaryRequest,
    SummaryResponse,
    SummarySentence,
    Usage,
)
from service.pipeline.chunking import Chunk, chunk_budget, chunk_sentences, sentence_tokens, split_at_anchors
from service.pipeline.cited_line import ASK_AGAIN as ASK_AGAIN_FOR_CITED_LINE
from service.pipeline.cited_line import parse_cited_line
from service.pipeline.extractive import MODEL_NAME as EXTRACTIVE_MODEL
from service.pipeline.extractive import select_excerpt, summarize_extractive, why_none_usable
from service.pipeline.ingest import ingest
from service.pipeline.judge import JudgeCost, is_unsure, judge_verifications
from service.pipeline.language import check_language
from service.pipeline.limits import check_article_tokens
from service.pipeline.llm import InvalidOutput, LLMClient, on_request_sent
from service.pipeline.prompts import id_text_pairs, load_prompt
from service.pipeline.segment import segment
from service.pipeline.streaming import EventSink, InOrder, SentenceStream, StreamEvent
from service.verifier.verify import DEFAULT_THRESHOLD, SourceIndex, Verification, verify_claim

log = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[int, int], None]
OnDraft = Callable[["Draft"], None]  # a final summary draft, handed on as soon as it is written

# Citation ids are listed in the schema (an enum) up to this many; past it, a pattern. A server that
# turns the schema into a grammar (llama.cpp) then cannot emit an id the model was not shown.
MAX_ENUM_IDS = 200
MAX_CITATIONS = 3  # the prompts ask for 1 to 3 ids per sentence
JUDGE_UNUSED_NOTE = "the LLM judge could not be used"  # how the note on a judge failure begins


def summary_schema(ids: Iterable[str], max_sentences: int) -> dict[str, Any]:
    """JSON schema of a cited summary: at most `max_sentences` sentences, each citing 1-3 of `ids`.

    A real 0.5B model under llama.cpp's grammar, given only `"citations": array of string`, cited
    all 35 ids of the seed article for one sentence (tests/pipeline/real_replies/); the bounds and
    the id list make that reply impossible rather than merely invalid.
    """
    listed = sorted(set(ids), key=_id_order)
    citation: dict[str, Any] = (
        {"type": "string", "enum": listed} if 0 < len(listed) <= MAX_ENUM_IDS else {"type": "string", "pattern": "^s[0-9]+$"}
    )
    return {
        "type": "object",
        "properties": {
            "sentences": {
                "type": "array",
                "minItems": 1,
                "maxItems": max(1, max_sentences),
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "citations": {"type": "array", "items": citation, "minItems": 1, "maxItems": MAX_CITATIONS},
                    },
                    "required": ["text", "citations"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["sentences"],
        "additionalProperties": False,
    }


def _id_order(sentence_id: str) -> tuple[int, str]:
    digits = sentence_id[1:]
    return (int(digits), sentence_id) if digits.isdigit() else (1 << 30, sentence_id)


# Template text, the title and the completion, reserved out of the context window.
PROMPT_OVERHEAD_TOKENS = 400


@dataclass
class Draft:
    """A summary sentence as written, before verification."""

    text: str
    cited_ids: list[str]


@dataclass
class Run:
    """What one summary run has spent so far."""

    usage: Usage = field(default_factory=Usage)
    unknown_citations: int = 0
    # Ids of the sentences the model was shown, when the article was condensed (else None).
    excerpt_ids: list[str] | None = None
    # Set once the first model request is on the wire (or its call ended): work not needed before
    # verify waits for it, so it does not compete with preparing and sending the request.
    model_called: asyncio.Event = field(default_factory=asyncio.Event)
    notes: list[str] = field(default_factory=list)  # remarks for the response's `notes`


def validate_summary_reply(data: dict[str, Any]) -> None:
    """Raise InvalidOutput unless `data` is {"sentences": [{"text": str, "citations": [str]}]}."""
    sentences = data.get("sentences")
    if not isinstance(sentences, list):
        raise InvalidOutput('"sentences" must be a list')
    for i, item in enumerate(sentences):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise InvalidOutput(f'sentence {i} needs a non-empty "text" string')
        citations = item.get("citations")
        if not isinstance(citations, list) or not all(isinstance(c, str) for c in citations):
            raise InvalidOutput(f'sentence {i} needs "citations": a list of sentence ids like "s3"')
        if len(citations) > MAX_CITATIONS:  # a real 0.5B model cited all 35 ids of the seed for one sentence
            raise InvalidOutput(
                f"sentence {i} cites {len(citations)} ids; cite only the 1 to {MAX_CITATIONS} lines that state it"
            )


def drafts_from_reply(data: dict[str, Any], allowed_ids: set[str], run: Run) -> list[Draft]:
    """Drafts from a validated reply; citations to ids that do not exist are removed and counted."""
    return [draft_from_item(item, allowed_ids, run) for item in data["sentences"]]


def draft_from_item(item: dict[str, Any], allowed_ids: set[str], run: Run) -> Draft:
    """One validated sentence object as a draft (unknown citations removed and counted)."""
    cited = []
    for raw in item["citations"]:
        sentence_id = raw.strip().strip("[]").lower()
        if sentence_id in allowed_ids and sentence_id not in cited:
            cited.append(sentence_id)
        else:
            run.unknown_citations += 1
    return Draft(" ".join(item["text"].split()), cited)


class LLMDrafter:
    """Drafts a cited summary with an OpenAI-compatible model: one call, parallel parts, or map then combine."""

    provider = "openai-compatible"

    def __init__(self, llm: LLMClient, settings: Settings) -> None:
        self.llm, self.settings = llm, settings
        self.summarize_prompt = load_prompt("summarize")
        self.combine_prompt = load_prompt("combine")
        self.repair_prompt = load_prompt("repair")
        self.part_prompt = load_prompt("summarize_part")
        self.parts = 0  # parallel parts the last draft was written in (0: not written in parts)

    @property
    def model(self) -> str:
        return self.llm.model

    def prompt_version(self, chunks: int) -> str:
        if self.parts:
            return self.part_prompt.label
        labels = [self.summarize_prompt.label] + ([self.combine_prompt.label] if chunks > 1 else [])
        return "+".join(labels)

    def budget(self) -> int:
        reserved = PROMPT_OVERHEAD_TOKENS + self.settings.completion_max_tokens
        return chunk_budget(self.settings.context_window_tokens, reserved, self.settings.chunk_tokens)

    async def _ask(
        self,
        messages: list[dict[str, str]],
        allowed: set[str],
        run: Run,
        max_sentences: int,
        on_draft: OnDraft | None = None,
        *,
        one_cited_line: bool = False,
    ) -> list[Draft]:
        """The model's drafts; with `on_draft`, the reply is streamed and each draft handed on once written.

        `one_cited_line`: the prompt asks for one sentence as plain text with its ids (cited_line.py),
        not JSON; such a reply is handed on whole once it ends.
        """
        sending = on_request_sent.set(run.model_called.set)
        streamed: list[Draft] = []
        sink = None
        if on_draft is not None and self.settings.llm_stream:

            def hand_on(item: dict[str, Any]) -> None:
                streamed.append(draft := draft_from_item(item, allowed, run))
                on_draft(draft)

            sink = SentenceStream(hand_on)
        try:
            if one_cited_line:
                result = await self.llm.complete(
                    messages,
                    parse=partial(parse_cited_line, validate=validate_summary_reply),
                    again=ASK_AGAIN_FOR_CITED_LINE,
                    sink=sink,
                )
            else:
                result = await self.llm.complete_json(
                    messages,
                    schema_name="cited_summary",
                    schema=summary_schema(allowed, max_sentences),
                    validate=validate_summary_reply,
                    sink=sink,
                )
        finally:
            on_request_sent.reset(sending)
            run.model_called.set()  # no report of the send (a client without the hook, a failed connect)
        run.usage.llm_calls += result.attempts
        run.usage.retries += result.attempts - 1 - result.reasks
        run.usage.reasks += result.reasks
        run.usage.prompt_tokens += result.prompt_tokens
        run.usage.completion_tokens += result.completion_tokens
        run.usage.tokens_estimated |= result.tokens_estimated
        # The objects handed on while streaming are the reply's first ones (same JSON): the rest follow.
        rest = drafts_from_reply({"sentences": result.data["sentences"][len(streamed) :]}, allowed, run)
        if on_draft is not None:
            for draft in rest:
                on_draft(draft)
        return streamed + rest

    async def draft(
        self,
        document: Document,
        sentences: list[Sentence],
        max_sentences: int,
        run: Run,
        progress: Progress | None,
        on_draft: OnDraft | None = None,
    ) -> tuple[list[Draft], int]:
        """Drafts and the number of chunks used; the final call (one chunk's, or the combine) streams to `on_draft`."""
        shown, excerpt = await self.condense(document, sentences, run)
        chunks = chunk_sentences(shown, self.budget())
        if len(chunks) == 1 and len(parts := await self.plan_parts(document, shown, chunks[0], max_sentences)) > 1:
            return await self.draft_parts(document, parts, run, progress, on_draft), len(parts)
        # The model can only cite what it was shown; ids it never saw are removed like unknown ones.
        all_ids = {s.id for s in shown}
        if progress:
            progress(0, len(chunks))
        if len(chunks) == 1:
            messages = self.summarize_prompt.render(
                title=document.title,
                max_sentences=max_sentences,
                sentences=id_text_pairs(shown),
                part=None,
                parts=None,
                excerpt=excerpt,
            )
            drafts = await self._ask(messages, all_ids, run, max_sentences, on_draft)
            if progress:
                progress(1, 1)
            return drafts, 1

        # Map: each chunk summarized on its own, at most `map_concurrency` at once.
        per_chunk = max(2, min(max_sentences, 4))

        async def summarize_chunk(index: int) -> list[Draft]:
            chunk = chunks[index]
            messages = self.summarize_prompt.render(
                title=document.title,
                max_sentences=per_chunk,
                sentences=id_text_pairs(chunk.sentences),
                part=index + 1,
                parts=len(chunks),
                excerpt=excerpt,
            )
            return await self._ask(messages, set(chunk.ids), run, per_chunk)

        mapped = await self._each_at_once(len(chunks), summarize_chunk, progress)
        partials = [d for drafts in mapped for d in drafts if d.cited_ids]

        # Combine: the partial sentences carry their original source ids, so citations survive.
        messages = self.combine_prompt.render(
            title=document.title,
            max_sentences=max_sentences,
            lines=[{"ids": d.cited_ids, "text": d.text} for d in partials],
        )
        return await self._ask(messages, all_ids, run, max_sentences, on_draft), len(chunks)

    async def plan_parts(
        self, document: Document, shown: list[Sentence], whole: Chunk, max_sentences: int
    ) -> list[Chunk]:
        """The parts to write in parallel, one summary sentence each; [] to write in one call.

        Past `parallel_write_tokens`, the extractive ranker picks the `max_sentences` sentences that
        carry the news, and the article is cut into one part around each pick (split_at_anchors):
        every sentence is shown to exactly one call, and the ranker decides only how many sentences
        each stretch of the article gets.
        """
        threshold = self.settings.parallel_write_tokens
        if threshold <= 0 or whole.tokens <= threshold or max_sentences < 2:
            return []
        picks = await run_cpu_bound(len(document.text), summarize_extractive, shown, max_sentences, document.title)
        place = {s.id: i for i, s in enumerate(shown)}
        return split_at_anchors(shown, [place[s.id] for s in picks]) if len(picks) > 1 else []

    async def draft_parts(
        self,
        document: Document,
        parts: list[Chunk],
        run: Run,
        progress: Progress | None,
        on_draft: OnDraft | None,
    ) -> list[Draft]:
        """One call per part, at most `map_concurrency` at once; drafts in part (article) order.

        With `on_draft`, each call streams and its sentence is handed on once it is written and
        every part before it is done, so the first part reads out while the others are still written.
        """
        self.parts = len(parts)
        in_order = InOrder(len(parts), on_draft) if on_draft is not None else None
        if progress:
            progress(0, len(parts))

        async def write_part(index: int) -> list[Draft]:
            part = parts[index]
            hand_on = partial(in_order.add, index) if in_order is not None else None
            messages = self.part_prompt.render(
                title=document.title,
                max_sentences=1,
                sentences=id_text_pairs(part.sentences),
                part=index + 1,
                parts=len(parts),
            )
            drafts = await self._ask(messages, set(part.ids), run, 1, hand_on, one_cited_line=True)
            if in_order is not None:
                in_order.finish(index)
            return drafts

        written = await self._each_at_once(len(parts), write_part, progress)
        return [draft for drafts in written for draft in drafts]

    async def _each_at_once(
        self, count: int, write: Callable[[int], Awaitable[list[Draft]]], progress: Progress | None
    ) -> list[list[Draft]]:
        """`write(i)` for every i < count, at most `map_concurrency` at once, results in order; `progress`
        hears (done, count) as each finishes. The first failure cancels the rest (gather_or_cancel)."""
        gate = asyncio.Semaphore(self.settings.map_concurrency)
        done = 0

        async def one(index: int) -> list[Draft]:
            nonlocal done
            async with gate:
                drafts = await write(index)
            done += 1
            if progress:
                progress(done, count)
            return drafts

        return await gather_or_cancel([one(i) for i in range(count)])

    async def condense(
        self, document: Document, sentences: list[Sentence], run: Run
    ) -> tuple[list[Sentence], dict[str, int] | None]:
        """The sentences to show the model, and the excerpt note for the prompt (None: all of them).

        Past `prompt_token_budget`, the lead and the most central sentences (extractive ranking)
        within it; the verifier still checks every summary sentence against the whole article.
        """
        budget = self.settings.prompt_token_budget
        if budget <= 0 or sum(sentence_tokens(s) for s in sentences) <= budget:
            return sentences, None
        # Ranking a long article takes tens of milliseconds: off the event loop.
        shown = await asyncio.to_thread(select_excerpt, sentences, budget, document.title)
        run.excerpt_ids = [s.id for s in shown]
        return shown, {"sent": len(shown), "total": len(sentences)}

    async def repair(self, failing: list[tuple[Draft, Verification]], index: SourceIndex, run: Run) -> list[Draft]:
        """One bounded re-ask with the failing sentences, their reasons and their evidence."""
        items = []
        for draft, verification in failing:
            ids = list(dict.fromkeys(draft.cited_ids + verification.evidence_ids))[:4]
            items.append(
                {
                    "text": draft.text,
                    "reason": verification.reason or "not supported by the cited sentences",
                    "evidence": [index.by_id[i] for i in ids if i in index.by_id],
                }
            )
        messages = self.repair_prompt.render(max_sentences=len(failing), items=items)
        return await self._ask(messages, set(index.by_id), run, len(failing))


class ExtractiveDrafter:
    """The embedded default: picks source sentences, each citing itself."""

    provider = "embedded"
    model = EXTRACTIVE_MODEL

    def prompt_version(self, chunks: int) -> str:
        return "none"

    async def draft(
        self,
        document: Document,
        sentences: list[Sentence],
        max_sentences: int,
        run: Run,
        progress: Progress | None,
        on_draft: OnDraft | None = None,
    ) -> tuple[list[Draft], int]:
        picked = await run_cpu_bound(len(document.text), summarize_extractive, sentences, max_sentences, document.title)
        if not picked:  # nothing to verify: say why, rather than blame verification for an empty summary
            raise UnprocessableArticle(why_none_usable(sentences), sentences=len(sentences))
        if progress:
            progress(1, 1)
        drafts = [Draft(s.text, [s.id]) for s in picked]
        for draft in drafts if on_draft is not None else ():  # all at once: nothing is written piecemeal
            on_draft(draft)
        return drafts, 1


Drafter = LLMDrafter | ExtractiveDrafter


async def gather_or_cancel(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every call's result in order; the first failure cancels the others and is raised as itself.

    (asyncio.TaskGroup would raise an ExceptionGroup, which the error handlers do not map.)
    """
    tasks = [asyncio.create_task(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def citation_for(sentence: Sentence) -> Citation:
    """A citation quoting the whole source sentence."""
    return Citation(sentence_id=sentence.id, start=sentence.start, end=sentence.end, quote=sentence.text)


def _prepare(text: str, settings: Settings) -> list[Sentence]:
    """Check the article's size and language, then segment it."""
    check_article_tokens(text, settings)  # 413 (limits.py); chars are capped in ingest
    check_language(text, settings)  # 422 unless English (language.py)
    sentences = segment(text)
    if not sentences:
        raise UnprocessableArticle("the article has no sentences to summarize")
    return sentences


async def _index_while_model_works(sentences: list[Sentence], run: Run) -> SourceIndex:
    """The verifier's index, built on a worker thread once the first model call has started.

    Preparing and sending the model call (excerpt, prompt, request) is on the critical path and the
    index is not needed until verify, so it is built while the model works rather than before the
    call. Started before the body was sent, it slowed the send (which waits for the GIL): on the
    12k-word bench input at 400 ms, overhead p50 65.6 ms; 57.7 ms with the index held back 50 ms;
    60-62 ms starting it on this report (three runs).
    """
    await run.model_called.wait()
    return await asyncio.to_thread(SourceIndex, sentences)


def verify_drafts(drafts: list[Draft], index: SourceIndex, threshold: float | None) -> list[tuple[Draft, Verification]]:
    """Each draft with the verifier's verdict; identical sentences are checked once."""
    seen: set[str] = set()
    checked = []
    for draft in drafts:
        key = draft.text.casefold()
        if key in seen:
            continue
        seen.add(key)
        checked.append((draft, verify_draft(draft, index, threshold)))
    return checked


def verify_draft(draft: Draft, index: SourceIndex, threshold: float | None) -> Verification:
    """The verifier's verdict on one draft."""
    return verify_claim(draft.text, draft.cited_ids, index, threshold=threshold)


def summary_sentence(draft: Draft, verification: Verification, index: SourceIndex) -> SummarySentence:
    """A kept draft as it appears in the response, citing the verifier's evidence."""
    return SummarySentence(
        text=draft.text,
        citations=[citation_for(index.by_id[i]) for i in verification.evidence_ids if i in index.by_id],
        verdict=verification.verdict,
        score=round(verification.score, 4),
        reason=verification.reason,
        recited=verification.recited,
    )


def dropped_sentence(draft: Draft, verification: Verification) -> DroppedSentence:
    """A refused draft as it appears in the response's `dropped` list."""
    return DroppedSentence(
        text=draft.text, cited_ids=draft.cited_ids, score=verification.score, reason=verification.reason
    )


def is_kept(verification: Verification, policy: PolicyName) -> bool:
    """Whether a verdict keeps its sentence in the summary under `policy` (flag keeps and marks)."""
    return verification.verdict == "supported" or policy == "flag"


def assemble(
    checked: list[tuple[Draft, Verification]], index: SourceIndex, policy: PolicyName, max_sentences: int
) -> tuple[list[SummarySentence], list[DroppedSentence]]:
    """The summary (at most `max_sentences`, in `checked` order) and the dropped sentences."""
    summary: list[SummarySentence] = []
    dropped: list[DroppedSentence] = []
    for draft, verification in checked:
        if not is_kept(verification, policy):
            dropped.append(dropped_sentence(draft, verification))
        elif len(summary) < max_sentences:
            summary.append(summary_sentence(draft, verification, index))
    return summary, dropped


class Announcer:
    """Verifies drafts as they are written and emits `sentence` / `dropped` events for final verdicts.

    A verdict is final unless a later stage may change it: the LLM judge (a sentence scoring within
    its band of the threshold) or the repair policy (an unsupported sentence). Events go out in draft order, so
    the first verdict that is not final holds every one after it until the summary is assembled
    (`announce_rest`). The verdicts equal `verify_drafts`'s on the same drafts.
    """

    def __init__(
        self,
        events: EventSink,
        indexing: asyncio.Task[SourceIndex],
        chars: int,
        settings: Settings,
        policy: PolicyName,
        max_sentences: int,
        judged: bool,
    ) -> None:
        self.events, self.indexing, self.chars = events, indexing, chars
        self.threshold = settings.verify_threshold
        self.policy, self.max_sentences = policy, max_sentences
        self.judged = judged  # the judge or repair stage follows
        self.band = settings.verify_judge_band if judged else 0.0
        self.threshold_value = self.threshold if self.threshold is not None else DEFAULT_THRESHOLD
        self.checked: list[tuple[Draft, Verification]] = []
        self.announced: set[str] = set()
        self.kept = 0
        self.added = 0
        self.holding = False
        self.queue: asyncio.Queue[Draft | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._verify_as_written())

    def add(self, draft: Draft) -> None:
        """A draft just written (called from the model stream's parser)."""
        self.added += 1
        self.queue.put_nowait(draft)

    async def finish(self) -> list[tuple[Draft, Verification]]:
        """Every draft with its verdict, once the drafter is done (what verify_drafts returns)."""
        self.queue.put_nowait(None)
        return await self.task

    def cancel(self) -> None:
        self.task.cancel()

    async def _verify_as_written(self) -> list[tuple[Draft, Verification]]:
        seen: set[str] = set()
        while (draft := await self.queue.get()) is not None:
            key = draft.text.casefold()
            if key in seen:
                continue
            seen.add(key)
            index = await self.indexing
            verification = await run_cpu_bound(self.chars, verify_draft, draft, index, self.threshold)
            self.checked.append((draft, verification))
            # Final unless the judge will look at it (a score within its band) or repair may replace it.
            unsure = self.band > 0 and is_unsure(verification, self.threshold_value, self.band)
            final = self.judged and not unsure and not (self.policy == "repair" and verification.verdict != "supported")
            final = final or not self.judged
            self.holding = self.holding or not final
            if not self.holding:
                self._announce(draft, verification, index)
        return self.checked

    def _announce(self, draft: Draft, verification: Verification, index: SourceIndex) -> None:
        if not is_kept(verification, self.policy):
            self._emit("dropped", draft.text, dropped_sentence(draft, verification).model_dump(mode="json"))
        elif self.kept < self.max_sentences:
            self.kept += 1
            self._emit("sentence", draft.text, summary_sentence(draft, verification, index).model_dump(mode="json"))

    def _emit(self, kind: str, text: str, data: dict[str, Any]) -> None:
        self.announced.add(text.casefold())
        self.events(StreamEvent(kind, data))

    def announce_rest(self, summary: list[SummarySentence], dropped: list[DroppedSentence]) -> None:
        """Events for the sentences held back (their verdicts came from the judge or the repair)."""
        for sentence in summary:
            if sentence.text.casefold() not in self.announced:
                self._emit("sentence", sentence.text, sentence.model_dump(mode="json"))
        for item in dropped:
            if item.text.casefold() not in self.announced:
                self._emit("dropped", item.text, item.model_dump(mode="json"))


async def judge_unsure(
    checked: list[tuple[Draft, Verification]], index: SourceIndex, llm: LLMClient, settings: Settings, run: Run
) -> list[tuple[Draft, Verification]]:
    """The LLM judge's verdicts for sentences within `verify_judge_band` of the threshold; cost in `run`.

    The judge is a second opinion: when it cannot be used (the model down, timing out, or answering
    unusably after the re-asks; the breaker open), the embedded checker's verdicts stand and a note says so.
    """
    cost = JudgeCost()
    try:
        judged = await judge_verifications(
            [d.text for d, _ in checked],
            [v for _, v in checked],
            index,
            llm,
            threshold=settings.verify_threshold if settings.verify_threshold is not None else DEFAULT_THRESHOLD,
            band=settings.verify_judge_band,
            cost=cost,
        )
    except LLMError as exc:
        log.warning("the LLM judge could not be used, keeping the embedded verdicts: %s: %s", type(exc).__name__, exc)
        run.usage.llm_calls += exc.attempts  # the calls it made (0 when the breaker refused it)
        run.notes.append(f"{JUDGE_UNUSED_NOTE} ({_short(exc.message)}); the embedded checker's verdicts stand")
        return checked
    run.usage.llm_calls += cost.calls
    run.usage.prompt_tokens += cost.prompt_tokens
    run.usage.completion_tokens += cost.completion_tokens
    run.usage.tokens_estimated |= cost.tokens_estimated
    return [(draft, verification) for (draft, _), verification in zip(checked, judged, strict=True)]


async def summarize_document(
    document: Document,
    *,
    settings: Settings,
    drafter: Drafter,
    max_sentences: int,
    policy: PolicyName,
    include_sentences: bool = False,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    events: EventSink | None = None,
) -> SummaryResponse:
    """Segment, draft, verify and apply the policy to an ingested document.

    With `events`, each summary sentence is verified as soon as the model has written it and
    reported as a `sentence` or `dropped` event (see Announcer); the response is the same.
    """
    timings = timings if timings is not None else {}
    # CPU-bound steps run on a worker thread (for all but short articles): see run_cpu_bound.
    started = time.perf_counter()
    sentences = await run_cpu_bound(len(document.text), _prepare, document.text, settings)
    timings["segment_ms"] = _ms_since(started)

    run = Run()
    mark = time.perf_counter()
    indexing = asyncio.create_task(_index_while_model_works(sentences, run))
    announcer = None
    if events is not None:
        judged = isinstance(drafter, LLMDrafter) and (settings.verify_judge_band > 0 or policy == "repair")
        announcer = Announcer(events, indexing, len(document.text), settings, policy, max_sentences, judged)
    try:
        drafts, chunks = await drafter.draft(
            document, sentences, max_sentences, run, progress, announcer.add if announcer else None
        )
    except Exception:
        if announcer is not None:
            # Sentences the model had written before it failed are verified and announced, then the
            # error ends the stream: what the reader was shown stands, and nothing is repeated.
            if announcer.added:
                run.model_called.set()
            with contextlib.suppress(Exception):
                await announcer.finish()
        indexing.cancel()
        raise
    except BaseException:  # cancelled (the client went away, the deadline ran out)
        indexing.cancel()
        if announcer is not None:
            announcer.cancel()
        raise
    timings["draft_ms"] = _ms_since(mark)

    mark = time.perf_counter()
    run.model_called.set()  # the embedded drafter calls no model: build the index now
    index = await indexing
    if announcer is not None:  # verified while the model wrote: what is left is the last sentence or two
        checked = await announcer.finish()
    else:
        checked = await run_cpu_bound(len(document.text), verify_drafts, drafts, index, settings.verify_threshold)
    timings["verify_ms"] = _ms_since(mark)

    if isinstance(drafter, LLMDrafter) and settings.verify_judge_band > 0:
        # Second opinion from the model on the sentences the embedded verifier is unsure about.
        mark = time.perf_counter()
        checked = await judge_unsure(checked, index, drafter.llm, settings, run)
        timings["judge_ms"] = _ms_since(mark)

    if policy == "repair" and isinstance(drafter, LLMDrafter):
        failing = [(d, v) for d, v in checked if v.verdict == "unsupported"]
        if failing:
            mark = time.perf_counter()
            repaired = await drafter.repair(failing, index, run)
            kept = [(d, v) for d, v in checked if v.verdict == "supported"]
            checked = kept + await run_cpu_bound(
                len(document.text), verify_drafts, repaired, index, settings.verify_threshold
            )
            timings["repair_ms"] = _ms_since(mark)

    summary, dropped = assemble(checked, index, policy, max_sentences)
    if isinstance(drafter, ExtractiveDrafter) or chunks == 1:
        summary.sort(key=lambda s: s.citations[0].start if s.citations else 0)
    if announcer is not None:
        announcer.announce_rest(summary, dropped)

    return SummaryResponse(
        summary=summary,
        document=DocumentInfo(
            text=document.text,
            sentence_count=len(sentences),
            title=document.title,
            source_url=redact_url(document.source_url),  # shown, cached and stored: never the URL's credentials
            sentences=sentences if include_sentences else None,
        ),
        provider=drafter.provider,
        model=drafter.model,
        prompt_version=drafter.prompt_version(chunks),
        policy=policy,
        usage=run.usage,
        dropped=dropped,
        timings_ms=timings,
        chunks=chunks,
        excerpt_ids=run.excerpt_ids,
        notes=[*document.notes, *_length_notes(len(sentences), max_sentences), *run.notes],
    )


def _length_notes(sentence_count: int, max_sentences: int) -> list[str]:
    """Say so when the article has no more sentences than were asked for (the summary is then all of it)."""
    if sentence_count > max_sentences:
        return []
    return [
        f"the article has only {sentence_count} sentence{'' if sentence_count == 1 else 's'} and up to"
        f" {max_sentences} were asked for, so the summary can be the whole article"
    ]


def answered_without_judge(response: SummaryResponse) -> bool:
    """Whether the LLM judge was meant to run but could not (the answer then is not worth caching)."""
    return any(note.startswith(JUDGE_UNUSED_NOTE) for note in response.notes)


def make_drafter(settings: Settings, llm: LLMClient | None) -> Drafter:
    """The LLM drafter when a client is given, else the embedded extractive one."""
    return LLMDrafter(llm, settings) if llm is not None else ExtractiveDrafter()


async def summarize_request(
    request: SummaryRequest,
    *,
    settings: Settings,
    llm: LLMClient | None = None,
    progress: Progress | None = None,
    events: EventSink | None = None,
) -> SummaryResponse:
    """THE entry point: a request in, a verified, cited summary out, within the request deadline.

    With `events`, sentences are reported as they are verified (summarize_document).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        async with asyncio.timeout(settings.request_deadline_s):
            document = await ingest(request, settings)
            timings["ingest_ms"] = _ms_since(started)
            response = await summarize_document(
                document,
                settings=settings,
                drafter=make_drafter(settings, llm),
                max_sentences=request.max_sentences or settings.default_max_sentences,
                policy=request.policy or settings.default_policy,
                include_sentences=request.include_sentences,
                progress=progress,
                timings=timings,
                events=events,
            )
    except TimeoutError as exc:
        raise LLMTimeout(f"the summary did not finish within the {settings.request_deadline_s:g} s deadline") from exc
    response.timings_ms["total_ms"] = _ms_since(started)
    record_summary_verdicts(response)
    return response


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
