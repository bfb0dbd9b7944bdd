"""Appointments: staff book, move and close them (never two live ones of a clinician at once);
guardians confirm or ask for a change."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from care.models import (
    Appointment,
)
from care.services.common import audit_child, child_row, publish
from portal import audit
from portal.access import Capability, ChildAccess, active_clinician
from portal.errors import Conflict, Invalid
from portal.models import User
from portal.vocabulary import EventType, Resource

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
        audit_child(actor, audit.Action.CREATE, Resource.APPOINTMENT, appointment.pk, access)
        publish(
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


def _appointment(access: ChildAccess, appointment_id: uuid.UUID, *, lock: bool = False) -> Appointment:
    return child_row(Appointment.objects.all(), access, appointment_id, lock=lock, what="appointment")


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
        audit_child(
            actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, "changed:" + ",".join(changed)
        )
        publish(
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
        audit_child(actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, "confirmed")
        publish(
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
        audit_child(
            actor, audit.Action.UPDATE, Resource.APPOINTMENT, appointment.pk, access, f"change_requested:{action}"
        )
        publish(
            EventType.APPOINTMENT_CHANGED,
            access,
            Resource.APPOINTMENT,
            appointment.pk,
            actor,
            Capability.SCHEDULE,
            change_request=action,
        )
    return appointment
