"""The care API's JSON shapes: how each record reads on the wire (the edge; services and selectors
hand over model instances)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from care.models import (
    Appointment,
    CalendarFeed,
    Coverage,
    DoseLog,
    RefillRequest,
    ResultComment,
    ResultReport,
    TestResult,
    VisitSummary,
)
from care.results import ClinicianSchedule, PlanStatus
from portal.models import User


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


# -- results and visit summaries ----------------------------------------------------------------


def _clinician_name(user: User | None, name: str) -> str | None:
    if user is not None:
        return str(user)
    return name or None


def _released(row: TestResult | VisitSummary, now: datetime) -> bool:
    return row.released_at is not None or (row.hold_until is not None and row.hold_until <= now)


def _report(result: TestResult, clinician: bool) -> ResultReport | None:
    """The result's report, unless it is adolescent-confidential and the reader is not on the care team."""
    report = result.report
    if report is None or (report.confidential and not clinician):
        return None
    return report


def result_out(result: TestResult, *, clinician: bool, now: datetime | None = None) -> dict[str, Any]:
    moment = now or timezone.now()
    report = _report(result, clinician)
    return {
        "id": result.pk,
        "child_id": result.child_id,
        "report_id": report.pk if report is not None else None,
        "report_name": report.name if report is not None else None,
        "name": result.name,
        "code": result.code,
        "code_system": result.code_system,
        "category": result.category,
        "status": result.status,
        "value": result.value,
        "value_is_numeric": result.value_is_numeric,
        "unit": result.unit,
        "reference_range": {
            "low": result.range_low or None,
            "high": result.range_high or None,
            "text": result.range_text or None,
        },
        "interpretation": result.interpretation or None,
        "effective_at": result.effective_at,
        "issued_at": result.issued_at,
        "ordering_clinician_name": _clinician_name(result.ordering_clinician, result.ordering_clinician_name),
        "released": _released(result, moment),
        "hold_until": result.hold_until if not _released(result, moment) else None,
    }


def comment_out(comment: ResultComment) -> dict[str, Any]:
    return {
        "id": comment.pk,
        "result_id": comment.result_id,
        "author_name": str(comment.author),
        "body": comment.body,
        "created_at": comment.created_at,
    }


def report_out(report: ResultReport) -> dict[str, Any]:
    return {
        "id": report.pk,
        "name": report.name,
        "category": report.category,
        "status": report.status,
        "conclusion": report.conclusion,
        "effective_at": report.effective_at,
        "issued_at": report.issued_at,
        "ordering_clinician_name": _clinician_name(report.ordering_clinician, report.ordering_clinician_name),
    }


def result_detail_out(result: TestResult, comments: list[ResultComment], *, clinician: bool) -> dict[str, Any]:
    """A result with its report (confidential reports for the care team only) and its comments."""
    report = _report(result, clinician)
    return {
        **result_out(result, clinician=clinician),
        "report": report_out(report) if report is not None else None,
        "comments": [comment_out(comment) for comment in comments],
    }


def visit_summary_out(summary: VisitSummary, *, now: datetime | None = None) -> dict[str, Any]:
    moment = now or timezone.now()
    return {
        "id": summary.pk,
        "child_id": summary.child_id,
        "title": summary.title,
        "date": summary.date,
        "category": summary.category,
        "status": summary.status,
        "author_name": _clinician_name(summary.author, summary.author_name),
        "appointment_id": summary.appointment_id,
        "has_pdf": summary.pdf_size > 0,
        "pdf_size": summary.pdf_size or None,
        "released": _released(summary, moment),
        "hold_until": summary.hold_until if not _released(summary, moment) else None,
    }


def visit_summary_detail_out(summary: VisitSummary) -> dict[str, Any]:
    return {**visit_summary_out(summary), "text": summary.text}
