"""Appointment → care's Appointment (the clinician, place, time, status and visit type).

The EHR's booking is the truth: a visit the EHR booked is imported even where it overlaps another of
the clinician's (the portal's ``slot_taken`` check guards bookings made in the portal). Security
labels R (restricted) and V (very restricted) mark a visit adolescent-confidential.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.text import slugify

from care.models import Appointment
from interop.context import Context
from interop.errors import Unmappable
from interop.fhir import Resource, concept_text, parse_instant
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit
from portal.access import Capability
from portal.models import Child, Department
from portal.vocabulary import EventType
from portal.vocabulary import Resource as Entity

STATUSES = {
    "proposed": Appointment.Status.PROPOSED,
    "pending": Appointment.Status.PROPOSED,
    "waitlist": Appointment.Status.PROPOSED,
    "booked": Appointment.Status.BOOKED,
    "arrived": Appointment.Status.ARRIVED,
    "checked-in": Appointment.Status.ARRIVED,
    "fulfilled": Appointment.Status.FULFILLED,
    "cancelled": Appointment.Status.CANCELLED,
    "entered-in-error": Appointment.Status.CANCELLED,
    "noshow": Appointment.Status.NOSHOW,
}
CONFIDENTIAL_LABELS = {"R", "V"}


def confidential(data: dict[str, Any]) -> bool:
    return any(label.get("code") in CONFIDENTIAL_LABELS for label in (data.get("meta") or {}).get("security") or [])


def _participants(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"location": ""}
    for participant in data.get("participant") or []:
        actor = participant.get("actor") or {}
        kind = str(actor.get("reference") or "").partition("/")[0]
        if kind == "Patient":
            found["child"] = ctx.child(actor)
        elif kind in ("Practitioner", "PractitionerRole") and "clinician" not in found:
            found["clinician"], found["department"] = ctx.clinician(actor)
        elif kind == "Location":
            found["location"] = str(actor.get("display") or "")[:120]
    if "child" not in found:
        raise Unmappable("no_patient")
    if "clinician" not in found:
        raise Unmappable("no_practitioner")
    return found


def _department(data: dict[str, Any], department: Department | None) -> Department | None:
    if department is not None:
        return department
    for specialty in data.get("specialty") or []:
        match = Department.objects.filter(code=slugify(concept_text(specialty))[:40]).first()
        if match is not None:
            return match
    return None


def fields(ctx: Context, data: dict[str, Any]) -> tuple[Child, dict[str, Any]]:
    people = _participants(ctx, data)
    start, end = parse_instant(data.get("start")), parse_instant(data.get("end"))
    if start is None or end is None:
        raise Unmappable("no_time")
    if end <= start:
        raise Unmappable("invalid_period")
    visit_type = next((concept_text(c) for c in data.get("serviceType") or [] if concept_text(c)), "")
    visit_type = visit_type or concept_text(data.get("appointmentType")) or "Visit"
    return people["child"], {
        "clinician": people["clinician"],
        "department": _department(data, people["department"]),
        "location": people["location"] or settings.PORTAL_NEUTRAL_LOCATION[:120],
        "start": start,
        "end": end,
        "status": STATUSES[data["status"]],
        "visit_type": visit_type[:80],
        "preparation": data.get("patientInstruction") or "",
        "confidential": confidential(data),
    }


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    child, wanted = fields(ctx, resource.data)
    appointment = Appointment.objects.filter(pk=record.target).first() if record and record.targets else None
    if appointment is None or appointment.child_id != child.pk:
        appointment = Appointment.objects.create(child=child, created_by=ctx.actor, **wanted)
        ctx.audit(audit.Action.CREATE, Entity.APPOINTMENT, appointment.pk, child.pk)
    else:
        changed = [name for name, value in wanted.items() if getattr(appointment, name) != value]
        if not changed:
            return Mapped(targets=[str(appointment.pk)])
        for name in changed:
            setattr(appointment, name, wanted[name])
        appointment.save(update_fields=[*changed, "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.APPOINTMENT, appointment.pk, child.pk, reason="ehr_import")
    ctx.publish(
        EventType.APPOINTMENT_CHANGED,
        child,
        Entity.APPOINTMENT,
        appointment.pk,
        Capability.SCHEDULE,
        confidential=appointment.confidential,
        status=appointment.status,
    )
    return Mapped(targets=[str(appointment.pk)])


def remove(ctx: Context, record: SourceRecord) -> None:
    """Gone from the export: the visit is cancelled (the row and its history stay)."""
    appointment = Appointment.objects.select_related("child").filter(pk=record.target).first()
    if appointment is None or appointment.status == Appointment.Status.CANCELLED:
        return
    appointment.status = Appointment.Status.CANCELLED
    appointment.save(update_fields=["status", "updated_at"])
    ctx.audit(audit.Action.UPDATE, Entity.APPOINTMENT, appointment.pk, appointment.child_id, reason="ehr_removed")
    ctx.publish(
        EventType.APPOINTMENT_CHANGED,
        appointment.child,
        Entity.APPOINTMENT,
        appointment.pk,
        Capability.SCHEDULE,
        confidential=appointment.confidential,
        status=appointment.status,
    )


MAPPING = Mapping(target_type="care.Appointment", apply=apply, remove=remove)
