"""Care records for the personas' children, made directly (the services are tested on their own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from care.models import Appointment, Coverage, MedicationPlan, RefillRequest
from portal.models import Child, User

INSULIN = "Insulin glargine CANARYMED"


def appointment(child: Child, clinician: User, *, hours_from_now: int = 48, **extra: Any) -> Appointment:
    start = timezone.now().replace(microsecond=0) + timedelta(hours=hours_from_now)
    fields: dict[str, Any] = {
        "location": "Clinic B, room 4",
        "visit_type": "Follow-up",
        "status": "booked",
        "preparation": "Bring the glucose meter",
        **extra,
    }
    return Appointment.objects.create(
        child=child, clinician=clinician, start=start, end=start + timedelta(minutes=30), **fields
    )


def plan(child: Child, prescriber: User, **extra: Any) -> MedicationPlan:
    fields: dict[str, Any] = {
        "medication": INSULIN,
        "strength": "100 units/mL",
        "form": "injection",
        "dose_quantity": Decimal("6"),
        "dose_unit": "units",
        "route": "subcutaneous",
        "schedule_kind": "fixed_times",
        "times_of_day": ["08:00", "20:00"],
        "start": datetime(2025, 1, 1, tzinfo=UTC),
        "refills_allowed": 3,
        "refills_remaining": 3,
        "pharmacy": "Main Street Pharmacy",
        **extra,
    }
    return MedicationPlan.objects.create(child=child, prescriber=prescriber, **fields)


def refill(medication_plan: MedicationPlan, requested_by: User, **extra: Any) -> RefillRequest:
    return RefillRequest.objects.create(
        plan=medication_plan,
        child=medication_plan.child,
        pharmacy="Main Street Pharmacy",
        requested_by=requested_by,
        **extra,
    )


def coverage(child: Child, submitted_by: User, **extra: Any) -> Coverage:
    fields: dict[str, Any] = {
        "payer": "Acme Health",
        "plan_name": "Family PPO",
        "member_id": "MEMBER-CANARY-77",
        "group_number": "G-100",
        "status": "active",
        **extra,
    }
    return Coverage.objects.create(child=child, submitted_by=submitted_by, **fields)
