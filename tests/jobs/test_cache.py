"""The result cache: what makes two requests the same, and that a hit costs no summarize call."""

from __future__ import annotations

import random
import sys
import unicodedata
from pathlib import Path

import pytest

from service.core.config import Settings
from service.core.schema import SummaryRequest
from service.jobs import cache as cache_module
from service.jobs.cache import WHITESPACE, SQLiteResultCache, cache_key, cached_summarize, normalize_content
from tests.jobs.test_jobs import ARTICLE, CountingSummarizer

BASE = Settings()


def key(request: SummaryRequest, settings: Settings = BASE) -> str:
    return cache_key(request, settings)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("a  b\n\nc", "a b c"),
        ("  lead and trail \t", "lead and trail"),
        ("cafe\u0301", "caf\u00e9"),  # NFD and NFC spellings are one text
    ],
)
def test_normalize_content(raw: str, normalized: str) -> None:
    assert normalize_content(raw) == normalized


def test_whitespace_is_every_character_str_split_splits_on() -> None:
    every = {chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()}
    assert set(WHITESPACE) | {" "} == every and len(WHITESPACE) == len(set(WHITESPACE))


def test_normalize_content_is_str_split_joined_on_mixed_whitespace() -> None:
    rng = random.Random(5)
    alphabet = [*WHITESPACE, " ", "a", "b", "\u00e9", "e\u0301"]
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert normalize_content(raw) == " ".join(unicodedata.normalize("NFC", raw).split())


def test_layout_does_not_change_the_key() -> None:
    assert key(SummaryRequest(text=ARTICLE)) == key(SummaryRequest(text="  " + ARTICLE.replace(" ", "\n", 4)))


def test_defaults_spelled_out_are_the_same_request() -> None:
    spelled = SummaryRequest(text=ARTICLE, max_sentences=BASE.default_max_sentences, policy=BASE.default_policy)
    assert key(SummaryRequest(text=ARTICLE)) == key(spelled)


@pytest.mark.parametrize(
    "other",
    [
        SummaryRequest(text=ARTICLE + " Another sentence."),
        SummaryRequest(text=ARTICLE, max_sentences=2),
        SummaryRequest(text=ARTICLE, policy="flag"),
        SummaryRequest(text=ARTICLE, include_sentences=True),
        SummaryRequest(html=ARTICLE),
    ],
    ids=["content", "max_sentences", "policy", "include_sentences", "input kind"],
)
def test_anything_that_changes_the_answer_changes_the_key(other: SummaryRequest) -> None:
    assert key(other) != key(SummaryRequest(text=ARTICLE))


def test_model_and_provider_are_part_of_the_key() -> None:
    request = SummaryRequest(text=ARTICLE)
    openai = Settings(OPENAI_API_KEY="sk-test", model="gpt-4o-mini")
    assert len({key(request), key(request, openai), key(request, openai.model_copy(update={"model": "gpt-4o"}))}) == 3


def test_settings_that_change_the_answer_are_part_of_the_key() -> None:
    request = SummaryRequest(text=ARTICLE)
    openai = Settings(OPENAI_API_KEY="sk-test", model="gpt-4o-mini")
    excerpt = openai.model_copy(update={"prompt_token_budget": 6000})
    judged = openai.model_copy(update={"verify_judge_band": 0.15})
    one_call = openai.model_copy(update={"parallel_write_tokens": 0})
    chunked = openai.model_copy(update={"chunk_tokens": 3000})
    small_window = openai.model_copy(update={"context_window_tokens": 8000})
    sampled = openai.model_copy(update={"temperature": 0.7})
    variants = [openai, excerpt, judged, one_call, chunked, small_window, sampled]
    assert len({key(request, settings) for settings in variants}) == len(variants)


def test_a_new_prompt_version_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    request = SummaryRequest(text=ARTICLE)
    before = key(request)
    versions = cache_module.prompt_versions()
    assert any(v.startswith("summarize/v") for v in versions)
    monkeypatch.setattr(cache_module, "prompt_versions", lambda: [*versions[:-1], versions[-1] + "0"])
    assert key(request) != before


async def test_a_hit_makes_zero_summarize_calls(tmp_path: Path) -> None:
    store = SQLiteResultCache(tmp_path / "cache.sqlite3", ttl_s=60)
    fake = CountingSummarizer()
    first, first_hit = await cached_summarize(SummaryRequest(text=ARTICLE), settings=BASE, summarize=fake, cache=store)
    second, second_hit = await cached_summarize(
        SummaryRequest(text=ARTICLE), settings=BASE, summarize=fake, cache=store
    )
    assert (first_hit, second_hit) == (False, True)
    assert len(fake.calls) == 1
    assert second.summary == first.summary and second.document == first.document
    assert second.usage.llm_calls == 0 and first.usage.llm_calls == 1
    assert set(second.timings_ms) == {"cache_ms", "total_ms"}
    await store.close()


async def test_an_expired_entry_is_a_miss() -> None:
    store = SQLiteResultCache(":memory:", ttl_s=-1)  # every entry is already expired
    fake = CountingSummarizer()
    for _ in range(2):
        await cached_summarize(SummaryRequest(text=ARTICLE), settings=BASE, summarize=fake, cache=store)
    assert len(fake.calls) == 2
    await store.close()


async def test_expired_entries_are_deleted_and_the_file_stops_growing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = SQLiteResultCache(path, ttl_s=0)  # every entry has expired by the next write
    value = {"summary": "x" * 100_000}
    sizes = []
    for i in range(40):
        await cache.set(f"k{i}", value)
        await cache.db.run(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        sizes.append(path.stat().st_size)
    rows = await cache.db.run(lambda conn: conn.execute("SELECT COUNT(*) FROM result_cache").fetchone()[0])
    await cache.close()
    assert rows == 1  # only the newest entry
    # 40 x 100 kB written; the live set is one entry: the file stays near one entry's size
    assert sizes[-1] <= sizes[9] + 50_000, sizes
    assert sizes[-1] < 10 * len(value["summary"])


async def test_a_write_deletes_a_bounded_number_of_expired_entries(tmp_path: Path) -> None:
    cache = SQLiteResultCache(tmp_path / "cache.sqlite3", ttl_s=0)
    await cache.db.run(
        lambda conn: conn.executemany(
            "INSERT INTO result_cache (key, value, expires_at) VALUES (?, '{}', 0)", [(f"old{i}",) for i in range(100)]
        )
    )
    await cache.set("new", {})
    rows = await cache.db.run(lambda conn: conn.execute("SELECT COUNT(*) FROM result_cache").fetchone()[0])
    await cache.close()
    assert rows == 100 - SQLiteResultCache.PURGE_BATCH + 1  # one batch deleted, the new entry added


async def test_the_cache_can_be_switched_off() -> None:
    store = SQLiteResultCache(":memory:", ttl_s=60)
    fake = CountingSummarizer()
    off = Settings(cache_enabled=False)
    for _ in range(2):
        _, hit = await cached_summarize(SummaryRequest(text=ARTICLE), settings=off, summarize=fake, cache=store)
        assert not hit
    assert len(fake.calls) == 2
    await store.close()


async def test_a_deferred_store_runs_only_when_called_and_then_hits(tmp_path: Path) -> None:
    store = SQLiteResultCache(tmp_path / "cache.sqlite3", ttl_s=60)
    fake = CountingSummarizer()
    later: list[tuple] = []
    request = SummaryRequest(text=ARTICLE)
    _, hit = await cached_summarize(
        request, settings=BASE, summarize=fake, cache=store, store_later=lambda *call: later.append(call)
    )
    assert not hit and len(later) == 1
    assert await store.get(key(request)) is None  # not stored before the caller runs it
    function, *arguments = later[0]
    await function(*arguments)
    _, hit = await cached_summarize(request, settings=BASE, summarize=fake, cache=store)
    assert hit and len(fake.calls) == 1
    await store.close()


async def test_a_failed_store_is_logged_and_the_answer_still_returned(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenCache(SQLiteResultCache):
        async def set(self, key: str, value: dict) -> None:
            raise OSError("disk full")

    store = BrokenCache(":memory:", ttl_s=60)
    fake = CountingSummarizer()
    response, hit = await cached_summarize(SummaryRequest(text=ARTICLE), settings=BASE, summarize=fake, cache=store)
    assert not hit and response.summary
    assert "storing" in caplog.text and "disk full" in caplog.text
    await store.close()
