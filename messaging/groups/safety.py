"""Checks a post before it is saved: nothing that identifies a family may reach the group.

Refused: phone numbers, email addresses, numbers that look like medical record numbers, and the names
of the poster's own children (for a clinician, of the children on their care teams), however they are
spelled: with separators between digits, lookalike letters from other scripts, invisible characters
or letters spaced out. The reason names what to remove, never the matched text itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from messaging.groups import normalise

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "MRN 123", "medical record number: A-12345", "record #12345"
MRN_LABELLED = re.compile(
    r"\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?))?|record\s*(?:number|no\.?|#))"
    r"(?:\s*(?:is|was|=|:|#|-))*\s*[A-Z0-9-]*\d",
    re.IGNORECASE,
)
# Dates and times are not phone numbers: 2026-05-17, 17/05/2026, 17.5.26, 10:30; but a date-shaped
# piece of a longer run of separated digits ("5-5-5-0-1-0-...") is not a date.
DATE_LIKE = re.compile(
    r"(?<!\d[-/.])\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))\b(?![-/.]\d)"
    r"|\b\d{1,2}:\d{2}\b"
)
PHONE_DIGITS = range(7, 16)
MRN_MIN_DIGITS = 6

LABELS = {
    "phone_number": "a phone number",
    "email_address": "an email address",
    "medical_record_number": "a medical record number",
    "child_name": "your child's name",
}


@dataclass(frozen=True)
class Finding:
    codes: tuple[str, ...]

    @property
    def message(self) -> str:
        what = ", ".join(LABELS[code] for code in self.codes)
        return f"To keep families safe, please remove {what} before posting."


def _name_tokens(names: Iterable[str]) -> set[str]:
    """Each name whole and each part of two or more letters, as name keys (see ``normalise``)."""
    tokens = set()
    for name in names:
        cleaned = name.strip()
        if not cleaned:
            continue
        words = _words(cleaned)
        tokens.add(" ".join(words))
        tokens.add("".join(words))  # "A d a C o o k" joins into one word
        tokens.update(word for word in _words(cleaned) if len(word) >= 2)
    tokens.discard("")
    return tokens


def _words(text: str) -> list[str]:
    """The words of ``text`` as name keys: skeleton, case-folded, ``i``/``l``/``1`` folded."""
    key_text = normalise.skeleton(normalise.join_spaced_letters(text)).replace("l", "i")
    return re.findall(r"[^\W\d_]+(?:['-][^\W\d_]+)*", key_text)


def check(text: str, *, child_names: Iterable[str] = ()) -> Finding | None:
    """The identifiers ``text`` contains, or None when it may be posted.

    Every check reads a normalised form (``messaging.groups.normalise``): NFKC without invisible characters,
    lookalike letters mapped to their TR39 skeleton, separators between digits ignored, spaced-out
    letters joined. The message names what to remove, never the matched text.
    """
    codes: list[str] = []
    addresses = normalise.address_view(text)
    if EMAIL.search(addresses):
        codes.append("email_address")
    labelled = normalise.latin(normalise.join_spaced_letters(normalise.clean(EMAIL.sub(" ", addresses))))
    if MRN_LABELLED.search(labelled):
        codes.append("medical_record_number")
    numbers = DATE_LIKE.sub(" ; ", MRN_LABELLED.sub(" ; ", labelled))
    runs = [len(run) for run in normalise.digit_runs(numbers)]
    if any(length in PHONE_DIGITS for length in runs):
        codes.append("phone_number")
    elif any(length >= MRN_MIN_DIGITS for length in runs) and "medical_record_number" not in codes:
        codes.append("medical_record_number")
    words = _words(text)
    joined = " ".join(words)
    for token in _name_tokens(child_names):
        if (" " in token and f" {token} " in f" {joined} ") or token in words:
            codes.append("child_name")
            break
    return Finding(tuple(codes)) if codes else None
