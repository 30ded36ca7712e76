"""Shared fixtures: an offline environment, seed articles, canned OpenAI replies, and LLM settings."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_ARTICLE = SEEDS / "belarus-putin-options.txt"
LLM_BASE_URL = "http://llm.test/v1"
CHAT_URL = f"{LLM_BASE_URL}/chat/completions"


@pytest.fixture(autouse=True)
def offline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no API key, no base URL, no CITESUM_* settings, no proxies, and its own job store."""
    for name in list(os.environ):
        if name.startswith(("CITESUM_", "OPENAI_", "SLACK_")) or name.lower().endswith("_proxy") or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)
    # The job store and result cache are per test: no idempotency key or cached answer leaks between tests.
    monkeypatch.setenv("CITESUM_JOB_DB_PATH", str(tmp_path / "jobs.sqlite3"))
    # The LLM judge is on by default with a model (band 0.15); tests count model calls against canned
    # replies, so they run without it unless they turn it on (tests/pipeline/test_judge.py does).
    monkeypatch.setenv("CITESUM_VERIFY_JUDGE_BAND", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def seed_text() -> str:
    return SEED_ARTICLE.read_text(encoding="utf-8")


@pytest.fixture
def llm_settings() -> Settings:
    """Settings that point at the fake LLM host, with fast, bounded retries."""
    return Settings(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=LLM_BASE_URL,
        llm_backoff_initial_s=0.0,
        llm_backoff_max_s=0.01,
        llm_max_attempts=3,
        llm_timeout_s=2.0,
        verify_judge_band=0.0,  # off, as in every test that does not turn it on (see offline_environment)
    )


def chat_completion(content: str, *, prompt_tokens: int = 120, completion_tokens: int = 40, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """A canned OpenAI chat.completion body."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def cited(*sentences: tuple[str, list[str]]) -> str:
    """The JSON content of a cited-summary answer."""
    return json.dumps({"sentences": [{"text": text, "citations": ids} for text, ids in sentences]})


@pytest.fixture
def openai_reply() -> Callable[..., dict[str, Any]]:
    """Factory fixture for canned OpenAI replies (see chat_completion)."""
    return chat_completion


def sse_chunks(
    content: str,
    *,
    piece_chars: int = 4,
    prompt_tokens: int = 120,
    completion_tokens: int = 40,
    finish_reason: str = "stop",
    done: bool = True,
    usage: bool = True,
) -> list[bytes]:
    """A canned streamed chat completion: OpenAI's SSE chunks of `content`, a usage chunk, [DONE].

    `usage=False` leaves the usage chunk out, as llama-cpp-python's server does.
    """
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini"}

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for i in range(0, len(content), piece_chars):
        out.append(event([{"index": 0, "delta": {"content": content[i : i + piece_chars]}, "finish_reason": None}]))
    out.append(event([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
    if usage:
        counts = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        out.append(event([], usage={**counts, "total_tokens": prompt_tokens + completion_tokens}))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


SSE_HEADERS = {"content-type": "text/event-stream"}
