"""bench/real_model.py: where `--out` writes its reports."""

from pathlib import Path

import pytest

from bench.real_model import output_paths


@pytest.mark.parametrize(
    ("stem", "json_name", "md_name"),
    [
        ("bench/results/real_model", "real_model.json", "real_model.md"),
        # Path.with_suffix took '.5b' for a suffix and wrote real_model_1.json / real_model_1.md
        ("bench/results/real_model_1.5b", "real_model_1.5b.json", "real_model_1.5b.md"),
        ("/tmp/run.v2/judge_0.5b", "judge_0.5b.json", "judge_0.5b.md"),
    ],
)
def test_out_stem_keeps_its_dots(stem: str, json_name: str, md_name: str) -> None:
    json_path, md_path = output_paths(stem)
    assert json_path == Path(stem).parent / json_name
    assert md_path == Path(stem).parent / md_name
