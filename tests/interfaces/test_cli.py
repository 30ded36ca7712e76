"""`citesum summarize`: what a refused article prints and the exit status."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.core.config import get_settings
from service.interfaces.cli import main
from service.testing.sim_llm import SimConfig, SimServer
from tests.process_helpers import ROOT, service_env

SEED = ROOT / "seeds" / "belarus-putin-options.txt"


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


@pytest.mark.parametrize("count", ["0", "31", "five"])
def test_a_sentence_count_out_of_range_is_one_plain_line(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["summarize", "-n", count, str(SEED)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "from 1 to 30" in err
    assert "pydantic" not in err and "http" not in err


def test_a_bad_setting_is_named_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITESUM_CHUNK_TOKENS", "lots")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("CITESUM_STRUCTURED_OUTPUT", "xml")
    assert main(["summarize", str(SEED)]) == 2
    err = capsys.readouterr().err
    assert "setting CITESUM_CHUNK_TOKENS='lots'" in err and "setting CITESUM_STRUCTURED_OUTPUT='xml'" in err
    assert "Traceback" not in err and "pydantic" not in err


def test_a_pdf_is_refused_as_a_pdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = tmp_path / "article.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    assert main(["summarize", str(pdf)]) == 2
    assert "PDF is not supported" in capsys.readouterr().err


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("summarize", "serve", "worker", "eval-verifier", "train-verifier"):
        assert command in out


def test_help_says_offsets_count_in_the_cleaned_article(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["summarize", "--help"])
    assert "cleaned article" in " ".join(capsys.readouterr().out.split())


def test_a_closed_pipe_ends_quietly() -> None:
    """`citesum summarize ... | head -1`: no BrokenPipeError traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "summarize", "--json", str(SEED)],
        cwd=ROOT, env=service_env({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # what `head` does once it has its lines; here before the first write
    err = process.stderr.read().decode()
    process.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_notes_are_printed_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    article = tmp_path / "short.txt"
    article.write_text("Minsk said on Monday that talks would resume in March. Moscow welcomed the news.", encoding="utf-8")
    assert main(["summarize", "-n", "5", str(article)]) == 0
    assert "note: the article has only 2 sentences" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# summarize --stream: each sentence printed as it is verified
# ---------------------------------------------------------------------------------------------


class TimedOutput(io.StringIO):
    """stdout that notes when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines += [(time.time(), line) for line in text.splitlines() if line]
        return super().write(text)


@pytest.mark.httpx_mock(should_mock=lambda request: False)
def test_stream_prints_each_sentence_while_the_model_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    with SimServer(SimConfig(seed=2, base_ms=50, ms_per_output_token=6)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sim")
        get_settings.cache_clear()
        out = TimedOutput()
        monkeypatch.setattr(sys, "stdout", out)
        assert main(["summarize", "--stream", "--policy", "flag", str(SEED)]) == 0
        [call] = sim.calls()
    sentences = [(at, line) for at, line in out.lines if line.startswith("• ")]
    assert len(sentences) >= 3
    assert sentences[0][0] < call["end"] - 0.2  # printed well before the model's last token
    printed = " ".join(line.strip() for _, line in out.lines)
    assert len(re.findall(r"\[s\d+(?:, s\d+)*\]", printed)) == len(sentences)  # each with the ids it cites
    assert "openai-compatible" in out.lines[-1][1]  # the footer closes the output


def test_stream_json_prints_one_event_per_line_ending_with_done(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "--stream", "--json", "-n", "3", str(SEED)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and kinds.count("sentence") == 3
    done = events[-1]["data"]
    assert sorted(e["data"]["text"] for e in events if e["event"] == "sentence") == sorted(s["text"] for s in done["summary"])
    assert main(["summarize", "--json", "-n", "3", str(SEED)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["summary"] == done["summary"]
