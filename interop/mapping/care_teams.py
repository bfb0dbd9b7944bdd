"""CareTeam → the child's care-team memberships, one per clinician participant.

Participants that are not clinicians (the patient, family members, organizations) are not care-team
members in the portal and are passed over. A participant whose role the portal has no name for
rejects the whole CareTeam (``unknown_care_team_role``): a half-imported team would grant access
the EHR did not describe. Memberships the EHR no longer lists end (access ends with them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from interop.context import Context
from interop.errors import Unmappable
from interop.fhir import Resource, codes, parse_instant
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit, events
from portal.models import CareTeamMembership
from portal.vocabulary import Resource as Entity

SNOMED = "http://snomed.info/sct"
ROLES = {
    "446050000": CareTeamMembership.Role.PRIMARY,  # primary care physician
    "309343006": CareTeamMembership.Role.SPECIALIST,  # physician
    "224535009": CareTeamMembership.Role.NURSE,  # registered nurse
    "106292003": CareTeamMembership.Role.NURSE,  # professional nurse
    "46255001": CareTeamMembership.Role.PHARMACIST,  # pharmacist
}
CLINICIAN_REFERENCES = ("Practitioner/", "PractitionerRole/")
Key = tuple[Any, Any, str]


def _wanted(ctx: Context, data: dict[str, Any]) -> dict[Key, tuple[datetime | None, datetime | None]]:
    team_period = data.get("period") or {}
    wanted: dict[Key, tuple[datetime | None, datetime | None]] = {}
    for participant in data.get("participant") or []:
        member = participant.get("member") or {}
        if not str(member.get("reference") or "").startswith(CLINICIAN_REFERENCES):
            continue
        role = next((ROLES[c] for r in participant.get("role") or [] for c in codes(r, SNOMED) if c in ROLES), None)
        if role is None:
            raise Unmappable("unknown_care_team_role")
        clinician, department = ctx.clinician(member)
        period = participant.get("period") or team_period
        key = (clinician.pk, department.pk if department else None, str(role))
        wanted[key] = (parse_instant(period.get("start")), parse_instant(period.get("end")))
    return wanted


def _end(ctx: Context, membership: CareTeamMembership, reason: str) -> None:
    now = timezone.now()
    if membership.end is not None and membership.end <= now:
        return
    membership.end = now
    membership.save(update_fields=["end"])
    ctx.audit(audit.Action.DELETE, Entity.CARE_TEAM, membership.pk, membership.child_id, reason=reason)
    events.access_revoked(user_id=membership.clinician_id)


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("subject"))
    active = data.get("status") in ("active", "proposed", "suspended", None)
    wanted = _wanted(ctx, data) if active else {}
    existing = list(
        CareTeamMembership.objects.select_for_update().filter(pk__in=record.targets if record else [], child=child)
    )
    kept = []
    for membership in existing:
        key = (membership.clinician_id, membership.department_id, membership.role)
        if key not in wanted:
            _end(ctx, membership, "ehr_care_team_changed")
            continue
        start, end = wanted.pop(key)
        changes = {"start": start or membership.start, "end": end}
        changed = [name for name, value in changes.items() if getattr(membership, name) != value]
        if changed:
            for name in changed:
                setattr(membership, name, changes[name])
            membership.save(update_fields=changed)
            ctx.audit(audit.Action.UPDATE, Entity.CARE_TEAM, membership.pk, child.pk, reason="ehr_import:period")
            events.access_changed(user_id=membership.clinician_id)
        kept.append(str(membership.pk))
    for (clinician_id, department_id, role), (start, end) in wanted.items():
        if end is not None and start is not None and end <= start:
            raise Unmappable("invalid_period")
        membership = CareTeamMembership.objects.create(
            child=child,
            clinician_id=clinician_id,
            department_id=department_id,
            role=role,
            start=start or timezone.now(),
            end=end,
            added_by=ctx.actor,
        )
        ctx.audit(audit.Action.CREATE, Entity.CARE_TEAM, membership.pk, child.pk)
        events.access_changed(user_id=clinician_id)
        kept.append(str(membership.pk))
    return Mapped(targets=kept)


def remove(ctx: Context, record: SourceRecord) -> None:
    for membership in CareTeamMembership.objects.select_for_update().filter(pk__in=record.targets):
        _end(ctx, membership, "ehr_care_team_removed")


MAPPING = Mapping(target_type="portal.CareTeamMembership", apply=apply, remove=remove)
