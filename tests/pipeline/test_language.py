"""Non-English articles are refused with 422 naming the supported language; English passes."""

from __future__ import annotations

import httpx
import pytest

from service.core.config import Settings
from service.core.errors import UnsupportedLanguage
from service.interfaces.api import create_app
from service.pipeline.language import check_language, english_ratio

GERMAN = (
    "Die Bundesregierung hat am Mittwoch beschlossen, die Unterstützung für die Ukraine auszuweiten. "
    "Der Kanzler sagte, man werde weitere Waffen liefern. Kritiker warnen vor einer Eskalation des "
    "Konflikts mit Russland. Die Opposition forderte eine Debatte im Bundestag."
)
RUSSIAN = (
    "Правительство России в среду объявило о новых мерах поддержки экономики. Президент заявил, что "
    "страна справится с санкциями. Эксперты считают, что инфляция продолжит расти в следующем году."
)
# Short texts in scripts without spaces between words: read as space-separated words, each paragraph
# was one "word", under the 8 needed for a verdict, so they passed and came back as empty summaries.
CHINESE = "东京电力公司周二表示，福岛核电站的处理水排放将于本月晚些时候开始。政府官员称这一计划是安全的。"
JAPANESE = "東京で大きな会議が開かれました。首相は新しい予算案を発表し、野党はこれに強く反対しました。"
ENGLISH = (
    "The government decided on Wednesday to expand its support for Ukraine. The chancellor said more "
    "weapons would be delivered. Critics warned of an escalation of the conflict with Russia."
)


@pytest.mark.parametrize("text", [GERMAN, RUSSIAN, CHINESE, JAPANESE], ids=["german", "russian", "chinese", "japanese"])
async def test_non_english_article_is_422_naming_the_supported_language(text: str) -> None:
    app = create_app(Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/v1/summaries", json={"text": text})
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:citesum:problem:unsupported-language"
    assert "supported languages: English" in body["detail"]


def test_english_passes_and_the_ratio_separates_languages(seed_text: str) -> None:
    check_language(ENGLISH, Settings())
    check_language(seed_text, Settings())
    assert english_ratio(ENGLISH) > 0.8 > 0.5 > english_ratio(GERMAN) > english_ratio(RUSSIAN)


def test_short_texts_are_not_judged_and_the_check_can_be_switched_off() -> None:
    check_language("Guten Tag, Welt.", Settings())
    check_language(GERMAN, Settings(language_check=False))
    with pytest.raises(UnsupportedLanguage):
        check_language(GERMAN, Settings())
