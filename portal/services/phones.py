"""An account's phone number and its verification by a one-time code texted to it.

The services return the code once (only a keyed hash is kept) and leave the text itself to the
caller's layer, which sends it after commit through the SMS backend (``messaging.phones``): the
portal core sends nothing itself.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal import audit, ratelimit
from portal.crypto import keyring
from portal.errors import ApiError, Conflict, Invalid
from portal.models import PhoneVerification, User
from portal.phones import normalize
from portal.vocabulary import Resource

PHONE_CODE_DIGITS = 6


def _code_hash(verification_id: object, code: str) -> str:
    # Keyed (HMAC) and salted with the verification's id: a 6-digit code cannot be looked up by its hash.
    digits = "".join(code.split())
    return keyring().blind_index(f"{verification_id}:{digits}", purpose="portal.phone.code")


def _withdraw_pending(user: User, now: datetime) -> None:
    # The rows are the account's own and not audited individually: the change that withdraws them is.
    PhoneVerification.objects.filter(user=user, confirmed_at=None, withdrawn_at=None).update(withdrawn_at=now)


def phone_set(*, actor: User, phone: str) -> User:
    """Set (or, with an empty ``phone``, remove) the account's phone number, normalised to E.164.

    A different number is unverified until a code sent to it is confirmed; setting the same number
    again changes nothing. Pending codes for the old number are withdrawn.
    """
    number = normalize(phone) if phone.strip() else ""
    if number == actor.phone:
        return actor
    now = timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=actor.pk)
        user.phone = number
        user.phone_verified_at = None
        user.save(update_fields=["phone", "phone_verified_at"])
        _withdraw_pending(user, now)
        audit.record(
            actor=actor,
            action=audit.Action.UPDATE,
            entity_type=Resource.PERSON,
            entity_id=user.pk,
            reason="phone_removed" if not number else "phone_changed",
        )
    actor.phone, actor.phone_verified_at = user.phone, user.phone_verified_at
    return user


def phone_verification_start(*, actor: User) -> tuple[PhoneVerification, str]:
    """A new code for the account's current number; returns it once, for the caller to text it.

    Refused when there is no number (``phone_missing``) or it is already verified
    (``phone_already_verified``); rate-limited per account and per number, so that the portal
    cannot be used to send texts to someone else's phone over and over (not per client address:
    families behind one hospital or carrier address would block each other).
    """
    if not actor.phone:
        raise Invalid("Add a phone number first.", code="phone_missing")
    if actor.phone_verified_at is not None:
        raise Conflict("This phone number is already verified.", code="phone_already_verified")
    ratelimit.enforce(
        "phone_code_send",
        [
            f"user:{actor.pk}",
            f"phone:{keyring().blind_index(actor.phone, purpose='portal.phone.rate')}",
        ],
        settings.PORTAL_PHONE_CODE_SEND_RATE,
    )
    code = "".join(secrets.choice("0123456789") for _ in range(PHONE_CODE_DIGITS))
    now = timezone.now()
    with transaction.atomic():
        _withdraw_pending(actor, now)
        verification = PhoneVerification(
            user=actor,
            phone=actor.phone,
            created_at=now,
            expires_at=now + timedelta(minutes=settings.PORTAL_PHONE_CODE_TTL_MINUTES),
        )
        verification.code_hash = _code_hash(verification.pk, code)
        verification.save(force_insert=True)
        audit.record(
            actor=actor,
            action=audit.Action.CREATE,
            entity_type=Resource.PERSON,
            entity_id=actor.pk,
            reason="phone_code_sent",
        )
    return verification, code


def _confirm_refusal(verification: PhoneVerification | None, code: str) -> tuple[str, ApiError] | None:
    """Why ``code`` does not verify the account's number now, or None when it does."""
    now = timezone.now()
    if verification is None:
        return "no_code", Conflict(
            "No code is waiting for this number. Ask for a new code.", code="phone_code_not_requested"
        )
    if verification.expires_at <= now:
        return "expired_code", ApiError(
            "This code has expired. Ask for a new code.", code="phone_code_expired", status=410
        )
    if verification.attempts >= settings.PORTAL_PHONE_CODE_MAX_ATTEMPTS:
        return "attempts_used", Conflict(
            "Too many wrong codes. Ask for a new code.", code="phone_code_attempts_exhausted"
        )
    if not secrets.compare_digest(verification.code_hash, _code_hash(verification.pk, code)):
        return "wrong_code", Invalid(
            "This code is not right. Check the text message and try again.", code="phone_code_invalid"
        )
    return None


def phone_verification_confirm(*, actor: User, code: str, client_address: str = "") -> User:
    """Verify the account's number with the code texted to it.

    A wrong code counts against the code's tries (the count commits, the refusal is audited); once
    they are used up, even the right code is refused until a new one is sent.
    """
    ratelimit.enforce(
        "phone_code_confirm", [f"user:{actor.pk}", f"ip:{client_address}"], settings.PORTAL_PHONE_CODE_CONFIRM_RATE
    )
    now = timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=actor.pk)
        verification = (
            PhoneVerification.objects.select_for_update()
            .filter(user=user, phone=user.phone, confirmed_at=None, withdrawn_at=None)
            .order_by("-created_at")
            .first()
            if user.phone
            else None
        )
        refusal = _confirm_refusal(verification, code)
        if refusal is None:
            assert verification is not None
            verification.confirmed_at = now
            verification.save(update_fields=["confirmed_at"])
            user.phone_verified_at = now
            user.save(update_fields=["phone_verified_at"])
            audit.record(
                actor=actor,
                action=audit.Action.UPDATE,
                entity_type=Resource.PERSON,
                entity_id=user.pk,
                reason="phone_verified",
            )
            actor.phone_verified_at = now
            return user
        reason, error = refusal
        if verification is not None and reason == "wrong_code":
            verification.attempts += 1
            verification.save(update_fields=["attempts"])
        audit.record(
            actor=actor,
            action=audit.Action.UPDATE,
            entity_type=Resource.PERSON,
            entity_id=user.pk,
            outcome=audit.Outcome.FAILURE,
            reason=f"phone_code_{reason}",
        )
    raise error
