"""The optional LLM-judge stage: the configured LLM re-checks only the sentences the verifier is unsure about."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from service.pipeline.llm import InvalidOutput, LLMClient
from service.pipeline.prompts import load_prompt
from service.verifier.verify import SourceIndex, Verification

__all__ = ["JUDGE_SCHEMA", "JudgeCost", "is_unsure", "judge_schema", "judge_verifications"]

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdicts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "supported": {"type": "boolean"},
                    "reason": {"type": "string"},
                },
                "required": ["index", "supported", "reason"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["verdicts"],
    "additionalProperties": False,
}


def judge_schema(count: int) -> dict[str, Any]:
    """JUDGE_SCHEMA for `count` sentences: exactly `count` verdicts, each index one of 0..count-1.

    Asked about one sentence with the unbounded schema, Qwen2.5-Coder-0.5B under llama.cpp's grammar
    gave two verdicts, indexes 0 and 1, one per half of the evidence (tests/pipeline/real_replies/).
    """
    verdicts = JUDGE_SCHEMA["properties"]["verdicts"]
    item = {
        **verdicts["items"],
        "properties": {**verdicts["items"]["properties"], "index": {"type": "integer", "enum": list(range(count))}},
    }
    return {
        **JUDGE_SCHEMA,
        "properties": {"verdicts": {**verdicts, "items": item, "minItems": count, "maxItems": count}},
    }


@dataclass
class JudgeCost:
    """What the judge stage cost: calls, tokens, and how many sentences it was asked about."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judged: int = 0
    changed: int = 0
    tokens_estimated: bool = False  # a reply came without the server's token counts

    def as_dict(self) -> dict[str, int]:
        """Plain numbers for JSON output."""
        return dict(self.__dict__)


def is_unsure(verification: Verification, threshold: float, band: float) -> bool:
    """True when the score lies within `band` of the threshold.

    A sentence vetoed by a hard check scores at most threshold/2, so with the default band it is
    never sent to the judge: the rules for numbers, names, quotations and negations stay final.
    """
    return band > 0 and abs(verification.score - threshold) <= band


def _validator(count: int) -> Callable[[dict[str, Any]], None]:
    def validate(data: dict[str, Any]) -> None:
        verdicts = data.get("verdicts")
        if not isinstance(verdicts, list):
            raise InvalidOutput("'verdicts' must be a list")
        seen = set()
        for verdict in verdicts:
            if not isinstance(verdict, dict) or not isinstance(verdict.get("supported"), bool):
                raise InvalidOutput("each verdict needs a boolean 'supported'")
            index = verdict.get("index")
            if not isinstance(index, int) or not 0 <= index < count:
                raise InvalidOutput(f"verdict index must be an integer from 0 to {count - 1}")
            seen.add(index)
        if len(seen) != count:
            raise InvalidOutput(f"give exactly one verdict for each of the {count} sentences")

    return validate


def _judged_score(supported: bool, threshold: float, band: float) -> float:
    # Judged sentences move just outside the band on the judge's side, so they keep a valid score
    # and the verdict still follows from `score >= threshold`.
    return min(1.0, threshold + band) if supported else max(0.0, threshold - band - 0.001)


async def judge_verifications(
    claims: Sequence[str],
    verifications: Sequence[Verification],
    index: SourceIndex,
    llm: LLMClient,
    *,
    threshold: float,
    band: float,
    cost: JudgeCost | None = None,
) -> list[Verification]:
    """Ask the LLM, in one call, about every unsure sentence; return the verifications with its verdicts.

    Sentences outside the band keep the embedded verifier's verdict. The judge sees each sentence
    with its evidence sentences only.
    """
    cost = cost if cost is not None else JudgeCost()
    unsure = [i for i, v in enumerate(verifications) if is_unsure(v, threshold, band) and v.evidence_ids]
    if not unsure:
        return list(verifications)
    items = [
        {"claim": claims[i], "evidence": [index.by_id[e] for e in verifications[i].evidence_ids if e in index.by_id]}
        for i in unsure
    ]
    messages = load_prompt("judge").render(items=items)
    result = await llm.complete_json(
        messages, schema_name="judge_verdicts", schema=judge_schema(len(unsure)), validate=_validator(len(unsure))
    )
    cost.calls += 1
    cost.prompt_tokens += result.prompt_tokens
    cost.completion_tokens += result.completion_tokens
    cost.tokens_estimated |= result.tokens_estimated
    cost.judged += len(unsure)
    out = list(verifications)
    for verdict in result.data["verdicts"]:
        position = unsure[verdict["index"]]
        before = out[position]
        supported = verdict["supported"]
        reason = str(verdict.get("reason") or "").strip()
        out[position] = replace(
            before,
            verdict="supported" if supported else "unsupported",
            score=_judged_score(supported, threshold, band),
            reason=None if supported else f"judge: {reason or 'not supported by evidence'}",
        )
        cost.changed += int(out[position].verdict != before.verdict)
    return out
