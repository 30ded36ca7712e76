"""bench/quality.py: the reference-summary files it reads (no ROUGE here: that is the [bench] extra)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from bench.quality import Example, load, main

ARTICLE = "The council voted on Tuesday. " * 6000  # ~180 kB: past csv's default 128 kB field limit


def test_a_kaggle_style_csv_is_read_with_articles_past_the_default_field_limit(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["", "id", "article", "highlights"])
        writer.writeheader()
        writer.writerow({"": "0", "id": "b", "article": ARTICLE, "highlights": "Council votes .\nOn Tuesday ."})
        writer.writerow({"": "1", "id": "a", "article": "Short.", "highlights": ""})  # no reference: skipped
    assert load(path) == [Example("b", ARTICLE, "Council votes .\nOn Tuesday .")]


def test_jsonl_rows_take_highlights_summary_or_reference(tmp_path: Path) -> None:
    path = tmp_path / "sample.jsonl"
    rows = [{"id": "x", "article": "A.", "highlights": "H."}, {"article": "B.", "reference": "R."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load(path) == [Example("1", "B.", "R."), Example("x", "A.", "H.")]


def test_every_missing_data_path_is_named(tmp_path: Path, capsys) -> None:
    present = tmp_path / "here.jsonl"
    present.write_text("", encoding="utf-8")
    assert main([str(present), str(tmp_path / "gone.csv"), str(tmp_path / "gone2")]) == 2
    err = capsys.readouterr().err
    assert "gone.csv" in err and "gone2" in err and "here.jsonl" not in err


def test_several_files_are_pooled_before_the_split(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.csv"
    first.write_text("", encoding="utf-8")  # nothing in either: the message names both
    second.write_text("id,article,highlights\n", encoding="utf-8")
    assert main([str(first), str(second), "--part", "all"]) == 2
    assert f"{first}, {second}" in capsys.readouterr().err
