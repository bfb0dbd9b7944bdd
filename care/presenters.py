"""The care API's JSON shapes: how each record reads on the wire (the edge; services and selectors
hand over model instances)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from care.models import Appointment, Coverage, DoseLog, RefillRequest


def appointment_out(appointment: Appointment, *, limited: bool = False) -> dict[str, Any]:
    """An appointment as its reader may see it. ``limited`` (a limited-scope guardian): the time, the
    clinician, a neutral place and label; no visit type, department, clinic name or preparation notes,
    which name or imply the diagnosis."""
    out = {
        "id": appointment.pk,
        "child_id": appointment.child_id,
        "clinician_id": appointment.clinician_id,
        "clinician_name": str(appointment.clinician),
        "department": appointment.department.name if appointment.department else None,
        "location": appointment.location,
        "start": appointment.start,
        "end": appointment.end,
        "status": appointment.status,
        "visit_type": appointment.visit_type,
        "preparation": appointment.preparation,
        "guardian_confirmed_at": appointment.guardian_confirmed_at,
        "change_request": appointment.change_request or None,
        "change_note": appointment.change_note or None,
        "limited_view": limited,
    }
    if limited:
        out.update(
            department=None,
            location=settings.PORTAL_NEUTRAL_LOCATION,
            visit_type=settings.PORTAL_NEUTRAL_VISIT_LABEL,
            preparation="",
        )
    return out


def dose_out(dose: DoseLog) -> dict[str, Any]:
    return {
        "id": dose.pk,
        "plan_id": dose.plan_id,
        "client_id": dose.client_id,
        "status": dose.status,
        "occurred_at": dose.occurred_at,
        "scheduled_for": dose.scheduled_for,
        "note": dose.note,
        "recorded_by_name": str(dose.recorded_by),
    }


def refill_out(refill: RefillRequest) -> dict[str, Any]:
    return {
        "id": str(refill.pk),
        "plan_id": str(refill.plan_id),
        "child_id": str(refill.child_id),
        "status": refill.status,
        "pharmacy": refill.pharmacy,
        "note": refill.note,
        "denial_reason": refill.denial_reason or None,
        "requested_at": refill.requested_at.isoformat(),
        "updated_at": (refill.updated_at or refill.requested_at).isoformat(),
    }


def refill_queue_out(refill: RefillRequest) -> dict[str, Any]:
    """A refill in the clinician's queue: the request with the child's name and the medicine."""
    return {
        **refill_out(refill),
        "child_name": refill.child.name,
        "medication": refill.plan.medication,
        "refills_remaining": refill.plan.refills_remaining,
    }


def coverage_out(coverage: Coverage, status: str | None = None) -> dict[str, Any]:
    return {
        "id": coverage.pk,
        "status": status or coverage.status,
        "payer": coverage.payer,
        "plan_name": coverage.plan_name,
        "member_id": coverage.member_id,
        "group_number": coverage.group_number,
        "subscriber_name": coverage.subscriber_name,
        "subscriber_relationship": coverage.subscriber_relationship,
        "period_start": coverage.period_start,
        "period_end": coverage.period_end,
        "copays": coverage.copays,
        "submitted_at": coverage.submitted_at,
        "verified_at": coverage.verified_at,
        "rejection_reason": coverage.rejection_reason or None,
    }
