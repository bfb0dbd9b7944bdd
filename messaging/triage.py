"""Red-flag triage of family messages, in several languages.

Each language lists phrases (matched as whole words, ignoring case and accents) and optional regular
expressions (for readings such as "blood sugar 450"). ``PORTAL_TRIAGE_RED_FLAGS`` replaces the
defaults below with the same shape: ``{"en": {"phrases": [...], "patterns": [...]}, ...}``.
Only the fact of a hit and its language are kept; the matched words are never logged or stored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

_READING = r"\b(blood sugar|glucose|bg)( level)?( is| was| of| reading| reads| at)?"

DEFAULT_RED_FLAGS: dict[str, dict[str, list[str]]] = {
    "en": {
        "phrases": [
            "not breathing",
            "can't breathe",
            "cannot breathe",
            "stopped breathing",
            "trouble breathing",
            "seizure",
            "seizing",
            "convulsing",
            "unconscious",
            "unresponsive",
            "won't wake up",
            "passed out",
            "blue lips",
            "lips are blue",
            "turning blue",
            "choking",
            "anaphylaxis",
            "overdose",
            "suicidal",
            "very high blood sugar",
            "very low blood sugar",
            "blood sugar is very high",
            "blood sugar is very low",
            "diabetic ketoacidosis",
        ],
        "patterns": [
            # a reading of 400 mg/dL or more, or under 40
            _READING + r"( over| above)? ([4-9]\d\d|[1-9]\d{3})\b",
            _READING + r"( under| below)? ([1-3]\d)\b",
            r"\bmeter (says|reads|shows) (hi|lo)\b",
        ],
    },
    "es": {
        "phrases": [
            "no respira",
            "no puede respirar",
            "dejo de respirar",
            "convulsion",
            "convulsiones",
            "convulsionando",
            "inconsciente",
            "no responde",
            "no despierta",
            "se desmayo",
            "labios azules",
            "labios morados",
            "se esta poniendo azul",
            "se esta ahogando",
            "anafilaxia",
            "sobredosis",
            "azucar muy alta",
            "azucar muy baja",
            "glucosa muy alta",
            "glucosa muy baja",
            "cetoacidosis",
        ],
        "patterns": [
            r"\b(azucar|glucosa)( en sangre)?( es| esta| estaba| de| en)*( mas de| sobre| menos de)? "
            r"([4-9]\d\d|[1-9]\d{3}|[1-3]\d)\b"
        ],
    },
}

EMERGENCY_REPLY = {
    "en": (
        "Automatic reply: if this is an emergency, call {number} now or go to the nearest emergency "
        "department. Messages are not a way to get emergency help. We have marked your message urgent "
        "and alerted the on-call clinician."
    ),
    "es": (
        "Respuesta automática: si es una emergencia, llame ahora al {number} o vaya a la sala de "
        "urgencias más cercana. Los mensajes no sirven para pedir ayuda urgente. Hemos marcado su "
        "mensaje como urgente y avisado al médico de guardia."
    ),
}

AFTER_HOURS_REPLY = {
    "en": (
        "Automatic reply: the care team is outside business hours. You can expect a reply by {when}. "
        "If this is an emergency, call {number}."
    ),
    "es": (
        "Respuesta automática: el equipo médico está fuera de su horario. Recibirá una respuesta antes "
        "del {when}. Si es una emergencia, llame al {number}."
    ),
}


def fold(text: str) -> str:
    """Lower case without accents, apostrophes unified, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


@dataclass(frozen=True)
class Hit:
    language: str


@lru_cache(maxsize=4)
def _compiled(config_key: str) -> list[tuple[str, re.Pattern[str]]]:
    config: dict[str, Any] = getattr(settings, "PORTAL_TRIAGE_RED_FLAGS", None) or DEFAULT_RED_FLAGS
    compiled = []
    for language, entry in config.items():
        parts = [r"(?<!\w)" + re.escape(fold(phrase)) + r"(?!\w)" for phrase in entry.get("phrases", [])]
        parts += [f"(?:{pattern})" for pattern in entry.get("patterns", [])]
        if parts:
            compiled.append((language, re.compile("|".join(parts))))
    return compiled


def check(text: str) -> Hit | None:
    """The first language whose red flags ``text`` contains, or None."""
    config = getattr(settings, "PORTAL_TRIAGE_RED_FLAGS", None) or DEFAULT_RED_FLAGS
    folded = fold(text)
    for language, pattern in _compiled(repr(config)):
        if pattern.search(folded):
            return Hit(language=language)
    return None


def _language(preferred: str) -> str:
    return preferred if preferred in EMERGENCY_REPLY else "en"


def emergency_reply(language: str, number: str) -> str:
    return EMERGENCY_REPLY[_language(language)].format(number=number)


def after_hours_reply(language: str, number: str, when: str) -> str:
    return AFTER_HOURS_REPLY[_language(language)].format(number=number, when=when)
