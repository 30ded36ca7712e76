"""scripts/docs_sections.py: the generated sections of README.md and docs/*.md are current, and staleness is caught."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from scripts import docs_sections
from scripts.docs_sections import BY_NAME, COMMAND, SECTIONS, SourceMissing, read_section, replace_section

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "intro\n<!-- generated:demo -->\nold body\n<!-- /generated:demo -->\noutro\n"


def test_replace_section_rewrites_only_between_the_markers() -> None:
    new = replace_section(TEXT, "demo", "new body\n\n")
    assert new == "intro\n<!-- generated:demo -->\nnew body\n<!-- /generated:demo -->\noutro\n"
    assert read_section(new, "demo") == "new body\n"
    assert replace_section(new, "demo", "new body") == new  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "<!-- generated:demo -->\nbody without an end\n",
        "body\n<!-- /generated:demo -->\n",
        TEXT + TEXT,
    ],
    ids=["no-end-marker", "no-start-marker", "twice"],
)
def test_missing_or_repeated_markers_are_errors(text: str) -> None:
    with pytest.raises(ValueError, match="demo"):
        replace_section(text, "demo", "x")


def test_every_section_has_one_pair_of_markers_in_its_file() -> None:
    for section in SECTIONS:
        text = (ROOT / section.file).read_text(encoding="utf-8")
        assert text.count(f"<!-- generated:{section.name} -->") == 1, section
        assert text.count(f"<!-- /generated:{section.name} -->") == 1, section


def test_no_doc_has_a_generated_marker_the_script_does_not_know() -> None:
    for path in DOC_FILES:
        for name in docs_sections.section_names(path.read_text(encoding="utf-8")):
            assert name in BY_NAME and BY_NAME[name].file == path.relative_to(ROOT).as_posix(), (path, name)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_generated_section_is_current(name: str) -> None:
    section = BY_NAME[name]
    try:
        body = section.render()
    except SourceMissing as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    current = read_section((ROOT / section.file).read_text(encoding="utf-8"), name)
    assert current == body.strip("\n") + "\n", f"{section.file}: section {name} is stale: run `{COMMAND}`"


def _copy_docs(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    for path in DOC_FILES:
        shutil.copy(path, tmp_path / path.relative_to(ROOT))
    return tmp_path


def test_a_stale_section_is_reported_and_rewritten(tmp_path: Path) -> None:
    root = _copy_docs(tmp_path)
    settings = root / "docs" / "settings.md"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("`CITESUM_MODEL` | `gpt-4o-mini`", "`CITESUM_MODEL` | `gpt-3`"), encoding="utf-8")
    assert docs_sections.stale_sections(["settings"], root=root) == (["docs/settings.md: settings"], [])
    assert docs_sections.write_sections(["settings"], root=root) == (["docs/settings.md: settings"], [])
    assert settings.read_text(encoding="utf-8") == text
    assert docs_sections.stale_sections(["settings"], root=root) == ([], [])


def test_the_newest_benchmark_result_is_the_one_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    latest = json.loads((ROOT / "bench" / "results" / "latest.json").read_text(encoding="utf-8"))
    older = {**latest, "date": "2020-01-01 00:00 UTC", "summary": {**latest["summary"], "fault_recall": 0.5}}
    newer = {**latest, "date": "2999-01-01 00:00 UTC", "summary": {**latest["summary"], "fault_recall": 0.875}}
    (tmp_path / "a-newer.json").write_text(json.dumps(newer), encoding="utf-8")
    (tmp_path / "z-older.json").write_text(json.dumps(older), encoding="utf-8")
    (tmp_path / "unrelated.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(docs_sections, "BENCH_RESULTS", tmp_path)
    docs_sections.latest_bench.cache_clear()
    try:
        headline = docs_sections.render_bench_headline()
        table = docs_sections.render_bench_latest()
    finally:
        docs_sections.latest_bench.cache_clear()
    words = " ".join(headline.split())
    assert "87.5 % of the wrong numbers" in words
    assert "2999-01-01 00:00 UTC" in words
    assert max(len(line) for line in headline.splitlines()) <= 100
    assert table.startswith("From `bench/results/a-newer.json`:")
    assert "\n### Targets\n" in table and "\n# " not in table  # bench's headings sit below the page's


def test_no_benchmark_result_means_the_section_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs_sections, "BENCH_RESULTS", tmp_path)
    docs_sections.latest_bench.cache_clear()
    try:
        with pytest.raises(SourceMissing, match="python -m bench"):
            docs_sections.render_bench_latest()
    finally:
        docs_sections.latest_bench.cache_clear()


def test_the_verifier_table_lists_every_dataset_in_report_order(monkeypatch: pytest.MonkeyPatch) -> None:
    row = {"n": 10, "balanced_accuracy": 0.61234, "auc": 0.7, "tuned_balanced_accuracy": 0.65, "tuned_threshold": 0.4,
           "overlap_tuned_balanced_accuracy": 0.55, "overlap_auc": 0.57}
    fake = {
        "threshold": 0.5,
        "claims_per_s": 999.0,  # machine-dependent: must not appear in the docs
        "datasets": {name: row for name in ["zeta", "qags-xsum (summary)", "frank-cnndm", "frank-cnndm (summary)"]},
    }
    monkeypatch.setattr(docs_sections, "verifier_eval", lambda: fake)
    table = docs_sections.render_verifier_accuracy()
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0:2] for line in lines] == [
        ["| frank-cnndm", "sentence"], ["| frank-cnndm", "summary"], ["| qags-xsum", "summary"], ["| zeta", "sentence"],
    ]
    assert "**0.612** (0.700)" in lines[0]
    assert "999" not in table
    oof = json.loads(docs_sections.VERIFIER_WEIGHTS.read_text(encoding="utf-8"))["info"]["grouped_cv_out_of_fold"]
    recorded = oof["frank-cnndm"]
    # FRANK out-of-fold, as training recorded it in verifier.json; then the word-overlap reference
    assert f"{recorded['balanced_accuracy']:.3f} ({recorded['auc']:.3f})" in lines[0]
    assert lines[0].endswith("| 0.550 (0.570) |")


def test_check_mode_names_the_stale_section_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_docs(tmp_path)
    settings = root / "docs" / "settings.md"
    settings.write_text(replace_section(settings.read_text(encoding="utf-8"), "settings", "stale"), encoding="utf-8")
    monkeypatch.setattr(docs_sections, "ROOT", root)
    assert docs_sections.main(["--check", "--only", "settings"]) == 1
    assert f"stale docs/settings.md: settings: run `{COMMAND}`" in capsys.readouterr().out
