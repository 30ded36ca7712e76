"""Is the article English? The verifier (English lemmas, negation and number rules) and the
extractive ranker are tuned for English only, so other languages are refused with 422 rather
than summarized with verdicts we cannot stand behind.

The check is cheap and offline: simplemma (already used by the verifier for English lemmas) tells
which share of the words are known English word forms. English news scores ~0.9-1.0; German
~0.3, French ~0.1, Russian 0. Texts of fewer than MIN_WORDS words are not judged. Scripts written
without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) count one word per character:
read as space-separated words, a paragraph of them was one "word" and short texts escaped the check.
"""

from __future__ import annotations

import re

from simplemma import in_target_language

from service.core.config import Settings
from service.core.errors import UnsupportedLanguage

__all__ = ["SUPPORTED_LANGUAGES", "check_language", "english_ratio"]

SUPPORTED_LANGUAGES = ("English",)
MIN_ENGLISH_RATIO = 0.5
MIN_WORDS = 8
SAMPLE_CHARS = 2_000  # ~330 words: the share is stable by then (on the 896 dev articles, the verdict at 5,000
# characters is the same and the share moves by at most 0.08); it keeps the check O(1) and ~0.6 ms
# Han, kana, Thai, Lao, Myanmar and Khmer letters; each counts as a word (see the module docstring).
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W\d_{_UNSPACED}]{{2,}}")


def english_ratio(text: str) -> float:
    """Share of the sample's words that are English word forms, in [0, 1]."""
    return float(in_target_language(text[:SAMPLE_CHARS], lang="en"))


def check_language(text: str, settings: Settings) -> None:
    """Raise UnsupportedLanguage (422) when the article is clearly not English."""
    if not settings.language_check or len(_WORD.findall(text[:SAMPLE_CHARS])) < MIN_WORDS:
        return
    ratio = english_ratio(text)
    if ratio < MIN_ENGLISH_RATIO:
        raise UnsupportedLanguage(
            f"the article does not look like English (only {ratio:.0%} of its words are English);"
            f" supported languages: {', '.join(SUPPORTED_LANGUAGES)}. Summaries are verified against the"
            " source with English-only rules, so other languages are refused rather than summarized unchecked",
            english_ratio=round(ratio, 3),
        )
