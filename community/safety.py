"""Checks a post before it is saved: nothing that identifies a family may reach the group.

Refused: phone numbers, email addresses, numbers that look like medical record numbers, and the names
of the poster's own children (for a clinician, of the children on their care teams). The reason names
what to remove, never the matched text itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "MRN 123", "medical record number: A-12345", "record #12345"
MRN_LABELLED = re.compile(
    r"\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?))?|record\s*(?:number|no\.?|#))"
    r"(?:\s*(?:is|was|=|:|#|-))*\s*[A-Z0-9-]*\d",
    re.IGNORECASE,
)
# Dates and times are not phone numbers: 2026-05-17, 17/05/2026, 10:30.
DATE_LIKE = re.compile(r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b|\b\d{1,2}:\d{2}\b")
# 7 to 15 digits, optionally with +, spaces, dots, dashes or brackets between them.
PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?![\w])")
LONG_NUMBER = re.compile(r"\b\d{6,}\b")

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
    tokens = set()
    for name in names:
        cleaned = name.strip()
        if not cleaned:
            continue
        tokens.add(cleaned.casefold())
        tokens.update(part.casefold() for part in re.split(r"[\s-]+", cleaned) if len(part) >= 2)
    return tokens


def check(text: str, *, child_names: Iterable[str] = ()) -> Finding | None:
    """The identifiers ``text`` contains, or None when it may be posted."""
    codes: list[str] = []
    if EMAIL.search(text):
        codes.append("email_address")
    without_emails = EMAIL.sub(" ", text)
    if MRN_LABELLED.search(without_emails):
        codes.append("medical_record_number")
    without_dates = DATE_LIKE.sub(" ", MRN_LABELLED.sub(" ", without_emails))
    if PHONE.search(without_dates):
        codes.append("phone_number")
    elif LONG_NUMBER.search(without_dates) and "medical_record_number" not in codes:
        codes.append("medical_record_number")
    words = {word.casefold() for word in re.findall(r"[^\W\d_]+(?:['-][^\W\d_]+)*", text)}
    folded = text.casefold()
    for token in _name_tokens(child_names):
        if (" " in token and token in folded) or token in words:
            codes.append("child_name")
            break
    return Finding(tuple(codes)) if codes else None
