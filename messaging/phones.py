"""One-time codes by text message: verifying an account's phone, and invitations texted to the phone
number the EHR lists for a guardian.

The portal core makes the codes (``portal.services``) and hands them back once; this module words
and sends them after commit, through the configured SMS backend. The texts are fixed and carry no
PHI: no child, no condition, no name; only that the portal sent a code, and the code.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from messaging import sms
from portal import services
from portal.models import User

logger = logging.getLogger(__name__)

# The languages these texts are written in (messaging/locale); any other is sent the hospital's default.
TEXT_LANGUAGES = ("en", "es")

TEXTS: dict[str, Promise] = {
    "phone_code": _(
        "Family care portal: your verification code is %(code)s. It expires in %(minutes)s minutes. "
        "Do not share it with anyone."
    ),
    "invitation": _(
        "The hospital has invited you to its family care portal. Your invitation code: %(code)s. "
        "Create an account (or sign in), add and verify this phone number, then enter the code. "
        "It works once and expires in %(hours)s hours."
    ),
}


def text(kind: str, language: str, **values: object) -> str:
    """The text of ``kind`` in ``language`` (English where there is no catalogue for it)."""
    with translation.override(language):
        return str(TEXTS[kind]) % values


def _send(to: str, body: str, kind: str, reference: uuid.UUID) -> None:
    """Send now; a failure is logged with the row's id only (never the number or the text)."""
    try:
        sms.backend().send(to, body)
    except (sms.SmsError, OSError):
        logger.warning("%s text not sent", kind, extra={"reference": str(reference)})


def phone_code_send(*, actor: User) -> datetime:
    """Send a new verification code to the account's number (after commit); returns when it expires."""
    with transaction.atomic():
        verification, code = services.phone_verification_start(actor=actor)
        body = text("phone_code", actor.preferred_language, code=code, minutes=settings.PORTAL_PHONE_CODE_TTL_MINUTES)
        phone, reference = verification.phone, verification.pk
        transaction.on_commit(lambda: _send(phone, body, "phone_code", reference))
    return verification.expires_at


def invitation_text_send(*, phone: str, code: str, hours: int, language: str, invitation_id: uuid.UUID) -> None:
    """Text an invitation code to ``phone`` once the transaction that issued it commits."""
    body = text("invitation", language, code=code, hours=hours)
    transaction.on_commit(lambda: _send(phone, body, "invitation", invitation_id))
