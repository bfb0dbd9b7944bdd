"""Writes on accounts and relationships. Each service is atomic, takes the acting user, checks what
it needs through the access policy and writes its own audit rows."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit, ratelimit, realtime
from portal.access import Capability, ChildAccess, active_clinician, holds_staff_role, live_link_q, staff_accounts
from portal.crypto import keyring
from portal.errors import ApiError, Conflict, Invalid, NotFound
from portal.models import CareTeamMembership, Child, Department, GuardianLink, Invitation, User
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


def child_create(
    *,
    actor: User | None,
    name: str,
    mrn: str,
    date_of_birth: Any,
    sex: str = Child.Sex.UNKNOWN,
    time_zone: str = "UTC",
    conditions: list[str] | None = None,
) -> Child:
    """Register a patient (staff tools and the demo loader; EHR import later)."""
    child = Child(
        name=name, mrn=mrn, date_of_birth=date_of_birth, sex=sex, time_zone=time_zone, conditions=conditions or []
    )
    child.compute_age_boundaries()
    child.full_clean(exclude=["mrn_index", "adolescent_from", "adult_from"])
    with transaction.atomic():
        child.save(force_insert=True)
        audit.record(
            actor=actor, action=audit.Action.CREATE, entity_type=Resource.PATIENT, entity_id=child.pk, child_id=child.pk
        )
    return child


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
    hours = expires_in_hours or settings.PORTAL_INVITATION_TTL_HOURS
    code = _new_code()
    now = timezone.now()
    with transaction.atomic():
        link = GuardianLink.objects.create(
            child=access.child,
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
            created_by=actor,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
        audit.record(
            actor=actor,
            action=audit.Action.CREATE,
            entity_type=Resource.INVITATION,
            entity_id=invitation.pk,
            child_id=access.child.pk,
        )
    return invitation, code


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
    if not invitation.recipient_email or not _owns_address(actor, invitation.recipient_email, verified_only=True):
        return "wrong_recipient", ApiError(
            "This invitation was sent to another email address. Sign in with the account that has verified "
            "that address, or ask the care team for a new invitation.",
            code="invitation_wrong_recipient",
            status=403,
        )
    waiting = Q(status=GuardianLink.Status.PENDING_APPROVAL)
    if GuardianLink.objects.filter(live_link_q(now) | waiting, guardian=actor, child=link.child).exists():
        return "already_linked", Conflict("You are already linked to this child.", code="already_linked")
    return None


def invitation_redeem(*, actor: User, code: str, client_address: str = "") -> GuardianLink:
    """The invitation's recipient (signed in, with the address verified) takes up the link.

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
            link.save(update_fields=["guardian", "status", "valid_from"])
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
                realtime.access_changed(user_id=actor.pk)
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


def _link_of(access: ChildAccess, link_id: uuid.UUID, *, lock: bool = False) -> GuardianLink:
    queryset = GuardianLink.objects.select_related("child", "guardian")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    link = queryset.filter(pk=link_id, child=access.child).first()
    if link is None:
        raise NotFound("No such guardian link.")
    return link


def link_approve(*, actor: User, access: ChildAccess, link_id: uuid.UUID) -> GuardianLink:
    """The second staff member approves a guardian link held by an account with a staff role.

    The approver holds ``manage_portal`` and is neither the link's holder nor the invitation's
    creator; a refusal is audited (after the transaction, so it outlives the rollback).
    """
    access.require(Capability.APPROVE)
    now = timezone.now()
    with transaction.atomic():
        link = _link_of(access, link_id, lock=True)
        if link.status != GuardianLink.Status.PENDING_APPROVAL:
            raise Conflict("This link is not waiting for approval.", code="not_pending_approval")
        creator_id = Invitation.objects.filter(link=link).values_list("created_by_id", flat=True).first()
        refused = actor.pk in {link.guardian_id, link.granted_by_id, creator_id}
        if not refused:
            link.status = GuardianLink.Status.ACTIVE
            link.approved_by = actor
            link.approved_at = now
            link.valid_from = now
            link.save(update_fields=["status", "approved_by", "approved_at", "valid_from"])
            audit.record(
                actor=actor,
                action=audit.Action.UPDATE,
                entity_type=Resource.RELATED_PERSON,
                entity_id=link.pk,
                child_id=link.child_id,
                reason="staff_link_approved",
            )
            if link.guardian_id:
                realtime.access_changed(user_id=link.guardian_id)
            return link
    audit.record(
        actor=actor,
        action=audit.Action.UPDATE,
        entity_type=Resource.RELATED_PERSON,
        entity_id=link.pk,
        child_id=link.child_id,
        outcome=audit.Outcome.DENIED,
        reason="second_person_required",
    )
    raise ApiError(
        "A staff member's guardian link needs a second person: neither its holder nor the staff member "
        "who made the invitation may approve it.",
        code="second_person_required",
        status=403,
    )


def _link_changed(*, actor: User | None, link: GuardianLink, reason: str) -> None:
    """Audit a change of a guardian link and tell its holder's sockets to re-check their access at once
    (a narrowed or ended link must stop live events). Call inside the transaction that changed it."""
    audit.record(
        actor=actor,
        action=audit.Action.UPDATE,
        entity_type=Resource.RELATED_PERSON,
        entity_id=link.pk,
        child_id=link.child_id,
        reason=reason,
    )
    if link.guardian_id:
        realtime.access_revoked(user_id=link.guardian_id)


def link_revoke(*, actor: User, access: ChildAccess, link_id: uuid.UUID) -> GuardianLink:
    """End a guardian's access (or withdraw an unredeemed invitation). Open sockets are told at once."""
    access.require(Capability.MANAGE)
    with transaction.atomic():
        link = _link_of(access, link_id, lock=True)
        if link.status in (GuardianLink.Status.REVOKED, GuardianLink.Status.EXPIRED):
            raise Conflict("This link has already ended.", code="link_ended")
        link.status = GuardianLink.Status.REVOKED
        link.revoked_by = actor
        link.revoked_at = timezone.now()
        link.save(update_fields=["status", "revoked_by", "revoked_at"])
        _link_changed(actor=actor, link=link, reason="revoked")
    return link


def link_update(
    *,
    actor: User,
    access: ChildAccess,
    link_id: uuid.UUID,
    scope: str | None = None,
    adolescent_exception: bool | None = None,
    court_appointed: bool | None = None,
    valid_until: datetime | None = None,
) -> GuardianLink:
    """Staff change a link's scope, record an adolescent exception or a court appointment, or set an end."""
    access.require(Capability.MANAGE)
    changes = {
        "scope": scope,
        "adolescent_exception": adolescent_exception,
        "court_appointed": court_appointed,
        "valid_until": valid_until,
    }
    changes = {name: value for name, value in changes.items() if value is not None}
    if not changes:
        raise Invalid("Nothing to change.", code="no_changes")
    with transaction.atomic():
        link = _link_of(access, link_id, lock=True)
        if link.status in (GuardianLink.Status.REVOKED, GuardianLink.Status.EXPIRED):
            raise Conflict("This link has already ended.", code="link_ended")
        for name, value in changes.items():
            setattr(link, name, value)
        link.save(update_fields=list(changes))
        _link_changed(actor=actor, link=link, reason="changed:" + ",".join(sorted(changes)))
    return link


def care_team_add(
    *,
    actor: User,
    access: ChildAccess,
    clinician_id: uuid.UUID,
    role: str,
    department_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CareTeamMembership:
    """Put a clinician (someone working in a department) on the child's care team."""
    access.require(Capability.MANAGE)
    clinician = active_clinician(clinician_id)
    department = None
    if department_id is not None:
        department = Department.objects.filter(pk=department_id).first()
        if department is None:
            raise Invalid("Unknown department.", code="unknown_department")
    begin = start or timezone.now()
    if end is not None and end <= begin:
        raise Invalid("The end must come after the start.", code="invalid_period")
    with transaction.atomic():
        membership = CareTeamMembership.objects.create(
            child=access.child,
            clinician=clinician,
            department=department,
            role=role,
            start=begin,
            end=end,
            added_by=actor,
        )
        audit.record(
            actor=actor,
            action=audit.Action.CREATE,
            entity_type=Resource.CARE_TEAM,
            entity_id=membership.pk,
            child_id=access.child.pk,
        )
        realtime.access_changed(user_id=clinician.pk)
    return membership


def care_team_end(*, actor: User, access: ChildAccess, membership_id: uuid.UUID) -> CareTeamMembership:
    """End a clinician's care-team membership now; their access to the child ends with it."""
    access.require(Capability.MANAGE)
    now = timezone.now()
    with transaction.atomic():
        membership = CareTeamMembership.objects.select_for_update().filter(pk=membership_id, child=access.child).first()
        if membership is None:
            raise NotFound("No such care-team member.")
        if membership.end is not None and membership.end <= now:
            raise Conflict("This membership has already ended.", code="membership_ended")
        membership.end = now
        membership.save(update_fields=["end"])
        audit.record(
            actor=actor,
            action=audit.Action.DELETE,
            entity_type=Resource.CARE_TEAM,
            entity_id=membership.pk,
            child_id=access.child.pk,
        )
        realtime.access_revoked(user_id=membership.clinician_id)
    return membership


def links_expire(*, now: datetime | None = None) -> int:
    """Persist what the access policy already enforces: links past their end or the adult birthday,
    and invitations past their expiry, become ``expired``. Returns how many changed."""
    moment = now or timezone.now()

    ended = GuardianLink.objects.filter(
        Q(status=GuardianLink.Status.ACTIVE, valid_until__lte=moment)
        | Q(status=GuardianLink.Status.ACTIVE, court_appointed=False, child__adult_from__lte=moment)
        | Q(status=GuardianLink.Status.INVITED, invitation__expires_at__lte=moment)
    )
    with transaction.atomic():
        rows = list(ended.select_for_update(of=("self",)).values_list("pk", "child_id", "guardian_id"))
        GuardianLink.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(status=GuardianLink.Status.EXPIRED)
        audit.record_many(
            [
                audit.Entry(
                    action=audit.Action.UPDATE,
                    entity_type=Resource.RELATED_PERSON,
                    entity_id=pk,
                    child_id=child_id,
                    reason="expired",
                )
                for pk, child_id, _ in rows
            ],
            actor=None,
        )
        for guardian_id in {guardian for _, _, guardian in rows if guardian}:
            realtime.access_revoked(user_id=guardian_id)
    return len(rows)


@dataclass(frozen=True)
class LinkBreach:
    link_id: uuid.UUID
    child_id: uuid.UUID
    guardian_id: uuid.UUID
    status: str
    reasons: tuple[str, ...]


def link_breaches() -> list[LinkBreach]:
    """Live or waiting links that break the invitation and staff-as-parent rules:

    - ``staff_unapproved``: the holder has a staff role and no second staff member approved the link;
    - ``redeemed_by_creator``: the holder made the invitation (or granted the link) themselves;
    - ``recipient_not_verified``: the invitation names no address, or one the holder has not verified.

    A fixed number of queries whatever the number of links.
    """
    links = list(
        GuardianLink.objects.filter(status=GuardianLink.Status.ACTIVE, guardian__isnull=False)
        .select_related("invitation")
        .order_by("granted_at", "pk")
    )
    guardian_ids = {link.guardian_id for link in links}
    staff = set(staff_accounts().filter(pk__in=guardian_ids).values_list("pk", flat=True))
    verified = {
        (user_id, email.lower())
        for user_id, email in EmailAddress.objects.filter(user_id__in=guardian_ids, verified=True).values_list(
            "user_id", "email"
        )
    }
    found = []
    for link in links:
        assert link.guardian_id is not None
        reasons = []
        if link.guardian_id in staff and link.approved_at is None:
            reasons.append("staff_unapproved")
        invitation = getattr(link, "invitation", None)
        if link.granted_by_id == link.guardian_id or (
            invitation is not None and invitation.created_by_id == link.guardian_id
        ):
            reasons.append("redeemed_by_creator")
        if invitation is not None and (link.guardian_id, invitation.recipient_email.lower()) not in verified:
            reasons.append("recipient_not_verified")
        if reasons:
            found.append(LinkBreach(link.pk, link.child_id, link.guardian_id, link.status, tuple(reasons)))
    return found


def link_suspend_for_approval(*, link_id: uuid.UUID) -> bool:
    """Send an active staff member's link back to ``pending_approval`` (the guardian-link report's
    ``--suspend``); audited, and the holder's sockets are told at once. Returns whether it changed."""
    with transaction.atomic():
        link = GuardianLink.objects.select_for_update().filter(pk=link_id, status=GuardianLink.Status.ACTIVE).first()
        if link is None:
            return False
        link.status = GuardianLink.Status.PENDING_APPROVAL
        link.approved_by = None
        link.approved_at = None
        link.save(update_fields=["status", "approved_by", "approved_at"])
        _link_changed(actor=None, link=link, reason="suspended_for_approval")
    return True


def user_language_set(*, actor: User, language: str) -> User:
    """Set the language of the user's notifications and automatic replies (audited; no PHI)."""
    with transaction.atomic():
        actor.preferred_language = language
        actor.save(update_fields=["preferred_language"])
        audit.record(
            actor=actor, action=audit.Action.UPDATE, entity_type=Resource.PERSON, entity_id=actor.pk, reason="language"
        )
    return actor
