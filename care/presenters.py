"""The care API's JSON shapes: how each record reads on the wire (the edge; services and selectors
hand over model instances)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from care.models import Appointment, CalendarFeed, Coverage, DoseLog, RefillRequest
from care.results import ClinicianSchedule, PlanStatus


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


def plan_out(view: PlanStatus) -> dict[str, Any]:
    plan = view.plan
    return {
        "id": plan.pk,
        "medication": plan.medication,
        "strength": plan.strength,
        "form": plan.form,
        "dose": f"{plan.dose_quantity.normalize():f} {plan.dose_unit}",
        "route": plan.route,
        "schedule_kind": plan.schedule_kind,
        "times_of_day": plan.times_of_day,
        "weekdays": plan.weekdays,
        "interval_hours": plan.interval_hours,
        "min_interval_minutes": plan.min_interval_minutes,
        "max_per_day": plan.max_per_day,
        "start": plan.start,
        "end": plan.end,
        "instructions": plan.instructions,
        "prescriber_name": str(plan.prescriber),
        "refills_allowed": plan.refills_allowed,
        "refills_remaining": plan.refills_remaining,
        "pharmacy": plan.pharmacy,
        "status": plan.status,
        "next_due": view.next_due,
        "overdue": view.overdue,
        "next_allowed_at": view.next_allowed_at,
        "adherence": [adherence.__dict__ for adherence in view.adherence],
    }


def feed_status_out(feed: CalendarFeed | None) -> dict[str, Any]:
    return {
        "active": feed is not None,
        "include_doses": feed.include_doses if feed else None,
        "created_at": feed.created_at if feed else None,
    }


def schedule_out(schedule: ClinicianSchedule, *, limited: bool = False) -> dict[str, Any]:
    """A clinician's schedule; ``limited`` (a limited-scope guardian): no department, neutral places."""
    member = schedule.member

    def place(location: str) -> str:
        return settings.PORTAL_NEUTRAL_LOCATION if limited else location

    return {
        "clinician_id": member.clinician_id,
        "clinician_name": str(member.clinician),
        "role": member.role,
        "department": member.department.name if member.department and not limited else None,
        "on_call_now": schedule.on_call_now,
        "in_clinic_now": schedule.in_clinic_now,
        "clinic_hours": [
            {"location": place(b.location), "start": b.start, "end": b.end} for b in schedule.clinic_hours
        ],
        "next_open_slots": [
            {"location": place(s.location), "start": s.start, "end": s.end} for s in schedule.next_open_slots
        ],
    }
