"""Triage speed and the corpus figures.

Triage of 2,000-character family messages (goal: median at most 2 ms), each a different mix of
corpus sentences so the speller's per-word cache does not make every run a repeat, measured beside
the triage of a short message in the same run; then recall and false alarms per part, category and
language, as reported in the README.

    python tests/benchmarks/bench_triage.py [--messages 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from fixtures import triage_corpus  # noqa: E402
from messaging import triage  # noqa: E402


def _message(rng: random.Random, sentences: list[str], length: int = 2000) -> str:
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < length:
        sentence = rng.choice(sentences)
        # A typo in one word in three, as on a phone, so the speller does real work.
        words = [
            word[:-2] + word[-1] + word[-2] if len(word) > 5 and rng.random() < 0.33 else word
            for word in sentence.split()
        ]
        parts.append(" ".join(words))
    return ". ".join(parts)[:length]


def _timed(texts: list[str]) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per message (CPU time is what a shared, loaded machine does not
    inflate: other processes' turns on the core count in the wall clock only)."""
    wall, cpu = [], []
    for text in texts:
        start, start_cpu = time.perf_counter(), time.thread_time()
        triage.check(text)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(2000)
    samples = [s for part in triage_corpus.PARTS for s in triage_corpus.load(part)]
    sentences = [s.text for s in samples if not s.labels]  # routine: every rule runs to the end
    start = time.perf_counter()
    triage.check("warm up")
    print(f"first call (word lists and rules loaded): {(time.perf_counter() - start) * 1000:.0f} ms")
    long_texts = [_message(rng, sentences) for _ in range(args.messages)]
    short_texts = [rng.choice(sentences) for _ in range(args.messages)]
    for name, texts in (("2,000 characters", long_texts), ("one sentence", short_texts)):
        wall, cpu = _timed(texts)
        p90 = statistics.quantiles(wall, n=10)[-1]
        print(
            f"{name:>16}: median {statistics.median(wall):.3f} ms (CPU {statistics.median(cpu):.3f} ms), "
            f"p90 {p90:.3f} ms, max {max(wall):.3f} ms"
        )
    print()
    print("| part | category | en recall | es recall | flagged at all |")
    print("|---|---|---|---|---|")
    for part in triage_corpus.PARTS:
        figures = triage_corpus.evaluate(triage_corpus.load(part))
        for category in (*triage.CATEGORIES, ""):
            en, es = figures.recall[f"{category}/en"], figures.recall[f"{category}/es"]
            if not category:
                en, es = figures.recall["en"], figures.recall["es"]
            total = figures.recall[category]
            print(
                f"| {part} | {category or 'all'} | {en.found}/{en.total} | {es.found}/{es.total} | "
                f"{figures.flagged[category].found}/{figures.flagged[category].total} (recall {total.rate:.3f}) |"
            )
        for language in ("en", "es", ""):
            alarms = figures.false_alarms[language]
            print(
                f"| {part} | false alarms {language or 'all'} | {alarms.found}/{alarms.total} ({alarms.rate:.1%}) | | |"
            )


if __name__ == "__main__":
    main()
