"""Medication plans (the care team prescribes) and the doses families record."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from care import dosing
from care.models import (
    DoseLog,
    MedicationPlan,
)
from care.services.common import audit_child, child_row, publish
from portal import audit, zones
from portal.access import Capability, ChildAccess
from portal.errors import ApiError, Conflict, Invalid
from portal.models import User
from portal.vocabulary import EventType, Resource


def plan_create(
    *,
    actor: User,
    access: ChildAccess,
    medication: str,
    dose_quantity: Decimal,
    dose_unit: str,
    schedule_kind: str,
    start: datetime,
    strength: str = "",
    form: str = "",
    route: str = "oral",
    times_of_day: list[str] | None = None,
    weekdays: list[int] | None = None,
    interval_hours: int | None = None,
    min_interval_minutes: int | None = None,
    max_per_day: int | None = None,
    end: datetime | None = None,
    instructions: str = "",
    refills_allowed: int = 0,
    pharmacy: str = "",
    confidential: bool = False,
) -> MedicationPlan:
    """A care-team clinician prescribes; the prescriber is the acting user."""
    access.require(Capability.TREAT)
    times = times_of_day or []
    days = weekdays or []
    if schedule_kind in ("fixed_times", "weekdays") and not times:
        raise Invalid("Fixed-time schedules need at least one time of day.", code="invalid_schedule")
    if schedule_kind == "weekdays" and not days:
        raise Invalid("A weekday schedule needs at least one weekday.", code="invalid_schedule")
    if schedule_kind == "every_n_hours" and not interval_hours:
        raise Invalid("An every-N-hours schedule needs interval_hours.", code="invalid_schedule")
    if schedule_kind == "as_needed" and not (min_interval_minutes or max_per_day):
        raise Invalid("An as-needed plan needs a minimum interval or a daily maximum.", code="invalid_schedule")
    if end is not None and end <= start:
        raise Invalid("The end must come after the start.", code="invalid_period")
    with transaction.atomic():
        plan = MedicationPlan.objects.create(
            child=access.child,
            medication=medication,
            strength=strength,
            form=form,
            dose_quantity=dose_quantity,
            dose_unit=dose_unit,
            route=route,
            schedule_kind=schedule_kind,
            times_of_day=sorted(times),
            weekdays=sorted(days),
            interval_hours=interval_hours,
            min_interval_minutes=min_interval_minutes,
            max_per_day=max_per_day,
            start=start,
            end=end,
            instructions=instructions,
            prescriber=actor,
            refills_allowed=refills_allowed,
            refills_remaining=refills_allowed,
            pharmacy=pharmacy,
            confidential=confidential,
        )
        audit_child(actor, audit.Action.CREATE, Resource.MEDICATION_REQUEST, plan.pk, access)
        publish(
            EventType.MEDICATION_CHANGED,
            access,
            Resource.MEDICATION_REQUEST,
            plan.pk,
            actor,
            Capability.CLINICAL,
            confidential,
            status=plan.status,
        )
    return plan


def plan_for(access: ChildAccess, plan_id: uuid.UUID, *, lock: bool = False) -> MedicationPlan:
    """The child's plan (confidential ones for the care team only), or 404."""
    return child_row(MedicationPlan.objects.all(), access, plan_id, lock=lock, what="medication plan")


def dose_record(
    *,
    actor: User,
    access: ChildAccess,
    plan_id: uuid.UUID,
    client_id: uuid.UUID,
    status: str,
    occurred_at: datetime | None = None,
    scheduled_for: datetime | None = None,
    note: str = "",
) -> tuple[DoseLog, bool]:
    """Record a dose given or skipped. Returns (dose, created): a retry with the same ``client_id``
    returns the first recording. An as-needed dose too soon or past the daily maximum is refused."""
    access.require(Capability.CLINICAL)
    moment = occurred_at or timezone.now()
    if moment > timezone.now() + timedelta(minutes=5):
        raise Invalid("A dose cannot be recorded in the future.", code="dose_in_future")
    with transaction.atomic():
        plan = plan_for(access, plan_id, lock=True)  # serializes doses of one plan (the limits below)
        existing = DoseLog.objects.filter(plan=plan, client_id=client_id).first()
        if existing is not None:
            return existing, False
        if plan.status != MedicationPlan.Status.ACTIVE:
            raise Conflict("This medication plan is not active.", code="plan_not_active")
        tz = zones.zone(access.child.time_zone)
        if plan.schedule_kind == MedicationPlan.ScheduleKind.AS_NEEDED:
            scheduled_for = None
            if status == DoseLog.Status.GIVEN:
                since = moment - timedelta(days=2)
                given = list(
                    DoseLog.objects.filter(plan=plan, status=DoseLog.Status.GIVEN, occurred_at__gte=since).values_list(
                        "occurred_at", flat=True
                    )
                )
                verdict = dosing.as_needed_verdict(plan, tz, given, moment)
                if not verdict.allowed:
                    raise ApiError(verdict.message, code=verdict.code, status=422)
        elif scheduled_for is not None:
            window = dosing.occurrences(plan, tz, scheduled_for, scheduled_for + timedelta(seconds=1))
            if not window:
                raise Invalid("No dose of this plan is scheduled at that time.", code="not_a_scheduled_dose")
            if DoseLog.objects.filter(plan=plan, scheduled_for=scheduled_for).exists():
                raise Conflict("This scheduled dose is already recorded.", code="dose_already_recorded")
        dose = DoseLog.objects.create(
            plan=plan,
            client_id=client_id,
            scheduled_for=scheduled_for,
            occurred_at=moment,
            status=status,
            note=note,
            recorded_by=actor,
        )
        audit_child(actor, audit.Action.CREATE, Resource.MEDICATION_ADMINISTRATION, dose.pk, access, status)
        publish(
            EventType.DOSE_RECORDED,
            access,
            Resource.MEDICATION_ADMINISTRATION,
            dose.pk,
            actor,
            Capability.CLINICAL,
            plan.confidential,
            plan_id=str(plan.pk),
            status=status,
        )
    return dose, True
