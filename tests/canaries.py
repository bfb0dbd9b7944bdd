"""Planted canary PHI, and a check that a file holds none of it.

``python -m tests.canaries FILE...`` exits 1 and names the canary (never the line) if any file
contains one. ``make test`` runs it on the log of the whole test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The personas' children (tests/conftest.py) carry these; nothing else in the repository does.
ADA_NAME = "Adaline Canaryfeather"
ADA_MRN = "MRN-CANARY-0042"
BEN_NAME = "Benedict Otherfamily"
BEN_MRN = "MRN-OTHER-0099"

CANARIES = (ADA_NAME, ADA_MRN, BEN_NAME, BEN_MRN, "Canaryfeather")


def hits(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


def main(paths: list[str]) -> int:
    found = 0
    for name in paths:
        path = Path(name)
        if not path.exists():
            print(f"{name}: missing", file=sys.stderr)
            return 2
        for canary in hits(path.read_text(encoding="utf-8", errors="replace")):
            print(f"{name}: contains planted PHI canary {canary!r}")
            found += 1
    if not found:
        print(f"no planted PHI in {', '.join(paths)}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
