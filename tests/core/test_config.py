"""Settings: standard env names, empty secrets, provider choice, and a settings page that documents them all."""

from __future__ import annotations

import pytest

from scripts.settings_table import env_names, settings_table
from service.core.config import Settings, get_settings
from tests.conftest import ROOT


def test_standard_openai_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("CITESUM_MODEL", "llama3.1")
    settings = get_settings()
    assert settings.openai_api_key.get_secret_value() == "sk-env"
    assert (settings.openai_base_url, settings.model, settings.llm_configured) == (
        "http://localhost:11434/v1",
        "llama3.1",
        True,
    )


@pytest.mark.parametrize(
    ("values", "configured"),
    [
        ({}, False),
        ({"OPENAI_API_KEY": ""}, False),
        ({"OPENAI_API_KEY": "sk-x"}, True),
        ({"OPENAI_BASE_URL": "http://vllm:8000/v1"}, True),
        ({"OPENAI_API_KEY": "sk-x", "provider": "embedded"}, False),
        ({"provider": "openai"}, True),
    ],
)
def test_provider_choice(values: dict, configured: bool) -> None:
    assert Settings(**values).llm_configured is configured


def test_bad_values_fail_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITESUM_MAP_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="map_concurrency"):
        Settings()


def test_every_setting_is_documented_in_the_settings_page() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [
        name for name, field in Settings.model_fields.items() if f"`{env_names(name, field)[0]}`" not in page
    ]
    assert missing == [], f"docs/settings.md misses {missing}: run `python scripts/docs_sections.py`"
    assert settings_table() in page, "docs/settings.md's table is stale: run `python scripts/docs_sections.py`"
