"""Writes on the child's care record. Each service is atomic, checks access through the policy,
writes its audit rows and publishes a domain event that the realtime stream delivers after commit."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from care import dosing
from care.models import (
    OPEN_REFILL_STATUSES,
    Appointment,
    CalendarFeed,
    Coverage,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    RefillTransition,
)
from portal import audit, events, idempotency, zones
from portal.access import Capability, ChildAccess, active_clinician, hide_confidential
from portal.crypto import keyring
from portal.errors import ApiError, Conflict, Invalid, NotFound
from portal.models import Child, User
from portal.vocabulary import EventType, Resource

# -- helpers ------------------------------------------------------------------------------------


def _publish(
    kind: EventType,
    access: ChildAccess,
    entity_type: Resource,
    entity_id: uuid.UUID,
    actor: User,
    capability: Capability,
    confidential: bool = False,
    **data: Any,
) -> None:
    events.publish(
        events.DomainEvent(
            type=kind,
            child_id=access.child.pk,
            entity_type=entity_type,
            entity_id=entity_id,
            capability=capability,
            confidential=confidential,
            data=data,
            actor_id=actor.pk,
        )
    )


def _audit(
    actor: User | None, action: str, entity_type: Resource, entity_id: Any, access: ChildAccess, reason: str = ""
) -> None:
    audit.record_for_child(actor, action, entity_type, entity_id, access.child.pk, reason)


# -- appointments -------------------------------------------------------------------------------

LIVE_APPOINTMENT = (Appointment.Status.BOOKED, Appointment.Status.ARRIVED)
APPOINTMENT_TRANSITIONS = {
    Appointment.Status.PROPOSED: {Appointment.Status.BOOKED, Appointment.Status.CANCELLED},
    Appointment.Status.BOOKED: {Appointment.Status.ARRIVED, Appointment.Status.CANCELLED, Appointment.Status.NOSHOW},
    Appointment.Status.ARRIVED: {Appointment.Status.FULFILLED, Appointment.Status.CANCELLED},
}


def _ensure_slot_free(clinician_id: uuid.UUID, start: datetime, end: datetime, exclude: uuid.UUID | None) -> None:
    """Refuse a booking that overlaps another live one of the same clinician.

    The clinician's user row is locked first (PostgreSQL; SQLite serializes writers), so two
    concurrent bookings of the same slot cannot both pass the check.
    """
    User.objects.select_for_update().filter(pk=clinician_id).first()
    clash = Appointment.objects.filter(
        clinician_id=clinician_id, status__in=LIVE_APPOINTMENT, start__lt=end, end__gt=start
    )
    if exclude is not None:
        clash = clash.exclude(pk=exclude)
    if clash.exists():
        raise Conflict("The clinician already has an appointment at that time.", code="slot_taken")


def appointment_create(
    *,
    actor: User,
    access: ChildAccess,
    clinician_id: uuid.UUID,
    start: datetime,
    end: datetime,
    location: str,
    visit_type: str,
    department_id: uuid.UUID | None = None,
    preparation: str = "",
    status: str = Appointment.Status.BOOKED,
    confidential: bool = False,
) -> Appointment:
    """Staff book (or propose) an appointment; a booked one must not overlap the clinician's others."""
    access.require(Capability.TREAT)
    if end <= start:
        raise Invalid("The end must come after the start.", code="invalid_period")
    if status not in (Appointment.Status.PROPOSED, Appointment.Status.BOOKED):
        raise Invalid("A new appointment is proposed or booked.", code="invalid_status")
    clinician = active_clinician(clinician_id)
    with transaction.atomic():
        if status == Appointment.Status.BOOKED:
            _ensure_slot_free(clinician.pk, start, end, None)
        appointment = Appointment.objects.create(
            child=access.child,
            clinician=clinician,
            department_id=department_id,
            location=location,
            start=start,
            end=end,
            status=status,
            visit_type=visit_type,
            preparation=preparation,
            confidential=confidential,
            created_by=actor,
        )
        _audit(actor, audit.Action.CREATE, Resource.APPOINTMENT, appointment.pk, access)
        _publish(
            EventType.APPOINTMENT_CHANGED,
            access,
            Resource.APPOINTMENT,
            appointment.pk,
            actor,
            Capability.SCHEDULE,
            confidential,
            status=appointment.status,
        )
    return appointment


def _child_row(queryset: Any, access: ChildAccess, pk: uuid.UUID, *, lock: bool, what: str) -> Any:
    """One row about the child (confidential ones for the care team only), optionally locked, or 404."""
    rows = hide_confidential(queryset.filter(pk=pk, child=access.child), access)
    if lock:
        rows = rows.select_for_update()
    row = rows.first()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row


def _appointment(access: ChildAccess, appointment_id: uuid.UUID, *, lock: bool = False) -> Appointment:
    return _child_row(Appointment.objects.all(), access, appointment_id, lock=lock, what="appointment")


def appointment_update(
    *,
    actor: User,
    access: ChildAccess,
    appointment_id: uuid.UUID,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    location: str | None = None,
    preparation: str | None = None,
    clear_change_request: bool = False,
) -> Appointment:
    """Staff move an appointment along its lifecycle, reschedule it, or answer a family's request."""
    access.require(Capability.TREAT)
    with transaction.atomic():
        appointment = _appointment(access, appointment_id, lock=True)
        changed: list[str] = []
        if status is not None and status != appointment.status:
            allowed = APPOINTMENT_TRANSITIONS.get(Appointment.Status(appointment.status), set())
            if status not in allowed:
                raise Conflict(
                    f"An appointment cannot go from {appointment.status} to {status}.", code="invalid_transition"
                )
            appointment.status = status
            changed.append("status")
        if start is not None or end is not None:
            new_start, new_end = start or appointment.start, end or appointment.end
            if new_end <= new_start:
                raise Invalid("The end must come after the start.", code="invalid_period")
            appointment.start, appointment.end = new_start, new_end
            changed += ["start", "end"]
        if location is not None:
            appointment.location = location
            changed.append("location")
        if preparation is not None:
            appointment.preparation = preparation
            changed.append("preparation")
        if clear_change_request:
            appointment.change_request = ""
            appointment.change_note = ""
            changed += ["change_request", "change_note"]
        if not changed:
            raise Invalid("Nothing to change.", code="no_changes")
        if appointment.status in LIVE_APPOINTMENT and {"status", "start"} & set(changed):
            _ensure_slot_free(appointment.clinician_id, appointment.start, appointment.end, appointment.pk)
        appointment.save(update_fields=[*changed, "updated_at"])
        _audit(actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, "changed:" + ",".join(changed))
        _publish(
            EventType.APPOINTMENT_CHANGED,
            access,
            Resource.APPOINTMENT,
            appointment.pk,
            actor,
            Capability.SCHEDULE,
            appointment.confidential,
            status=appointment.status,
        )
    return appointment


def appointment_confirm(*, actor: User, access: ChildAccess, appointment_id: uuid.UUID) -> Appointment:
    """A guardian confirms they will come."""
    access.require(Capability.FAMILY_SCHEDULE)
    with transaction.atomic():
        appointment = _appointment(access, appointment_id, lock=True)
        if appointment.status not in (Appointment.Status.PROPOSED, Appointment.Status.BOOKED):
            raise Conflict("Only a proposed or booked appointment can be confirmed.", code="invalid_transition")
        if appointment.start <= timezone.now():
            raise Conflict("This appointment has already started.", code="appointment_past")
        appointment.guardian_confirmed_at = timezone.now()
        appointment.save(update_fields=["guardian_confirmed_at", "updated_at"])
        _audit(actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, "confirmed")
        _publish(
            EventType.APPOINTMENT_CHANGED,
            access,
            Resource.APPOINTMENT,
            appointment.pk,
            actor,
            Capability.SCHEDULE,
            confirmed=True,
        )
    return appointment


def appointment_request_change(
    *, actor: User, access: ChildAccess, appointment_id: uuid.UUID, action: str, note: str = ""
) -> Appointment:
    """A guardian asks staff to cancel or move an appointment; staff act on it (nothing changes silently)."""
    access.require(Capability.FAMILY_SCHEDULE)
    with transaction.atomic():
        appointment = _appointment(access, appointment_id, lock=True)
        if appointment.status not in (Appointment.Status.PROPOSED, Appointment.Status.BOOKED):
            raise Conflict("Only a proposed or booked appointment can be changed.", code="invalid_transition")
        appointment.change_request = action
        appointment.change_note = note
        appointment.change_requested_at = timezone.now()
        appointment.change_requested_by = actor
        appointment.save(
            update_fields=["change_request", "change_note", "change_requested_at", "change_requested_by", "updated_at"]
        )
        _audit(actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, f"change_requested:{action}")
        _publish(
            EventType.APPOINTMENT_CHANGED,
            access,
            Resource.APPOINTMENT,
            appointment.pk,
            actor,
            Capability.SCHEDULE,
            change_request=action,
        )
    return appointment


# -- medication plans and doses -----------------------------------------------------------------


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
        _audit(actor, audit.Action.CREATE, Resource.MEDICATION_REQUEST, plan.pk, access)
        _publish(
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
    return _child_row(MedicationPlan.objects.all(), access, plan_id, lock=lock, what="medication plan")


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
        _audit(actor, audit.Action.CREATE, Resource.MEDICATION_ADMINISTRATION, dose.pk, access, status)
        _publish(
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


# -- refills ------------------------------------------------------------------------------------

REFILL_TRANSITIONS: dict[str, set[str]] = {
    RefillRequest.Status.REQUESTED: {
        RefillRequest.Status.APPROVED,
        RefillRequest.Status.DENIED,
        RefillRequest.Status.CANCELLED,
    },
    RefillRequest.Status.APPROVED: {RefillRequest.Status.SENT_TO_PHARMACY, RefillRequest.Status.CANCELLED},
    RefillRequest.Status.SENT_TO_PHARMACY: {RefillRequest.Status.READY},
    RefillRequest.Status.READY: {RefillRequest.Status.PICKED_UP},
}
GUARDIAN_CANCELLABLE = {RefillRequest.Status.REQUESTED, RefillRequest.Status.APPROVED}


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


def refill_request(
    *,
    actor: User,
    access: ChildAccess,
    plan_id: uuid.UUID,
    pharmacy: str = "",
    note: str = "",
    idempotency_key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """A guardian asks for a refill of an active plan with refills remaining (one open request per plan).

    With an ``Idempotency-Key``, a retry returns the first answer and the same key with another body
    is refused (422). Returns (status code, body).
    """
    access.require(Capability.FAMILY_CLINICAL)
    body = {"plan_id": str(plan_id), "pharmacy": pharmacy, "note": note, "child_id": str(access.child.pk)}
    with transaction.atomic():
        replay = None
        if idempotency_key is not None:
            replay = idempotency.begin(user=actor, scope="refill.request", key=idempotency_key, payload=body)
            if replay.done:
                return replay.status_code, replay.response
        plan = plan_for(access, plan_id, lock=True)
        if plan.status != MedicationPlan.Status.ACTIVE or (plan.end and plan.end <= timezone.now()):
            raise Conflict("Refills can be requested only for an active medication plan.", code="plan_not_active")
        if plan.refills_remaining <= 0:
            raise Conflict(
                "No refills remain on this prescription; message the care team.", code="no_refills_remaining"
            )
        if RefillRequest.objects.filter(plan=plan, status__in=OPEN_REFILL_STATUSES).exists():
            raise Conflict("A refill request for this medicine is already open.", code="refill_already_open")
        try:
            with transaction.atomic():
                refill = RefillRequest.objects.create(
                    plan=plan, child=access.child, pharmacy=pharmacy or plan.pharmacy, note=note, requested_by=actor
                )
        except IntegrityError:  # the partial unique index: a concurrent request won
            raise Conflict("A refill request for this medicine is already open.", code="refill_already_open") from None
        RefillTransition.objects.create(refill=refill, from_status="", to_status=refill.status, actor=actor)
        _audit(actor, audit.Action.CREATE, Resource.TASK, refill.pk, access, "refill_requested")
        _publish(
            EventType.REFILL_CHANGED,
            access,
            Resource.TASK,
            refill.pk,
            actor,
            Capability.CLINICAL,
            plan.confidential,
            status=refill.status,
        )
        response = refill_out(refill)
        if replay is not None:
            replay.finish(201, response)
    return 201, response


def refill_transition(
    *, actor: User, access: ChildAccess, refill_id: uuid.UUID, to: str, reason: str = ""
) -> RefillRequest:
    """The care team moves a request along; approval uses up exactly one refill, under a row lock."""
    if to == RefillRequest.Status.CANCELLED and not access.is_clinician:
        access.require(Capability.CLINICAL)
    else:
        access.require(Capability.TREAT)
    with transaction.atomic():
        refill = RefillRequest.objects.select_for_update().filter(pk=refill_id, child=access.child).first()
        if refill is None or (refill.plan.confidential and not access.is_clinician):
            raise NotFound("No such refill request.")
        allowed = REFILL_TRANSITIONS.get(refill.status, set())
        if not access.is_clinician and refill.status not in GUARDIAN_CANCELLABLE:
            allowed = set()
        if to not in allowed:
            raise Conflict(f"A refill request cannot go from {refill.status} to {to}.", code="invalid_transition")
        if to == RefillRequest.Status.DENIED and not reason.strip():
            raise Invalid("Give the family a reason for the denial.", code="reason_required")
        if to == RefillRequest.Status.APPROVED:
            used = MedicationPlan.objects.filter(pk=refill.plan_id, refills_remaining__gt=0).update(
                refills_remaining=F("refills_remaining") - 1
            )
            if not used:
                raise Conflict("No refills remain on this prescription.", code="no_refills_remaining")
        previous = refill.status
        refill.status = to
        refill.decided_by = actor if access.is_clinician else refill.decided_by
        update = ["status", "decided_by", "updated_at"]
        if to == RefillRequest.Status.DENIED:
            refill.denial_reason = reason.strip()
            update.append("denial_reason")
        refill.save(update_fields=update)
        RefillTransition.objects.create(refill=refill, from_status=previous, to_status=to, actor=actor)
        _audit(actor, audit.Action.UPDATE, Resource.TASK, refill.pk, access, f"refill:{previous}->{to}")
        _publish(
            EventType.REFILL_CHANGED,
            access,
            Resource.TASK,
            refill.pk,
            actor,
            Capability.CLINICAL,
            refill.plan.confidential,
            status=to,
        )
    return refill


# -- coverage -----------------------------------------------------------------------------------


def coverage_submit(
    *,
    actor: User,
    access: ChildAccess,
    payer: str,
    member_id: str,
    plan_name: str = "",
    group_number: str = "",
    subscriber_name: str = "",
    subscriber_relationship: str = "parent",
    period_start: date | None = None,
    period_end: date | None = None,
    copays: dict[str, str] | None = None,
) -> Coverage:
    """A guardian submits new card details; they show as pending until staff verify them."""
    access.require(Capability.FAMILY_CLINICAL)
    with transaction.atomic():
        Coverage.objects.filter(child=access.child, status=Coverage.Status.PENDING).update(
            status=Coverage.Status.SUPERSEDED
        )
        coverage = Coverage.objects.create(
            child=access.child,
            status=Coverage.Status.PENDING,
            payer=payer,
            plan_name=plan_name,
            member_id=member_id,
            group_number=group_number,
            subscriber_name=subscriber_name,
            subscriber_relationship=subscriber_relationship,
            period_start=period_start,
            period_end=period_end,
            copays=copays or {},
            submitted_by=actor,
        )
        _audit(actor, audit.Action.CREATE, Resource.COVERAGE, coverage.pk, access, "submitted")
        _publish(
            EventType.COVERAGE_CHANGED,
            access,
            Resource.COVERAGE,
            coverage.pk,
            actor,
            Capability.CLINICAL,
            status=coverage.status,
        )
    return coverage


def coverage_statuses(rows: Iterable[Coverage], today: date) -> dict[uuid.UUID, str]:
    """Each row's status as of ``today`` (the child's local date): verified coverage whose period has
    started replaces the active one, without waiting for a job to write it down."""
    rows = list(rows)
    statuses = {row.pk: row.status for row in rows}
    started = [
        row
        for row in rows
        if row.status == Coverage.Status.PENDING_START and row.period_start is not None and row.period_start <= today
    ]
    if started:
        current = max(started, key=lambda row: (row.period_start, row.verified_at or row.submitted_at))
        for row in rows:
            if row.status == Coverage.Status.ACTIVE or row in started:
                statuses[row.pk] = Coverage.Status.SUPERSEDED
        statuses[current.pk] = Coverage.Status.ACTIVE
    return statuses


def _coverage_settle(child: Child, today: date) -> None:
    """Write down the statuses ``coverage_statuses`` derives (call inside a transaction)."""
    rows = list(
        Coverage.objects.select_for_update().filter(
            child=child, status__in=[Coverage.Status.ACTIVE, Coverage.Status.PENDING_START]
        )
    )
    statuses = coverage_statuses(rows, today)
    for row in rows:
        status = statuses[row.pk]
        if status != row.status:
            row.status = status
            row.save(update_fields=["status"])


def coverage_verify(
    *, actor: User, access: ChildAccess, coverage_id: uuid.UUID, accept: bool, reason: str = ""
) -> Coverage:
    """Staff verify or reject pending coverage. Verified coverage that starts today or earlier becomes
    active (the old one superseded); coverage that starts later is ``pending_start`` and the current
    coverage stays active until that day (in the child's time zone)."""
    access.require(Capability.MANAGE)
    with transaction.atomic():
        coverage = Coverage.objects.select_for_update().filter(pk=coverage_id, child=access.child).first()
        if coverage is None:
            raise NotFound("No such coverage.")
        if coverage.status != Coverage.Status.PENDING:
            raise Conflict("Only pending coverage can be verified.", code="not_pending")
        today = access.child.local_today()
        _coverage_settle(access.child, today)
        if accept and coverage.period_start is not None and coverage.period_start > today:
            # A later verification replaces an earlier card that has not started yet.
            Coverage.objects.filter(child=access.child, status=Coverage.Status.PENDING_START).update(
                status=Coverage.Status.SUPERSEDED
            )
            coverage.status = Coverage.Status.PENDING_START
        elif accept:
            Coverage.objects.filter(
                child=access.child, status__in=[Coverage.Status.ACTIVE, Coverage.Status.PENDING_START]
            ).update(status=Coverage.Status.SUPERSEDED)
            coverage.status = Coverage.Status.ACTIVE
        else:
            coverage.status = Coverage.Status.REJECTED
            coverage.rejection_reason = reason[:200]
        coverage.verified_by = actor
        coverage.verified_at = timezone.now()
        coverage.save(update_fields=["status", "verified_by", "verified_at", "rejection_reason"])
        _audit(actor, audit.Action.UPDATE, Resource.COVERAGE, coverage.pk, access, "verified" if accept else "rejected")
        _publish(
            EventType.COVERAGE_CHANGED,
            access,
            Resource.COVERAGE,
            coverage.pk,
            actor,
            Capability.CLINICAL,
            status=coverage.status,
        )
    return coverage


# -- calendar feed ------------------------------------------------------------------------------


def feed_token_hash(token: str) -> str:
    return keyring().blind_index(token, purpose="care.calendar_feed")


def calendar_feed_issue(*, actor: User, include_doses: bool = False) -> tuple[CalendarFeed, str]:
    """Issue a new secret feed URL token; any earlier one stops working at once."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        CalendarFeed.objects.filter(guardian=actor, revoked_at__isnull=True).update(revoked_at=timezone.now())
        feed = CalendarFeed.objects.create(
            guardian=actor, token_hash=feed_token_hash(token), include_doses=include_doses
        )
        audit.record(actor=actor, action=audit.Action.CREATE, entity_type=Resource.CALENDAR_FEED, entity_id=feed.pk)
    return feed, token


def calendar_feed_revoke(*, actor: User) -> int:
    with transaction.atomic():
        count = CalendarFeed.objects.filter(guardian=actor, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if count:
            audit.record(actor=actor, action=audit.Action.DELETE, entity_type=Resource.CALENDAR_FEED, reason="revoked")
    return count
