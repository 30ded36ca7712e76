"""`citesum summarize`: what a refused article prints and the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.interfaces.cli import main


@pytest.mark.parametrize(("text", "says"), [
    ("the council met on tuesday to discuss the new budget and the members agreed to postpone the vote "
     "until next month because several of them were absent", "no sentence of the article can be quoted"),
    ("东京电力公司周二表示，福岛核电站的处理水排放将于本月晚些时候开始。政府官员称这一计划是安全的。",
     "does not look like English"),
])
def test_an_article_with_nothing_to_summarize_exits_non_zero_naming_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    article = tmp_path / "article.txt"
    article.write_text(text, encoding="utf-8")
    assert main(["summarize", str(article)]) != 0
    out, err = capsys.readouterr()
    assert says in err
    assert "could be verified" not in out + err
