"""README.md and docs/*.md: every relative link, heading anchor, repository path and module name they cite exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# Paths in the repository a page may name: service/…, tests/…, bench/…, scripts/…, seeds/…, prompts/…, docs/…
PATH = re.compile(r"(?<![\w./-])((?:service|tests|bench|scripts|seeds|prompts|docs)/[\w./-]*\w/?)")
MODULE = re.compile(r"(?<![\w./-])(service(?:\.\w+)+)")
MADE_AT_RUN_TIME = {"tests/artifacts/", "service/prompt_templates/"}  # gitignored output; a wheel's package name


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def test_slug_follows_github() -> None:
    assert slug("Accuracy (development files)") == "accuracy-development-files"
    assert slug("Circuit breaker (`service/core/breaker.py`)") == "circuit-breaker-servicecorebreakerpy"
    assert slug("Why `openai>=2.54,<3`") == "why-openai2543"


@pytest.mark.parametrize("doc", DOC_FILES, ids=ids(DOC_FILES))
def test_relative_links_point_at_existing_files_and_headings(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert broken == []


@pytest.mark.parametrize("doc", DOC_FILES, ids=ids(DOC_FILES))
def test_repository_paths_named_in_the_docs_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = sorted(
        {p for p in PATH.findall(text) if p not in MADE_AT_RUN_TIME and not (ROOT / p.rstrip("/")).exists()}
    )
    assert missing == [], f"{doc.relative_to(ROOT)} names paths that do not exist (moved?)"


def resolves(dotted: str) -> bool:
    """`service.a.b.attr`: true when its module part exists, at least three names deep when it has three."""
    parts = dotted.split(".")
    for depth in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:depth])
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return depth >= min(len(parts), 3)
    return False


def test_resolves() -> None:
    assert resolves("service.verifier.verify.verify_claim")
    assert resolves("service.core")
    assert not resolves("service.verify.verify_claim")
    assert not resolves("service.llm")


@pytest.mark.parametrize("doc", DOC_FILES, ids=ids(DOC_FILES))
def test_module_names_in_the_docs_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert sorted({m for m in MODULE.findall(text) if not resolves(m)}) == []


FIRST_COMMAND = (
    "python -m venv .venv && .venv/bin/pip install -e '.[dev]' && "
    ".venv/bin/citesum summarize seeds/belarus-putin-options.txt"
)


def test_the_readme_opens_with_the_two_commands_and_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    first_screen = "\n".join(lines[:25])
    assert FIRST_COMMAND in first_screen
    assert "\nbash scripts/test " in first_screen
    assert "exec bash scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI runs the same command
    assert len(lines) <= 300, "README.md is a ten-minute read: put reference text in docs/*.md"
