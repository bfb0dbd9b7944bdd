"""Red-flag triage of family messages (English and Spanish), measured on the corpus in
``fixtures/triage/`` (see ``tests/messaging/test_triage_corpus.py`` and the README).

``check(text, context=...)`` returns the red-flag categories a message shows, or None. The text is
normalised and misspellings repaired (``normalize``), then each category's rules (``rules``) run over
it; the child's age and conditions add context rules (fever in an infant under three months, vomiting
or a high reading in a child with diabetes, a long or repeated episode in a child with epilepsy).
Only the categories are kept: never the matched words, and nothing of the message is logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from messaging.triage import rules
from messaging.triage.normalize import Speller, common_words, fold, tokens
from messaging.triage.replies import emergency_reply
from portal.conditions import CONDITIONS

__all__ = [
    "CATEGORIES",
    "Hit",
    "TriageContext",
    "check",
    "context_for",
    "detect_language",
    "emergency_reply",
    "fold",
    "normalized",
]

CATEGORIES = rules.CATEGORIES

# Codes in portal.conditions' vocabulary (SNOMED CT) that context rules look for.
TYPE_1_DIABETES = "46635009"
ASTHMA = "195967001"
EPILEPSY = "84757009"
assert {TYPE_1_DIABETES, ASTHMA, EPILEPSY} <= set(CONDITIONS)


@dataclass(frozen=True)
class TriageContext:
    """What is known about the child: completed months of age and coded conditions."""

    age_months: int | None = None
    conditions: frozenset[str] = field(default_factory=frozenset)

    @property
    def infant(self) -> bool:
        """Under three months: any fever is a red flag."""
        return self.age_months is not None and self.age_months < 3


def months_between(born: date, today: date) -> int:
    """Completed calendar months from ``born`` to ``today`` (born on the 31st: a month is complete on
    the last day of a shorter month)."""
    months = (today.year - born.year) * 12 + today.month - born.month
    if today.day < born.day:
        # Not yet the day of the month, unless today is the last day of a shorter month.
        next_day = date.fromordinal(today.toordinal() + 1)
        if next_day.month == today.month:
            months -= 1
    return max(months, 0)


def context_for(*, date_of_birth: date, conditions: list[str] | tuple[str, ...], today: date) -> TriageContext:
    """The context of a child on ``today`` (the child's local date, from the caller's clock)."""
    return TriageContext(
        age_months=months_between(date_of_birth, today),
        conditions=frozenset(str(code) for code in conditions),
    )


@dataclass(frozen=True)
class Hit:
    """A red flag: the categories found (in the order of ``CATEGORIES``) and the language the message
    seems to be written in (``en`` or ``es``)."""

    language: str
    categories: tuple[str, ...]


class _Engine:
    @cached_property
    def speller(self) -> Speller:
        literal = set()
        for source in [p for group in rules.RULES.values() for p in group]:
            # Whole words only: a stem such as "desmay" in r"desmay(?:o|ado)" is no word to repair towards.
            literal.update(re.findall(r"(?<![\\a-z])[a-z]{5,}(?![a-z\\(\[?])", source))
        return Speller(literal | set(rules.VOCABULARY_EXTRA), common_words() | set(rules.KNOWN_WORDS))


_ENGINE = _Engine()


def normalized(text: str) -> str:
    """The message as the rules see it: folded words, misspellings repaired, single spaces."""
    repair = _ENGINE.speller.repair
    return " ".join(repair(word) for word in tokens(text))


_SPANISH = frozenset(
    [
        "el",
        "la",
        "los",
        "las",
        "de",
        "del",
        "que",
        "y",
        "en",
        "un",
        "una",
        "se",
        "le",
        "lo",
        "mi",
        "su",
        "es",
        "esta",
        "estan",
        "con",
        "por",
        "para",
        "muy",
        "no",
        "tiene",
        "hijo",
        "hija",
        "bebe",
        "nino",
        "nina",
        "ya",
        "pero",
        "como",
        "cuando",
        "hace",
        "desde",
        "ahora",
        "porque",
        "tambien",
        "nada",
        "todo",
        "mas",
        "sus",
        "hay",
        "creo",
        "tengo",
        "al",
        "ha",
        "eso",
        "este",
        "son",
        "fue",
        "tuvo",
        "dio",
        "dijo",
        "otra",
        "otro",
    ]
)
_ENGLISH = frozenset(
    [
        "the",
        "an",
        "and",
        "is",
        "are",
        "was",
        "of",
        "to",
        "in",
        "my",
        "he",
        "she",
        "his",
        "her",
        "it",
        "its",
        "has",
        "have",
        "with",
        "not",
        "for",
        "on",
        "at",
        "this",
        "that",
        "what",
        "when",
        "can",
        "cant",
        "dont",
        "hes",
        "shes",
        "im",
        "been",
        "from",
        "but",
        "so",
        "just",
        "now",
        "since",
        "our",
        "we",
    ]
)


def detect_language(text: str) -> str:
    """``es`` if the message has more Spanish than English function words, else ``en``. Two languages
    and a list of their commonest words are enough for phone-length messages; a general detector
    needs far more text than a parent writes to be reliable."""
    words = tokens(text)
    spanish = sum(word in _SPANISH for word in words)
    english = sum(word in _ENGLISH for word in words)
    return "es" if spanish > english else "en"


def categories(text: str, context: TriageContext | None = None) -> tuple[str, ...]:
    """The red-flag categories of ``text`` (empty if none)."""
    words = f" {normalized(text)} "  # the rules' word boundaries are these spaces (rules.spaced)
    found = {category for category, pattern in rules.COMPILED.items() if pattern.search(words)}
    if context is not None:
        if context.infant and rules.INFANT_FEVER.search(words):
            found.add("infant_fever")
        if TYPE_1_DIABETES in context.conditions and rules.DIABETES_VOMITING.search(words):
            found.add("diabetic")
        if EPILEPSY in context.conditions:
            if rules.EPILEPSY_EPISODE.search(words):
                found.add("seizure")
            if rules.EPILEPSY_LONG.search(words):
                found.add("status_epilepticus")
    return tuple(category for category in CATEGORIES if category in found)


def check(text: str, context: TriageContext | None = None) -> Hit | None:
    """The red flags of a family message, or None."""
    found = categories(text, context)
    if not found:
        return None
    return Hit(language=detect_language(text), categories=found)
