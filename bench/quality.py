"""`python -m bench.quality DATA`: ROUGE of the embedded default against human reference summaries.

Beside it, on the same cleaned and segmented article: Lead-3 (the first three sentences, the strongest
simple baseline on news) and TextRank and LexRank (`sumy`), all at three sentences. Scores are
ROUGE-1, ROUGE-2 and ROUGE-Lsum F1 × 100 (`rouge-score`, Porter stemmer), means over the articles,
with a paired bootstrap interval for embedded minus Lead-3. The report also says how often the
embedded default picked exactly the first three sentences (it must beat Lead-3 without becoming it)
and how many articles it refused.

DATA is a folder of XSum extract files (`*.data`, sections `[XSUM]INTRODUCTION[XSUM]`, the
reference, and `[XSUM]RESTBODY[XSUM]`, the article), a JSONL file with `article` and one of
`highlights` / `summary` / `reference` (CNN/DailyMail as the Hugging Face dataset writes it), or a
CSV file with those columns (as Kaggle's copy of CNN/DailyMail has it). Several DATA are pooled into
one table. No data ships with the repository: docs/benchmarks.md says where to get it.

Articles are split in two by a hash of their id: `--part tune` for choosing the summarizer's
constants, `--part report` (the default) for the numbers we publish, `--part all` for both.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import random
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.core.errors import SummaryError
from service.core.schema import Sentence, SummaryRequest
from service.pipeline.segment import segment
from service.pipeline.summarize import summarize_request

SENTENCES = 3
METRICS = ("rouge1", "rouge2", "rougeLsum")
_SECTION = re.compile(r"^\[XSUM\](\w[\w-]*)\[XSUM\]\s*$", re.M)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class Example:
    """One article and its human reference summary."""

    id: str
    article: str
    reference: str


def load(data: Path) -> list[Example]:
    """Examples from a folder of XSum `*.data` files, a JSONL file or a CSV file, sorted by id."""
    examples: list[Example] = []
    if data.is_dir():
        for path in sorted(data.glob("*.data")):
            parts = _SECTION.split(path.read_text(encoding="utf-8"))
            sections = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
            if sections.get("INTRODUCTION") and sections.get("RESTBODY"):
                examples.append(Example(path.stem, sections["RESTBODY"], sections["INTRODUCTION"]))
        return sorted(examples, key=lambda e: e.id)
    with data.open(encoding="utf-8", newline="") as handle:
        if data.suffix.lower() == ".csv":
            csv.field_size_limit(1 << 30)  # an article is one field, far past the default 128 kB
            rows: Iterable[dict[str, Any]] = csv.DictReader(handle)
        else:
            rows = (json.loads(line) for line in handle if line.strip())
        for number, row in enumerate(rows):
            reference = row.get("highlights") or row.get("summary") or row.get("reference")
            if row.get("article") and reference:
                examples.append(Example(str(row.get("id") or number), row["article"], reference))
    return sorted(examples, key=lambda e: e.id)


def part_of(example: Example) -> str:
    """'tune' or 'report', fixed by the id (half each, whatever the order or size of the file)."""
    return "tune" if hashlib.sha256(example.id.encode()).digest()[0] % 2 == 0 else "report"


class _Tokenizer:
    """sumy's tokenizer interface on our segmenter: no NLTK data to download."""

    language = "english"

    def to_sentences(self, paragraph: str) -> tuple[str, ...]:
        return tuple(s.text for s in segment(paragraph))

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(_WORD.findall(sentence))


def _sumy(kind: str) -> Callable[[str, list[Sentence]], list[Sentence]]:
    from sumy.nlp.stemmers import Stemmer
    from sumy.parsers.plaintext import PlaintextParser
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.summarizers.text_rank import TextRankSummarizer

    summarizer = (TextRankSummarizer if kind == "textrank" else LexRankSummarizer)(Stemmer("english"))

    def run(text: str, sentences: list[Sentence]) -> list[Sentence]:
        # One sentence a line, so sumy sees exactly our sentences (and we can map its picks back).
        parser = PlaintextParser.from_string("\n".join(s.text for s in sentences), _Tokenizer())
        picked = {str(s) for s in summarizer(parser.document, SENTENCES)}
        return [s for s in sentences if s.text in picked][:SENTENCES]

    return run


def _lead(text: str, sentences: list[Sentence]) -> list[Sentence]:
    return sentences[:SENTENCES]


async def _embedded(example: Example, settings: Settings) -> tuple[str, list[Sentence]] | str:
    """(cleaned text, the sentences the embedded default cited) or the refusal's message."""
    try:
        response = await summarize_request(
            SummaryRequest(text=example.article, max_sentences=SENTENCES), settings=settings
        )
    except SummaryError as exc:
        return exc.message
    by_id = {s.id: s for s in segment(response.document.text)}
    picked = [by_id[c.sentence_id] for s in response.summary for c in s.citations[:1] if c.sentence_id in by_id]
    return response.document.text, picked


def _bootstrap(differences: Sequence[float], rounds: int = 2000, seed: int = 18) -> tuple[float, float]:
    """95 % percentile interval of the mean of paired differences."""
    rng = random.Random(seed)
    n = len(differences)
    means = sorted(sum(differences[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def measure(examples: list[Example], systems: Sequence[str]) -> dict[str, Any]:
    """Score every system on `examples`; the embedded default's refusals are left out of every system."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    settings = Settings()
    others = {"lead-3": _lead, **{name: _sumy(name) for name in systems if name in ("textrank", "lexrank")}}
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in ("embedded", *others)}
    refused: list[str] = []
    first_three = 0
    lead_sentence = 0
    for example in examples:
        result = asyncio.run(_embedded(example, settings))
        if isinstance(result, str):
            refused.append(f"{example.id}: {result[:120]}")
            continue
        text, picked = result
        sentences = segment(text)
        ids = [s.id for s in picked]
        first_three += ids == [s.id for s in sentences[:SENTENCES]]
        lead_sentence += bool(sentences) and sentences[0].id in ids
        reference = "\n".join(s.text for s in segment(example.reference)) or example.reference
        outputs = {"embedded": picked, **{name: run(text, sentences) for name, run in others.items()}}
        for name, chosen in outputs.items():
            result_scores = scorer.score(reference, "\n".join(s.text for s in chosen))
            scores[name].append({m: 100 * result_scores[m].fmeasure for m in METRICS})
    answered = len(scores["embedded"])
    table = {
        name: {m: round(statistics.fmean(row[m] for row in rows), 2) if rows else None for m in METRICS}
        for name, rows in scores.items()
    }
    gaps = {}
    for m in METRICS:
        differences = [e[m] - b[m] for e, b in zip(scores["embedded"], scores["lead-3"], strict=True)]
        low, high = _bootstrap(differences) if differences else (0.0, 0.0)
        gaps[m] = {"mean": round(statistics.fmean(differences), 2) if differences else None,
                   "ci95": [round(low, 2), round(high, 2)]}
    return {
        "articles": len(examples),
        "answered": answered,
        "refused": refused,
        "rouge": table,
        "embedded_minus_lead3": gaps,
        "embedded_picks_first_three": first_three,
        "embedded_picks_first_sentence": lead_sentence,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", type=Path, nargs="+", help="folders of XSum *.data files, or JSONL/CSV files (article + highlights)"
    )
    parser.add_argument("--part", choices=("tune", "report", "all"), default="report")
    parser.add_argument("--limit", type=int, default=0, help="score at most this many articles (0: all)")
    parser.add_argument("--systems", default="textrank,lexrank", help="sumy baselines beside Lead-3")
    args = parser.parse_args(argv)
    if missing := [str(path) for path in args.data if not path.exists()]:
        print(f"no such file or folder: {', '.join(missing)} (docs/benchmarks.md says where to get the data)",
              file=sys.stderr)
        return 2
    loaded = [e for path in args.data for e in load(path)]
    examples = [e for e in loaded if args.part == "all" or part_of(e) == args.part]
    if args.limit:
        examples = examples[: args.limit]
    if not examples:
        print(f"no articles with a reference summary in {', '.join(map(str, args.data))}", file=sys.stderr)
        return 2
    result = measure(examples, [s.strip() for s in args.systems.split(",") if s.strip()])
    result["part"] = args.part
    print(f"{result['answered']} of {result['articles']} articles answered ({args.part} part), {SENTENCES} sentences each")
    print(f"{'system':10} {'R-1':>6} {'R-2':>6} {'R-Lsum':>7}")
    for name, row in result["rouge"].items():
        print(f"{name:10} {row['rouge1']:6.2f} {row['rouge2']:6.2f} {row['rougeLsum']:7.2f}")
    for m, gap in result["embedded_minus_lead3"].items():
        print(f"embedded - lead-3 {m}: {gap['mean']:+.2f} (95 % bootstrap {gap['ci95'][0]:+.2f} .. {gap['ci95'][1]:+.2f})")
    print(f"embedded picked exactly the first {SENTENCES} sentences in {result['embedded_picks_first_three']} of"
          f" {result['answered']} articles; the first sentence in {result['embedded_picks_first_sentence']}")
    for line in result["refused"]:
        print(f"refused {line}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
