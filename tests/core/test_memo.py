"""Caches keyed by user text stay bounded by size, not by entry count (issue 19)."""

from __future__ import annotations

from service.core.memo import short_key_cache, sized_cache


def test_short_key_cache_keeps_short_keys_only() -> None:
    calls: list[str] = []

    @short_key_cache(maxsize=100, max_key_chars=5)
    def upper(word: str) -> str:
        calls.append(word)
        return word.upper()

    assert [upper("abc"), upper("abc"), upper("abcdefgh"), upper("abcdefgh")] == ["ABC", "ABC", "ABCDEFGH", "ABCDEFGH"]
    assert calls == ["abc", "abcdefgh", "abcdefgh"]  # the long key was computed both times
    assert upper.cache_info().currsize == 1  # type: ignore[attr-defined]


def test_sized_cache_holds_at_most_its_size_and_evicts_the_least_recent() -> None:
    calls: list[str] = []

    @sized_cache(max_size=10, size=len)
    def echo(text: str) -> str:
        calls.append(text)
        return text

    for text in ("aaaa", "bbbb", "aaaa", "cccc"):  # 12 characters: "bbbb" (least recently used) goes
        echo(text)
    assert set(echo.cache.values()) == {"aaaa", "cccc"}  # type: ignore[attr-defined]
    assert echo.cache.currsize <= 10  # type: ignore[attr-defined]
    echo("x" * 11)  # bigger than the whole cache: computed, not kept, nothing evicted for it
    assert set(echo.cache.values()) == {"aaaa", "cccc"}  # type: ignore[attr-defined]
    assert calls == ["aaaa", "bbbb", "cccc", "x" * 11]
