"""Patient (a child), RelatedPerson (a guardian's link), Practitioner (a clinician), CareTeam (the
child's care team: one resource per child, its memberships as participants)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from interop.fhir import MR_CODE
from interop.outbound.common import (
    SNOMED,
    business_identifiers,
    day,
    drop_empty,
    identifier_list,
    instant,
    meta,
    ref,
)
from portal.models import CareTeamMembership, Child, GuardianLink, User

V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
# The inverse of the import's RoleCode table (interop.mapping.related_persons).
RELATIONSHIP_CODES: dict[str, tuple[str, str]] = {
    GuardianLink.Relationship.MOTHER: ("MTH", "mother"),
    GuardianLink.Relationship.FATHER: ("FTH", "father"),
    GuardianLink.Relationship.LEGAL_GUARDIAN: ("GUARD", "guardian"),
    GuardianLink.Relationship.FOSTER_PARENT: ("FOSTERPARENT", "foster parent"),
    GuardianLink.Relationship.OTHER: ("FAMMEMB", "family member"),
}
# The inverse of the import's SNOMED CT roles (interop.mapping.care_teams).
CARE_TEAM_ROLES: dict[str, tuple[str, str]] = {
    CareTeamMembership.Role.PRIMARY: ("446050000", "Primary care physician"),
    CareTeamMembership.Role.SPECIALIST: ("309343006", "Physician"),
    CareTeamMembership.Role.NURSE: ("224535009", "Registered nurse"),
    CareTeamMembership.Role.PHARMACIST: ("46255001", "Pharmacist"),
}
MR_TYPE = {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": MR_CODE}]}


def _human_name(text: str) -> dict[str, Any]:
    """The portal keeps a name as one text (given names, then family name, as the import joins them)."""
    given, _, family = text.strip().rpartition(" ")
    return drop_empty({"use": "official", "text": text, "family": family, "given": given.split() if given else []})


def patients(rows: Sequence[Child]) -> list[dict[str, Any]]:
    ehr = business_identifiers("Patient", [row.pk for row in rows])
    out = []
    for child in rows:
        pair = ehr.get(str(child.pk))
        # The MRN is the identifier the EHR keys a patient by: with the EHR's system when imported.
        mrn = {"type": MR_TYPE, "system": pair[0], "value": pair[1]} if pair else {"type": MR_TYPE, "value": child.mrn}
        out.append(
            {
                "resourceType": "Patient",
                "id": str(child.pk),
                "meta": meta(child.updated_at),
                "identifier": [mrn],
                "name": [_human_name(child.name)],
                "gender": child.sex,
                "birthDate": day(child.date_of_birth),
            }
        )
    return out


def _link_period(link: GuardianLink) -> dict[str, str]:
    ended = link.revoked_at or link.valid_until
    return drop_empty({"start": instant(link.valid_from), "end": instant(ended) if ended else None})


def related_persons(rows: Sequence[GuardianLink]) -> list[dict[str, Any]]:
    """Needs ``guardian`` and ``invitation`` loaded (``select_related``)."""
    ehr = business_identifiers("RelatedPerson", [row.pk for row in rows])
    out = []
    for link in rows:
        code, display = RELATIONSHIP_CODES.get(link.relationship, RELATIONSHIP_CODES[GuardianLink.Relationship.OTHER])
        invitation = getattr(link, "invitation", None) if link.guardian_id is None else None
        email = link.guardian.email if link.guardian is not None else (invitation.recipient_email if invitation else "")
        name = link.guardian.display_name if link.guardian is not None else ""
        out.append(
            drop_empty(
                {
                    "resourceType": "RelatedPerson",
                    "id": str(link.pk),
                    "meta": meta(link.updated_at),
                    "identifier": identifier_list(ehr.get(str(link.pk))),
                    "active": link.status == GuardianLink.Status.ACTIVE,
                    "patient": ref("Patient", link.child_id),
                    "relationship": [{"coding": [{"system": ROLE_CODE, "code": code, "display": display}]}],
                    "name": [{"text": name}] if name else [],
                    "telecom": [{"system": "email", "value": email}] if email else [],
                    "period": _link_period(link),
                }
            )
        )
    return out


def practitioners(rows: Sequence[User]) -> list[dict[str, Any]]:
    ehr = business_identifiers("Practitioner", [row.pk for row in rows])
    return [
        drop_empty(
            {
                "resourceType": "Practitioner",
                "id": str(user.pk),
                "meta": meta(user.date_joined),
                "identifier": identifier_list(ehr.get(str(user.pk))),
                "active": user.is_active,
                "name": [{"text": user.display_name}] if user.display_name else [],
                "telecom": [{"system": "email", "value": user.email}],
            }
        )
        for user in rows
    ]


def _participant(membership: CareTeamMembership) -> dict[str, Any]:
    code, display = CARE_TEAM_ROLES[membership.role]
    return {
        "role": [{"coding": [{"system": SNOMED, "code": code, "display": display}]}],
        "member": ref("Practitioner", membership.clinician_id),
        "period": drop_empty(
            {"start": instant(membership.start), "end": instant(membership.end) if membership.end else None}
        ),
    }


def care_teams(rows: Sequence[Child], memberships: Sequence[CareTeamMembership] | None = None) -> list[dict[str, Any]]:
    """One CareTeam per child (its id is the child's), every membership a participant with its
    period; active while any membership is current. ``memberships`` narrows who is shown (a family's
    export); by default all of the children's memberships, in one query."""
    if memberships is None:
        memberships = list(
            CareTeamMembership.objects.filter(child_id__in=[row.pk for row in rows]).order_by("start", "id")
        )
    by_child: dict[Any, list[CareTeamMembership]] = defaultdict(list)
    for membership in memberships:
        by_child[membership.child_id].append(membership)
    ehr = business_identifiers("CareTeam", [m.pk for m in memberships])
    now = timezone.now()
    out = []
    for child in rows:
        members = by_child.get(child.pk, [])
        pair = next((ehr[str(m.pk)] for m in members if str(m.pk) in ehr), None)
        current = any(m.start <= now and (m.end is None or m.end > now) for m in members)
        out.append(
            drop_empty(
                {
                    "resourceType": "CareTeam",
                    "id": str(child.pk),
                    "meta": meta(child.created_at),
                    "identifier": identifier_list(pair),
                    "status": "active" if current else "inactive",
                    "subject": ref("Patient", child.pk),
                    "participant": [_participant(m) for m in members],
                }
            )
        )
    return out
