"""The portal API's JSON shapes: how each record reads on the wire (the edge; services and selectors
hand over model instances and access decisions)."""

from __future__ import annotations

from typing import Any

from portal.access import Capability, ChildAccess, effective_scope
from portal.models import CareTeamMembership, GuardianLink
from portal.selectors import AccessLogPage, Me


def child_out(access: ChildAccess) -> dict[str, Any]:
    child = access.child
    return {
        "id": child.pk,
        "name": child.name,
        "date_of_birth": child.date_of_birth,
        "sex": child.sex,
        "time_zone": child.time_zone,
        "access": "clinician" if access.is_clinician else "guardian",
        "scope": access.scope,
        "mrn": child.mrn if access.is_clinician else None,
        "conditions": child.conditions if access.can(Capability.CLINICAL) else None,
    }


def care_team_member_out(membership: CareTeamMembership, *, limited: bool = False) -> dict[str, Any]:
    """A care-team member; ``limited`` (a limited-scope guardian) hides the department, since a
    specialty department can name the diagnosis."""
    return {
        "id": membership.pk,
        "clinician_id": membership.clinician_id,
        "clinician_name": str(membership.clinician),
        "role": membership.role,
        "department": membership.department.name if membership.department and not limited else None,
        "start": membership.start,
        "end": membership.end,
    }


def link_out(link: GuardianLink) -> dict[str, Any]:
    return {
        "id": link.pk,
        "child_id": link.child_id,
        "guardian_id": link.guardian_id,
        "guardian_name": str(link.guardian) if link.guardian else "",
        "relationship": link.relationship,
        "scope": link.scope,
        "effective_scope": effective_scope(link),
        "status": link.status,
        "court_appointed": link.court_appointed,
        "adolescent_exception": link.adolescent_exception,
        "valid_from": link.valid_from,
        "valid_until": link.valid_until,
        "granted_at": link.granted_at,
        "revoked_at": link.revoked_at,
        "approved_at": link.approved_at,
    }


def guardian_link_out(link: GuardianLink) -> dict[str, Any]:
    """A link in the staff list: with the address its invitation was sent to."""
    invitation = getattr(link, "invitation", None)
    return {**link_out(link), "recipient_email": invitation.recipient_email if invitation else None}


def me_out(me: Me) -> dict[str, Any]:
    as_clinician: dict[Any, dict[str, Any]] = {}
    for membership in me.memberships:
        entry = as_clinician.setdefault(
            membership.child_id, {"id": membership.child_id, "name": membership.child.name, "roles": []}
        )
        entry["roles"].append(membership.role)
    user = me.user
    return {
        "id": user.pk,
        "email": user.email,
        "display_name": user.display_name,
        "phone": user.phone,
        "phone_verified": user.phone_verified_at is not None,
        "preferred_language": user.preferred_language,
        "language": user.preferred_language,
        "time_zone": user.time_zone,
        "mfa_enrolled": me.mfa_enrolled,
        "mfa_required": me.mfa_required,
        "permissions": me.permissions,
        "children_as_guardian": [
            {
                "id": link.child_id,
                "name": link.child.name,
                "scope": effective_scope(link, me.now),
                "relationship": link.relationship,
            }
            for link in me.links
        ],
        "children_as_clinician": list(as_clinician.values()),
    }


def pending_link_out(link: GuardianLink) -> dict[str, Any]:
    """A staff account's link waiting for approval: who holds it and who made the invitation."""
    invitation = getattr(link, "invitation", None)
    creator = invitation.created_by if invitation else link.granted_by
    return {
        "id": link.pk,
        "child_id": link.child_id,
        "guardian_id": link.guardian_id,
        "guardian_name": str(link.guardian) if link.guardian else "",
        "relationship": link.relationship,
        "scope": link.scope,
        "invited_by_id": creator.pk if creator else None,
        "invited_by_name": str(creator) if creator else "",
        "recipient_email": invitation.recipient_email if invitation else None,
        "redeemed_at": invitation.redeemed_at if invitation else None,
    }


def access_log_out(page: AccessLogPage) -> dict[str, Any]:
    return {
        "entries": [
            {
                "id": entry.event.id,
                "seq": entry.event.seq,
                "recorded_at": entry.event.recorded_at,
                "actor_name": entry.actor_name,
                "actor_role": entry.actor_role,
                "action": entry.event.action,
                "entity_type": entry.event.entity_type,
                "outcome": entry.event.outcome,
            }
            for entry in page.entries
        ],
        "next_before": page.next_before,
    }
