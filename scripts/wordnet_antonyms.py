"""Extract WordNet 3.0's direct antonym pairs into service/verifier/data/antonyms_wordnet.json.

The verifier reads the generated JSON at run time and needs nothing installed; this script only
regenerates it, from the data files of Debian's `wordnet-base` package (Princeton WordNet 3.0):

    apt-get install wordnet-base && python scripts/wordnet_antonyms.py

Only single-word lemmas are kept ("open" / "close", not "open_up"), lower-cased, pairs sorted, so the
output is byte-identical on every run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
OUT = Path(__file__).resolve().parents[1] / "service" / "verifier" / "data" / "antonyms_wordnet.json"
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "s": "data.adj", "r": "data.adv"}
NOTICE = (
    "Antonym pairs extracted by scripts/wordnet_antonyms.py from WordNet 3.0 (Debian package wordnet-base). "
    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use, copy, modify "
    "and distribute this database for any purpose and without fee or royalty is granted under the WordNet 3.0 "
    "license (see /usr/share/doc/wordnet-base/copyright); THIS DATABASE IS PROVIDED 'AS IS' AND PRINCETON "
    "UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED."
)


def _synsets(folder: Path) -> dict[tuple[str, str], tuple[list[str], list[tuple[str, str, str, int, int]]]]:
    """(pos, offset) → (words, pointers) for every synset in the data files."""
    synsets: dict[tuple[str, str], tuple[list[str], list[tuple[str, str, str, int, int]]]] = {}
    for name in sorted(set(POS_FILES.values())):
        for line in (folder / name).read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):  # licence header
                continue
            fields = line.split(" | ")[0].split()
            offset, pos, count = fields[0], fields[2], int(fields[3], 16)
            words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).lower() for i in range(count)]
            at = 4 + 2 * count
            pointers = []
            for i in range(int(fields[at])):
                symbol, target, target_pos, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
                pointers.append((symbol, target, target_pos, int(source_target[:2], 16), int(source_target[2:], 16)))
            synsets[(pos, offset)] = (words, pointers)
    return synsets


def antonym_pairs(folder: Path = WORDNET) -> list[list[str]]:
    """Sorted unique [word, antonym] pairs of single-word lemmas."""
    synsets = _synsets(folder)
    pairs: set[tuple[str, str]] = set()
    for (_pos, _offset), (words, pointers) in synsets.items():
        for symbol, target, target_pos, source, dest in pointers:
            if symbol != "!" or source == 0:
                continue
            key = (target_pos, target)
            if key not in synsets and target_pos == "a":
                key = ("s", target)
            if key not in synsets:
                continue
            left, right = words[source - 1], synsets[key][0][dest - 1]
            if "_" in left or "_" in right or "-" in left or "-" in right or left == right:
                continue
            pairs.add((min(left, right), max(left, right)))
    return [list(p) for p in sorted(pairs)]


def main() -> None:
    """Write the JSON file (or to --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    pairs = antonym_pairs(args.wordnet)
    payload = {"_notice": NOTICE, "source": "WordNet 3.0 (Debian wordnet-base)", "pairs": pairs}
    args.out.write_text(json.dumps(payload, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(pairs)} pairs -> {args.out}")


if __name__ == "__main__":
    main()
