"""Invitations: a single-use code bound to the address it is sent to, redeemed into a guardian link."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit, events, ratelimit
from portal.access import Capability, ChildAccess, holds_staff_role, live_link_q
from portal.crypto import keyring
from portal.errors import ApiError, Conflict, Invalid, NotFound
from portal.models import Child, GuardianLink, Invitation, User
from portal.phones import normalize as normalize_phone
from portal.vocabulary import Resource

# No 0/O, 1/I/L: codes are read aloud over the phone and typed on phones.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12


def _new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def _code_hash(code: str) -> str:
    normalized = code.replace("-", "").replace(" ", "").upper()
    return keyring().blind_index(normalized, purpose="portal.invitation.code")


def _owns_address(user: User, email: str, *, verified_only: bool) -> bool:
    addresses = EmailAddress.objects.filter(user=user, email__iexact=email)
    if verified_only:
        return addresses.filter(verified=True).exists()
    return addresses.exists() or user.email.lower() == email.lower()


def invitation_create(
    *,
    actor: User,
    access: ChildAccess,
    relationship: str,
    recipient_email: str,
    scope: str = GuardianLink.Scope.FULL,
    court_appointed: bool = False,
    expires_in_hours: int | None = None,
) -> tuple[Invitation, str]:
    """Create an ``invited`` link and its single-use code, bound to the address it is sent to.

    Returns the code once; only its hash is kept. Only an account that has verified
    ``recipient_email`` may redeem it, and never the creator: staff cannot invite themselves.
    """
    access.require(Capability.MANAGE)
    recipient_email = recipient_email.strip().lower()
    if _owns_address(actor, recipient_email, verified_only=False):
        raise Invalid(
            "You cannot invite yourself. Another staff member must invite you, and a second one approve it.",
            code="invitation_to_self",
        )
    ratelimit.enforce("invitation_create", [str(actor.pk)], settings.PORTAL_INVITATION_CREATE_RATE)
    return _issue(
        actor=actor,
        child=access.child,
        relationship=relationship,
        recipient_email=recipient_email,
        scope=scope,
        court_appointed=court_appointed,
        hours=expires_in_hours or settings.PORTAL_INVITATION_TTL_HOURS,
    )


def _issue(
    *,
    actor: User,
    child: Child,
    relationship: str,
    recipient_email: str,
    scope: str,
    court_appointed: bool,
    hours: int,
    reason: str = "",
    recipient_phone: str = "",
) -> tuple[Invitation, str]:
    """The ``invited`` link, its invitation (the code's hash only) and the audit row, in one transaction."""
    code = _new_code()
    now = timezone.now()
    with transaction.atomic():
        link = GuardianLink.objects.create(
            child=child,
            relationship=relationship,
            scope=scope,
            court_appointed=court_appointed,
            status=GuardianLink.Status.INVITED,
            granted_by=actor,
            granted_at=now,
        )
        invitation = Invitation.objects.create(
            link=link,
            code_hash=_code_hash(code),
            recipient_email=recipient_email,
            recipient_phone=recipient_phone,
            created_by=actor,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
        audit.record(
            actor=actor,
            action=audit.Action.CREATE,
            entity_type=Resource.INVITATION,
            entity_id=invitation.pk,
            child_id=child.pk,
            reason=reason,
        )
    return invitation, code


def invitation_create_for_system(
    *,
    actor: User,
    child: Child,
    relationship: str,
    reason: str,
    recipient_email: str = "",
    recipient_phone: str = "",
    scope: str = GuardianLink.Scope.FULL,
    expires_in_hours: int | None = None,
) -> tuple[Invitation, str]:
    """An invitation a trusted system issues (the EHR import inviting the family the EHR lists).

    As ``invitation_create``, it is bound to its recipient: to ``recipient_email`` when there is one
    (only an account that verified that address redeems it), otherwise to ``recipient_phone``
    (normalised to E.164; only an account that verified that number redeems it). Single-use,
    expiring and audited (with ``reason``); it is not counted against a per-person create rate, since
    a system issues one batch of them. ``actor`` must be a system account, one that can never sign in
    (inactive, no usable password): a person's invitations go through ``invitation_create`` and its
    access check and rate. Returns the code once; the caller sends it.
    """
    if actor.is_active or actor.has_usable_password():
        raise Invalid("Only a system account issues system invitations.", code="not_a_system_account")
    recipient_email = recipient_email.strip().lower()
    if recipient_email:
        if "@" not in recipient_email:
            raise Invalid("The invitation needs the recipient's email address.", code="invalid_email")
        recipient_phone = ""
    elif recipient_phone.strip():
        recipient_phone = normalize_phone(recipient_phone)
    else:
        raise Invalid("The invitation needs the recipient's email address or phone number.", code="no_recipient")
    return _issue(
        actor=actor,
        child=child,
        relationship=relationship,
        recipient_email=recipient_email,
        recipient_phone=recipient_phone,
        scope=scope,
        court_appointed=False,
        hours=expires_in_hours or settings.PORTAL_INVITATION_TTL_HOURS,
        reason=reason,
    )


def _recipient_refusal(actor: User, invitation: Invitation) -> tuple[str, ApiError] | None:
    """Whether ``actor`` is the invitation's recipient: owns its verified email address or phone."""
    if invitation.recipient_email:
        if _owns_address(actor, invitation.recipient_email, verified_only=True):
            return None
        return "wrong_recipient", ApiError(
            "This invitation was sent to another email address. Sign in with the account that has verified "
            "that address, or ask the care team for a new invitation.",
            code="invitation_wrong_recipient",
            status=403,
        )
    if invitation.recipient_phone:
        # Read again under the transaction: the number may have changed since the request loaded it.
        actor = User.objects.only("phone", "phone_verified_at").get(pk=actor.pk)
        if actor.phone_verified_at is None or not actor.phone:
            return "phone_not_verified", ApiError(
                "This invitation was sent by text message. Add and verify the phone number it was sent to "
                "in your account, then enter the code again.",
                code="invitation_phone_not_verified",
                status=403,
            )
        if actor.phone == invitation.recipient_phone:
            return None
        return "wrong_recipient", ApiError(
            "This invitation was sent to another phone number. Verify the number it was sent to in your "
            "account, or ask the care team for a new invitation.",
            code="invitation_wrong_recipient",
            status=403,
        )
    return "wrong_recipient", ApiError(
        "This invitation was sent to another email address. Sign in with the account that has verified "
        "that address, or ask the care team for a new invitation.",
        code="invitation_wrong_recipient",
        status=403,
    )


def _redeem_refusal(actor: User, invitation: Invitation | None, now: datetime) -> tuple[str, ApiError] | None:
    """Why this invitation cannot be redeemed by ``actor`` now, or None if it can."""
    if invitation is None:
        return "unknown_code", NotFound(
            "This invitation code is not valid. Check it, or ask the care team for a new one.",
            code="invitation_not_found",
        )
    link = invitation.link
    if invitation.redeemed_at is not None or link.status != GuardianLink.Status.INVITED:
        return "used_code", ApiError(
            "This invitation code has already been used or withdrawn. Ask the care team for a new one.",
            code="invitation_used",
            status=409,
        )
    if invitation.expires_at <= now:
        return "expired_code", ApiError(
            "This invitation code has expired. Ask the care team for a new one.", code="invitation_expired", status=410
        )
    if not link.court_appointed and now >= link.child.adult_from:
        return "adult_patient", Invalid(
            "This patient is an adult; a guardian link needs a court-appointed guardianship.", code="patient_is_adult"
        )
    if actor.pk in (invitation.created_by_id, link.granted_by_id):
        return "own_invitation", ApiError(
            "You created this invitation: only the person it was sent to may redeem it.",
            code="invitation_own",
            status=403,
        )
    wrong = _recipient_refusal(actor, invitation)
    if wrong is not None:
        return wrong
    waiting = Q(status=GuardianLink.Status.PENDING_APPROVAL)
    if GuardianLink.objects.filter(live_link_q(now) | waiting, guardian=actor, child=link.child).exists():
        return "already_linked", Conflict("You are already linked to this child.", code="already_linked")
    return None


def invitation_redeem(*, actor: User, code: str, client_address: str = "") -> GuardianLink:
    """The invitation's recipient (signed in, with the address or phone number verified) takes up the link.

    An account with a staff role gets a ``pending_approval`` link, no access until a second staff
    member approves it (``link_approve``). A refusal is audited after the transaction, so the audit
    row outlives the rollback.
    """
    ratelimit.enforce(
        "invitation_redeem", [f"user:{actor.pk}", f"ip:{client_address}"], settings.PORTAL_INVITATION_REDEEM_RATE
    )
    now = timezone.now()
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update(of=("self",))
            .select_related("link", "link__child")
            .filter(code_hash=_code_hash(code))
            .first()
        )
        refusal = _redeem_refusal(actor, invitation, now)
        if refusal is None:
            assert invitation is not None
            link = invitation.link
            staff = holds_staff_role(actor)
            link.guardian = actor
            link.status = GuardianLink.Status.PENDING_APPROVAL if staff else GuardianLink.Status.ACTIVE
            link.valid_from = now
            link.save(update_fields=["guardian", "status", "valid_from", "updated_at"])
            invitation.redeemed_by = actor
            invitation.redeemed_at = now
            invitation.save(update_fields=["redeemed_by", "redeemed_at"])
            audit.record(
                actor=actor,
                action=audit.Action.UPDATE,
                entity_type=Resource.RELATED_PERSON,
                entity_id=link.pk,
                child_id=link.child_id,
                reason="invitation_redeemed_pending_approval" if staff else "invitation_redeemed",
            )
            if not staff:
                events.access_changed(user_id=actor.pk)
            return link
    reason, error = refusal
    audit.record(
        actor=actor,
        action=audit.Action.UPDATE,
        entity_type=Resource.INVITATION,
        entity_id=invitation.pk if invitation else None,
        outcome=audit.Outcome.FAILURE,
        reason=reason,
    )
    raise error
