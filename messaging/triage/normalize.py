"""Text normalisation and spelling repair for triage.

Parents write on phones: no accents, no apostrophes, repeated letters ("helppp"), misspellings
("siezure", "breathng"), number words. ``tokens`` turns a message into lower-case ASCII words with
numbers as digits; ``repair`` maps a misspelt word onto the closest word the rules know, with
rapidfuzz's optimal-string-alignment distance (a transposition counts as one edit), within bounds
measured on the evaluation corpus (see ``fuzzy_limit``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from rapidfuzz import process
from rapidfuzz.distance import OSA
from spellchecker import SpellChecker

_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018\u02bc`\u00b4")
_NOT_WORD = re.compile(r"[^a-z0-9.,]+")
# A decimal point or comma only counts inside a number ("38.4", "38,4"); elsewhere it separates.
_LOOSE_POINT = re.compile(r"(?<![0-9])[.,]|[.,](?![0-9])")
_RUN = re.compile(r"([a-z])\1{2,}")
_DOUBLE = re.compile(r"([a-z])\1")

# Number words as digits, so that "five minutes" and "cinco minutos" read like "5 minutes". "One",
# "uno" and "una" stay words: they are also articles and pronouns ("one after another").
NUMBERS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "fifteen": "15", "twenty": "20",
    "thirty": "30", "forty": "40", "dos": "2", "tres": "3", "cuatro": "4", "cinco": "5", "seis": "6",
    "siete": "7", "ocho": "8", "nueve": "9", "diez": "10", "once": "11", "doce": "12", "quince": "15",
    "veinte": "20", "treinta": "30", "cuarenta": "40",
}  # fmt: skip


def fold(text: str) -> str:
    """Lower case ASCII without accents or apostrophes ("can't" -> "cant", "convulsión" ->
    "convulsion"), whitespace collapsed. Kept for callers of the earlier triage module."""
    text = text.translate(_APOSTROPHES)
    if text.isascii():  # most messages: nothing to decompose
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def tokens(text: str) -> list[str]:
    """The words of ``text``: folded, punctuation dropped, runs of three or more equal letters
    collapsed to one ("sooo" -> "so", "bluuue" -> "blue"), number words as digits."""
    folded = _NOT_WORD.sub(" ", fold(text))
    folded = _LOOSE_POINT.sub(" ", folded)
    folded = _RUN.sub(r"\1", folded)
    return [NUMBERS.get(word, word) for word in folded.split()]


def skeleton(word: str) -> str:
    """The word with doubled letters single ("bledding" and "bleeding" -> "bleding")."""
    return _DOUBLE.sub(r"\1", word)


def fuzzy_limit(word: str) -> int:
    """How many edits a word of this length may be away from a known word. Measured on the
    development corpus: words under five letters are too often another real word one edit away
    ("hot"/"hit", "fit"/"fat"), so they are not repaired."""
    if len(word) < 5:
        return 0
    return 1 if len(word) < 9 else 2


# A word seen at least this often in pyspellchecker's English frequency list is a real word and never
# "repaired" into a rule word ("checking" is not "choking", "breast" is not "breath"); rarer entries
# include common misspellings ("chocking": 64), which are repaired. The Spanish list is a dictionary
# (every entry counts 50 or more), so any entry of it is a real word.
COMMON_WORD_COUNT = {"en": 100, "es": 50}


def common_words() -> frozenset[str]:
    """Words of pyspellchecker's English and Spanish lists that are left alone, folded like messages."""
    words: set[str] = set()
    for language, least in COMMON_WORD_COUNT.items():
        frequency = SpellChecker(language=language, distance=1).word_frequency
        # Words under five letters are never repaired, so they need not be remembered.
        words.update(fold(word) for word, count in frequency.dictionary.items() if count >= least and len(word) >= 5)
    return frozenset(words)


def _same_stem(word: str, candidate: str) -> bool:
    """Only the ending differs, letter for letter ("desmaya"/"desmayo", "moradas"/"morados"): another
    form of the same word, which the rules' stems already match; "repairing" it would change its tense
    or number. A letter missing or added ("chokng"/"choking") is a typo and is repaired."""
    return len(word) == len(candidate) and word[:-2] == candidate[:-2]


class Speller:
    """Repairs words towards ``vocabulary`` unless they are ``known`` (or in the vocabulary)."""

    def __init__(self, vocabulary: Iterable[str], known: Iterable[str]) -> None:
        self.vocabulary = frozenset(vocabulary)
        self.known = frozenset(known) | self.vocabulary
        self._skeletons = {skeleton(word): word for word in sorted(self.vocabulary)}
        # Candidates share the first letter (misspellings rarely change it) and are within the edit
        # limit in length: a few dozen comparisons per unknown word (see tests/benchmarks/bench_triage.py).
        buckets: dict[tuple[str, int], list[str]] = {}
        for word in sorted(self.vocabulary):
            if len(word) >= 5:
                buckets.setdefault((word[0], len(word)), []).append(word)
        self._buckets = buckets
        self.repair = lru_cache(maxsize=8192)(self._repair)

    def _repair(self, word: str) -> str:
        if word in self.known or not word.isalpha():
            return word
        same = self._skeletons.get(skeleton(word))
        if same is not None:
            return same
        limit = fuzzy_limit(word)
        if not limit:
            return word
        candidates = [
            candidate
            for length in range(len(word) - limit, len(word) + limit + 1)
            for candidate in self._buckets.get((word[0], length), ())
        ]
        best = process.extractOne(word, candidates, scorer=OSA.distance, score_cutoff=limit)
        if best is None or _same_stem(word, str(best[0])):
            return word
        return str(best[0])
