"""`python -m bench.segmentation [DIR]`: sentence ends found in the dev files' sources, against hand labels.

Text whose paragraph breaks were dropped glues sentences together ("…the match.And Tansey…"):
BBC articles in XSum, hence frank-xsum, do this ~15 times an article. `bench/data/glued_sentence_ends.jsonl`
holds 280 hand-labelled places in the dev sources where an end mark (. ! ?) is followed by a letter
with no space: 150 drawn at random from all 2,964 such places, and 130 look-alikes (initials, U.S.,
D.C., e-mail addresses, domains, a score before a full stop) that a rule could get wrong. Each is
labelled a real sentence end or not. The report gives, per dataset, the sentences `segment` finds,
how many exceed 400 characters, and on the labels: real ends split (recall) and non-ends split (false
splits). It also counts protected patterns (U.S., No.5, decimals, initials, e-mail addresses, URLs,
Ph.D.) anywhere in the sources that a sentence boundary cuts. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

from service.pipeline.segment import segment

LABELS = Path(__file__).resolve().parent / "data" / "glued_sentence_ends.jsonl"
DEFAULT_DATA = Path("/work/shared/data/factuality")

# Patterns no sentence boundary may cut.
PROTECTED = {
    "U.S.-style initialism": re.compile(r"\b(?:[A-Z]\.){2,}"),
    "No. + number": re.compile(r"\bNo\.\s?\d+"),
    "decimal": re.compile(r"\d+\.\d+"),
    # J.R.R. Tolkien, C.S. Lewis; not "the U.S. Since 2007", a sentence end.
    "initials before a name": re.compile(r"(?<![.\w])(?!U\.S\.|D\.C\.)(?:[A-Z]\.\s?){1,3}[A-Z][a-z]+"),
    "e-mail address": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "URL": re.compile(r"(?:https?://|www\.)\S+?(?=[.,;:!?)\"']*(?:\s|$))"),
    "Ph.D.": re.compile(r"Ph\.\s?D\."),
}


def load_sources(data: Path) -> dict[str, tuple[str, str]]:
    """sha1[:12] of each distinct source → (dataset, text), over every *.jsonl in `data`."""
    sources: dict[str, tuple[str, str]] = {}
    for path in sorted(data.glob("*.jsonl")):
        with path.open(encoding="utf-8") as rows:
            for line in rows:
                row = json.loads(line)
                key = hashlib.sha1(row["source"].encode()).hexdigest()[:12]
                sources.setdefault(key, (row["dataset"], row["source"]))
    return sources


def split_between(spans: list[tuple[int, int]], left: int, right: int) -> bool:
    """True when no sentence holds both character `left` and character `right`."""
    return not any(start <= left and end > right for start, end in spans)


def measure(data: Path) -> dict[str, object]:
    """Segment every dev source; score the labelled places and the protected patterns."""
    sources = load_sources(data)
    spans = {key: [(s.start, s.end) for s in segment(text)] for key, (_, text) in sources.items()}
    per_dataset: dict[str, Counter[str]] = {}
    for key, (dataset, _) in sources.items():
        counts = per_dataset.setdefault(dataset, Counter())
        counts["sources"] += 1
        counts["sentences"] += len(spans[key])
        counts["over_400_chars"] += sum(1 for start, end in spans[key] if end - start > 400)
    labels = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    scored: Counter[str] = Counter()
    misses: list[str] = []
    for label in labels:
        if label["source_sha1"] not in sources:
            continue
        text = sources[label["source_sha1"]][1]
        mark = label["offset"]
        following = next((i for i in range(mark + 1, len(text)) if text[i].isalnum()), len(text) - 1)
        split = split_between(spans[label["source_sha1"]], mark, following)
        kind = "real" if label["end"] else "non"
        scored[f"{kind}_ends"] += 1
        scored[f"{kind}_ends_split"] += split
        if split != label["end"]:
            misses.append(f"{'missed' if label['end'] else 'false split'}: {label['context']!r}")
    protected: Counter[str] = Counter()
    cut: Counter[str] = Counter()
    for key, (_, text) in sources.items():
        for name, pattern in PROTECTED.items():
            for match in pattern.finditer(text):
                protected[name] += 1
                cut[name] += any(match.start() < end < match.end() for _, end in spans[key])
    return {
        "datasets": {name: dict(counts) for name, counts in sorted(per_dataset.items())},
        "labelled": dict(scored),
        "recall": round(scored["real_ends_split"] / max(scored["real_ends"], 1), 3),
        "false_split_rate": round(scored["non_ends_split"] / max(scored["non_ends"], 1), 3),
        "protected": {name: {"occurrences": protected[name], "cut": cut[name]} for name in PROTECTED},
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="folder of dev *.jsonl files")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no such folder: {args.data}", file=sys.stderr)
        return 2
    result = measure(args.data)
    print("dataset          sources  sentences  >400 chars")
    for name, counts in result["datasets"].items():  # type: ignore[union-attr]
        print(f"{name:16} {counts['sources']:7} {counts['sentences']:10} {counts['over_400_chars']:11}")
    labelled = result["labelled"]
    print(f"labelled real ends split: {labelled.get('real_ends_split', 0)}/{labelled.get('real_ends', 0)}"  # type: ignore[union-attr]
          f" (recall {result['recall']}); non-ends split: {labelled.get('non_ends_split', 0)}/"  # type: ignore[union-attr]
          f"{labelled.get('non_ends', 0)}")  # type: ignore[union-attr]
    for name, counts in result["protected"].items():  # type: ignore[union-attr]
        print(f"protected {name}: {counts['cut']} of {counts['occurrences']} cut")
    for miss in result["misses"]:  # type: ignore[union-attr]
        print(miss)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
