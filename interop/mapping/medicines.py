"""MedicationRequest → care's MedicationPlan, with the dosage timing mapped by ``timing``.

A request whose timing the portal cannot follow is rejected with the reason (and no plan is made or
changed); the family keeps seeing the plan as it last was. Refills: ``numberOfRepeatsAllowed``; on a
change, the refills remaining move by the same amount (never below zero or above the new allowance).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone

from care.models import MedicationPlan
from interop.context import Context
from interop.errors import Unmappable, named
from interop.fhir import Resource, concept_text, parse_instant
from interop.mapping.appointments import confidential
from interop.mapping.base import Mapped, Mapping
from interop.mapping.timing import schedule
from interop.models import SourceRecord
from portal import audit
from portal.access import Capability
from portal.models import Child
from portal.vocabulary import EventType
from portal.vocabulary import Resource as Entity

STATUSES = {
    "active": MedicationPlan.Status.ACTIVE,
    "on-hold": MedicationPlan.Status.ON_HOLD,
    "completed": MedicationPlan.Status.COMPLETED,
    "stopped": MedicationPlan.Status.STOPPED,
    "cancelled": MedicationPlan.Status.STOPPED,
}
REFUSED_STATUSES = frozenset({"draft", "entered-in-error", "unknown"})


def _dose(dosage: dict[str, Any]) -> tuple[Decimal, str]:
    for rate in dosage.get("doseAndRate") or []:
        quantity = rate.get("doseQuantity")
        if quantity and quantity.get("value") is not None:
            return Decimal(str(quantity["value"])).quantize(Decimal("0.001")), str(
                quantity.get("unit") or quantity.get("code") or ""
            )[:20]
    raise Unmappable("no_dose_quantity")


def fields(ctx: Context, data: dict[str, Any]) -> tuple[Child, dict[str, Any]]:
    if data.get("status") not in STATUSES:
        raise Unmappable(f"medication_status:{named(data.get('status'), REFUSED_STATUSES)}")
    medication = concept_text(data.get("medicationCodeableConcept"))
    if not medication:
        raise Unmappable("no_medication_text")
    child = ctx.child(data.get("subject"))
    prescriber = ctx.clinician(data.get("requester"))[0]
    dosages = data.get("dosageInstruction") or []
    plan = schedule(dosages)
    quantity, unit = _dose(dosages[0])
    bounds = ((dosages[0].get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
    start = parse_instant(bounds.get("start")) or parse_instant(data.get("authoredOn"))
    if start is None:
        raise Unmappable("no_start")
    dispense = data.get("dispenseRequest") or {}
    texts = [dosages[0].get("text") or "", dosages[0].get("patientInstruction") or ""]
    return child, {
        "medication": medication,
        "dose_quantity": quantity,
        "dose_unit": unit,
        "route": (concept_text(dosages[0].get("route")) or "oral")[:40],
        "schedule_kind": plan.schedule_kind,
        "times_of_day": plan.times_of_day,
        "weekdays": plan.weekdays,
        "interval_hours": plan.interval_hours,
        "min_interval_minutes": plan.min_interval_minutes,
        "max_per_day": plan.max_per_day,
        "start": start,
        "end": parse_instant(bounds.get("end")),
        "instructions": "\n".join(t for t in texts if t),
        "prescriber_id": prescriber.pk,
        "refills_allowed": int(dispense.get("numberOfRepeatsAllowed") or 0),
        "pharmacy": str((dispense.get("performer") or {}).get("display") or "")[:120],
        "status": STATUSES[data["status"]],
        "confidential": confidential(data),
    }


def _publish(ctx: Context, child: Child, plan: MedicationPlan) -> None:
    ctx.publish(
        EventType.MEDICATION_CHANGED,
        child,
        Entity.MEDICATION_REQUEST,
        plan.pk,
        Capability.CLINICAL,
        confidential=plan.confidential,
        status=plan.status,
    )


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    child, wanted = fields(ctx, resource.data)
    if wanted["end"] is not None and wanted["end"] <= wanted["start"]:
        raise Unmappable("invalid_period")
    plan = MedicationPlan.objects.filter(pk=record.target).first() if record and record.targets else None
    if plan is None or plan.child_id != child.pk:
        plan = MedicationPlan.objects.create(child=child, refills_remaining=wanted["refills_allowed"], **wanted)
        ctx.audit(audit.Action.CREATE, Entity.MEDICATION_REQUEST, plan.pk, child.pk)
        _publish(ctx, child, plan)
        return Mapped(targets=[str(plan.pk)])
    moved = wanted["refills_allowed"] - plan.refills_allowed
    wanted["refills_remaining"] = min(max(plan.refills_remaining + moved, 0), wanted["refills_allowed"])
    changed = [name for name, value in wanted.items() if getattr(plan, name) != value]
    if changed:
        for name in changed:
            setattr(plan, name, wanted[name])
        plan.save(update_fields=[*changed, "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.MEDICATION_REQUEST, plan.pk, child.pk, reason="ehr_import")
        _publish(ctx, child, plan)
    return Mapped(targets=[str(plan.pk)])


def remove(ctx: Context, record: SourceRecord) -> None:
    """Gone from the export: the plan stops (doses and refills keep their history)."""
    plan = MedicationPlan.objects.select_related("child").filter(pk=record.target).first()
    if plan is None or plan.status == MedicationPlan.Status.STOPPED:
        return
    plan.status = MedicationPlan.Status.STOPPED
    plan.end = plan.end or timezone.now()
    plan.save(update_fields=["status", "end", "updated_at"])
    ctx.audit(audit.Action.UPDATE, Entity.MEDICATION_REQUEST, plan.pk, plan.child_id, reason="ehr_removed")
    _publish(ctx, plan.child, plan)


MAPPING = Mapping(target_type="care.MedicationPlan", apply=apply, remove=remove)
