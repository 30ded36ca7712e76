"""Prompt files: every one parses, renders with a seed article, and refuses missing variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest

from service.pipeline.prompts import PROMPTS_DIR, available_prompts, id_text_pairs, load_prompt, parse_prompt
from service.pipeline.segment import segment

ROOT = Path(__file__).resolve().parents[2]

VALUES = {
    "summarize": lambda s: {
        "title": "T", "max_sentences": 3, "sentences": id_text_pairs(s), "part": None, "parts": None, "excerpt": None
    },
    "summarize_part": lambda s: {
        "title": None, "max_sentences": 1, "sentences": id_text_pairs(s[:5]), "part": 2, "parts": 5
    },
    "combine": lambda s: {"title": None, "max_sentences": 3, "lines": [{"ids": [x.id], "text": x.text} for x in s]},
    "judge": lambda s: {"items": [{"claim": "X.", "evidence": s[:2]}]},
    "repair": lambda s: {"max_sentences": 1, "items": [{"text": "X.", "reason": "r", "evidence": s[:2]}]},
}


def test_every_prompt_file_renders_with_the_seed(seed_text: str) -> None:
    sentences = segment(seed_text)
    names = available_prompts()
    assert {"summarize", "combine", "repair"} <= set(names)
    for name in names:
        prompt = load_prompt(name)
        assert prompt.version and prompt.label == f"{name}/v{prompt.version}"
        assert name in VALUES, f"prompts/{name}.md has no render values in this test"
        values = VALUES[name](sentences)
        system, user = prompt.render(**values)
        assert system["role"] == "system" and user["role"] == "user"
        assert "{{" not in user["content"] and "{%" not in user["content"]


def test_summarize_prompt_lists_sentences_with_ids(seed_text: str) -> None:
    sentences = segment(seed_text)
    _, user = load_prompt("summarize").render(**VALUES["summarize"](sentences))
    assert f"[{sentences[9].id}] {sentences[9].text}" in user["content"]
    assert "Write at most 3 sentences" in user["content"]


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        load_prompt("summarize").render(title=None, sentences=[], part=None, parts=None, excerpt=None)


def test_article_text_is_a_value_not_template_source() -> None:
    from service.core.schema import Sentence

    evil = Sentence(id="s1", start=0, end=27, text="{{ 7*7 }} {% raise %} end.")
    _, user = load_prompt("summarize").render(**VALUES["summarize"]([evil]))
    assert "{{ 7*7 }} {% raise %} end." in user["content"] and "49" not in user["content"]


@pytest.mark.parametrize(
    "text",
    ["no front matter", "---\nname: x\n---\n[system]\nonly system\n", "---\nversion: 1\n---\n[system]\na\n[user]\nb\n"],
)
def test_malformed_prompt_files_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_prompt(text)


def test_prompts_dir_is_the_repo_folder() -> None:
    assert PROMPTS_DIR.name == "prompts" and (PROMPTS_DIR / "summarize.md").is_file()


def test_a_wheel_carries_the_prompts_inside_the_package(tmp_path: Path) -> None:
    # pyproject maps prompts/ into the package, so an installed wheel has the templates...
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "service.prompt_templates" in config["packages"]
    assert config["package-dir"]["service.prompt_templates"] == "prompts"
    assert config["package-data"]["service.prompt_templates"] == ["*.md"]
    # ...and service/prompts.py reads them there (a wheel's layout, no repository beside it).
    shutil.copytree(ROOT / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "prompts", tmp_path / "service" / "prompt_templates")
    probe = "import service.pipeline.prompts as p; print(p.PROMPTS_DIR); print(p.load_prompt('summarize').label)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out[0] == str(tmp_path / "service" / "prompt_templates")
    assert out[1] == load_prompt("summarize").label


def test_summarize_prompt_says_when_the_sentences_are_an_excerpt(seed_text: str) -> None:
    sentences = segment(seed_text)
    values = VALUES["summarize"](sentences[:4])
    _, whole = load_prompt("summarize").render(**values)
    _, excerpt = load_prompt("summarize").render(**{**values, "excerpt": {"sent": 4, "total": len(sentences)}})
    assert "excerpt" not in whole["content"]
    assert f"this is an excerpt: its opening and its most central sentences, 4 of {len(sentences)}" in excerpt["content"]
    assert excerpt["content"].endswith(whole["content"].split("Source sentences", 1)[1])


@pytest.mark.parametrize("expression", ["s.__class__", "s.__dict__", "s.__init__.__globals__"])
def test_the_sandbox_still_refuses_internals_of_the_models_it_reads(expression: str) -> None:
    from jinja2.exceptions import SecurityError

    from service.core.schema import Sentence

    prompt = parse_prompt(f"---\nname: t\nversion: 1\n---\n[system]\n{{{{ {expression} }}}}\n[user]\nx\n")
    with pytest.raises(SecurityError):
        prompt.render(s=Sentence(id="s1", start=0, end=3, text="Hi."))
