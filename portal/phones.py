"""Phone numbers: parsed and normalised to E.164 (``+15550100201``) with ``phonenumbers``, and
masked for anything a person other than the number's owner might read."""

from __future__ import annotations

import phonenumbers
from django.conf import settings

from portal.errors import Invalid

# E.164 allows 15 digits after the "+"; longer input is refused before parsing.
MAX_INPUT_LENGTH = 32


def normalize(raw: str, *, region: str | None = None) -> str:
    """The E.164 form of ``raw`` (national numbers read in ``region``, by default the hospital's).

    Raises ``Invalid`` (``invalid_phone``) for anything that is not a possible, valid number; the
    message never echoes the input.
    """
    text = raw.strip()
    if not text or len(text) > MAX_INPUT_LENGTH:
        raise Invalid("Enter a phone number, with its country code if it is not a local number.", code="invalid_phone")
    try:
        number = phonenumbers.parse(text, region or settings.PORTAL_PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise Invalid("This is not a valid phone number. Check it, with its country code.", code="invalid_phone")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_or_none(raw: str, *, region: str | None = None) -> str | None:
    """As ``normalize``, None instead of an error (numbers read from another system)."""
    try:
        return normalize(raw, region=region)
    except Invalid:
        return None


def masked(phone: str) -> str:
    """The last two digits only (``•••01``): enough to tell one's own numbers apart."""
    return f"•••{phone[-2:]}" if phone else ""
