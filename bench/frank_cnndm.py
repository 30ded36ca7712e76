"""`python -m bench.frank_cnndm REPO OUT`: the 250 CNN/DM test articles of FRANK as JSONL for bench.quality.

REPO is a clone of https://github.com/artidoro/frank (MIT). Its commit 5860706 (later removed from the
tree) holds `data/articles-wbertscore-json/*.json`: for each of FRANK's 250 CNN/DailyMail *test* articles
the untokenized article (`article`) and its human highlights (`bart_reference`, PTB-tokenized:
"Locke 's", "-LRB-"). The highlights are detokenized here so that our segmenter splits them as it
splits the article (ROUGE-Lsum scores per sentence). XSum articles in the same folder are skipped.
Writes one `{"id", "article", "highlights"}` object a line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

COMMIT = "5860706bda0641136d10d27ead52c5f6ae79630e"
FOLDER = "data/articles-wbertscore-json/"
_PTB = (
    (" -LRB- ", " ("), ("-LRB- ", "("), (" -RRB-", ")"), ("`` ", '"'), (" ''", '"'), (" n't", "n't"),
    (" 's", "'s"), (" ,", ","), (" .", "."), (" !", "!"), (" ?", "?"), (" :", ":"), (" ;", ";"),
)


def detokenize(text: str) -> str:
    """Undo the PTB tokenization of a FRANK reference ("Locke 's first game ." → "Locke's first game.")."""
    for token, plain in _PTB:
        text = text.replace(token, plain)
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    repo, out = args

    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", repo, *command], capture_output=True, text=True, check=True).stdout

    written = 0
    with Path(out).open("w", encoding="utf-8") as rows:
        for name in git("ls-tree", "-r", "--name-only", COMMIT, FOLDER).split():
            record = json.loads(git("show", f"{COMMIT}:{name}"))
            if not str(record.get("id", "")).startswith(("cnn-test-", "dm-test-")):
                continue
            row = {"id": record["id"], "article": record["article"], "highlights": detokenize(record["bart_reference"])}
            rows.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    print(f"{written} CNN/DM test articles written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
