"""Patient → Child (registered through ``portal.services.child_create``; a child staff registered
already, with the same MRN, is adopted rather than duplicated)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from interop.context import Context, hospital_time_zone
from interop.errors import Unmappable
from interop.fhir import MR_CODE, Resource
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit, events, services
from portal.fields import BlindIndexField
from portal.models import CareTeamMembership, Child, GuardianLink
from portal.vocabulary import Resource as Entity

SEXES = {"female", "male", "other", "unknown"}


def _mrn(data: dict[str, Any]) -> str:
    identifiers = [i for i in data.get("identifier") or [] if i.get("value")]
    coded = [i for i in identifiers if any(c.get("code") == MR_CODE for c in (i.get("type") or {}).get("coding", []))]
    chosen = (coded or identifiers or [None])[0]
    if chosen is None:
        raise Unmappable("no_mrn")
    return str(chosen["value"])


def _name(data: dict[str, Any]) -> str:
    names = data.get("name") or []
    official = [n for n in names if n.get("use") == "official"] or [n for n in names if n.get("use") != "old"]
    for name in official:
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip() or (name.get("text") or "").strip()
        if text:
            return text
    raise Unmappable("no_name")


def fields(data: dict[str, Any]) -> dict[str, Any]:
    born = data.get("birthDate") or ""
    if not born:
        raise Unmappable("no_birth_date")
    if len(born) != 10:
        raise Unmappable("partial_birth_date")
    gender = data.get("gender") or "unknown"
    return {
        "name": _name(data),
        "mrn": _mrn(data),
        "date_of_birth": date.fromisoformat(born),
        "sex": gender if gender in SEXES else "unknown",
    }


def _update(ctx: Context, child: Child, wanted: dict[str, Any]) -> None:
    changed = [name for name, value in wanted.items() if getattr(child, name) != value]
    if not changed:
        return
    for name in changed:
        setattr(child, name, wanted[name])
    update = [*changed, "updated_at"]
    if "date_of_birth" in changed:
        child.compute_age_boundaries()
        update += ["adolescent_from", "adult_from"]
    if "mrn" in changed:
        update.append("mrn_index")
    try:
        with transaction.atomic():
            child.save(update_fields=update)
    except IntegrityError:
        raise Unmappable("mrn_in_use") from None
    ctx.audit(audit.Action.UPDATE, Entity.PATIENT, child.pk, child.pk, reason="ehr_import:" + ",".join(sorted(changed)))


def _mrn_index(mrn: str) -> str:
    field = Child._meta.get_field("mrn_index")
    assert isinstance(field, BlindIndexField)
    return field.index_of(mrn)


def prefetch(ctx: Context, resources: Sequence[Resource]) -> None:
    """A chunk's Patients: the children already registered with their MRNs, in one query."""
    indexes = set()
    for resource in resources:
        try:
            indexes.add(_mrn_index(fields(resource.data)["mrn"]))
        except (Unmappable, ValueError, KeyError, TypeError):
            continue  # reported when the line is applied
    found = {child.mrn_index: child for child in Child.objects.filter(mrn_index__in=indexes)}
    for index in indexes:
        ctx.memo[("child_by_mrn", index)] = found.get(index)


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    wanted = fields(resource.data)
    child = Child.objects.filter(pk=record.target).first() if record and record.targets else None
    if child is None:
        key = ("child_by_mrn", _mrn_index(wanted["mrn"]))
        child = ctx.memo[key] if key in ctx.memo else Child.objects.filter(mrn_index=key[1]).first()
    if child is None:
        child = services.child_create(actor=ctx.actor, time_zone=hospital_time_zone(), **wanted)
    else:
        known = child.mrn_index
        _update(ctx, child, wanted)
        if child.mrn_index != known:  # its old MRN names no child any more
            ctx.memo[("child_by_mrn", known)] = None
    ctx.memo[("child_by_mrn", child.mrn_index)] = child
    return Mapped(targets=[str(child.pk)])


def remove(ctx: Context, record: SourceRecord) -> None:
    """The patient left the EHR's export: everyone's access ends (guardian links revoked, care-team
    memberships ended), audited; the child's row and its audit history stay."""
    now = timezone.now()
    child = Child.objects.filter(pk=record.target).first()
    if child is None:
        return
    live = GuardianLink.objects.select_for_update().filter(
        child=child,
        status__in=[GuardianLink.Status.INVITED, GuardianLink.Status.PENDING_APPROVAL, GuardianLink.Status.ACTIVE],
    )
    for link in live:
        link.status = GuardianLink.Status.REVOKED
        link.revoked_by = ctx.actor
        link.revoked_at = now
        link.save(update_fields=["status", "revoked_by", "revoked_at", "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.RELATED_PERSON, link.pk, child.pk, reason="ehr_patient_removed")
        if link.guardian_id:
            events.access_revoked(user_id=link.guardian_id)
    current = CareTeamMembership.objects.select_for_update().filter(child=child).exclude(end__lte=now)
    for membership in current:
        membership.end = now
        membership.save(update_fields=["end"])
        ctx.audit(audit.Action.DELETE, Entity.CARE_TEAM, membership.pk, child.pk, reason="ehr_patient_removed")
        events.access_revoked(user_id=membership.clinician_id)
    ctx.audit(audit.Action.DELETE, Entity.PATIENT, child.pk, child.pk, reason="ehr_patient_removed")


MAPPING = Mapping(target_type="portal.Child", apply=apply, remove=remove, prefetch=prefetch)
