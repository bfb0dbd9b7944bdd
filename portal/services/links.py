"""Guardian links: a second staff member's approval, revocation, scope changes, expiry at the
adult birthday or the end of their validity, and the integrity report of staff-held links."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from allauth.account.models import EmailAddress
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit, events
from portal.access import Capability, ChildAccess, staff_accounts
from portal.errors import ApiError, Conflict, Invalid, NotFound
from portal.models import GuardianLink, Invitation, User
from portal.vocabulary import Resource


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
            link.save(update_fields=["status", "approved_by", "approved_at", "valid_from", "updated_at"])
            audit.record(
                actor=actor,
                action=audit.Action.UPDATE,
                entity_type=Resource.RELATED_PERSON,
                entity_id=link.pk,
                child_id=link.child_id,
                reason="staff_link_approved",
            )
            if link.guardian_id:
                events.access_changed(user_id=link.guardian_id)
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
        events.access_revoked(user_id=link.guardian_id)


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
        link.save(update_fields=["status", "revoked_by", "revoked_at", "updated_at"])
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
        link.save(update_fields=[*changes, "updated_at"])
        _link_changed(actor=actor, link=link, reason="changed:" + ",".join(sorted(changes)))
    return link


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
        GuardianLink.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
            status=GuardianLink.Status.EXPIRED, updated_at=timezone.now()
        )
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
            events.access_revoked(user_id=guardian_id)
    return len(rows)


@dataclass(frozen=True)
class LinkBreach:
    link_id: uuid.UUID
    child_id: uuid.UUID
    guardian_id: uuid.UUID
    status: str
    reasons: tuple[str, ...]


def _holds_recipient(link: GuardianLink, invitation: Invitation, verified: set[tuple[Any, str]]) -> bool:
    """Whether the link's holder has verified the address or phone number the invitation was sent to."""
    if invitation.recipient_phone and not invitation.recipient_email:
        holder = link.guardian
        return (
            holder is not None and holder.phone_verified_at is not None and holder.phone == invitation.recipient_phone
        )
    return (link.guardian_id, invitation.recipient_email.lower()) in verified


def link_breaches() -> list[LinkBreach]:
    """Live or waiting links that break the invitation and staff-as-parent rules:

    - ``staff_unapproved``: the holder has a staff role and no second staff member approved the link;
    - ``redeemed_by_creator``: the holder made the invitation (or granted the link) themselves;
    - ``recipient_not_verified``: the invitation names no address, or one the holder has not verified
      (for an invitation bound to a phone number: the holder's phone is not that number, verified).

    A fixed number of queries whatever the number of links.
    """
    links = list(
        GuardianLink.objects.filter(status=GuardianLink.Status.ACTIVE, guardian__isnull=False)
        .select_related("invitation", "guardian")
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
        if invitation is not None and not _holds_recipient(link, invitation, verified):
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
        link.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
        _link_changed(actor=None, link=link, reason="suspended_for_approval")
    return True
