"""Print the settings table of docs/settings.md from service.core.config.Settings (so the docs cannot drift)."""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from service.core.config import Settings


def env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(a) for a in alias.choices]
    return [f"CITESUM_{name.upper()}"]


def settings_table(settings_class: type[BaseSettings] = Settings) -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings_class.model_fields.items():
        names = " / ".join(f"`{n}`" for n in env_names(name, field))
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        if "secret" in str(field.annotation).lower():
            shown = "unset"
        rows.append(f"| {names} | {shown} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
