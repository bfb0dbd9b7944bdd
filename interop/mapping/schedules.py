"""Schedule + Slot → the clinicians' hours and open slots (``care.models.WorkingHours``,
``ScheduleException``), which ``care.scheduling`` turns into the open slots families book.

A Schedule names whose calendar it is: one Practitioner or PractitionerRole (its department comes
with the role) and, optionally, a Location by display. It makes no row of its own; the import
remembers the clinician, department and place for its Slots. A Schedule of several practitioners, or
of none (a room's, a device's), is rejected with a reason.

A Slot is one instance of time, where the portal keeps weekly patterns; each maps to the row that
gives exactly that time:

- ``free`` → working hours on that one day (``valid_from`` = ``valid_until`` = the Slot's day in the
  hospital's time zone), one slot as long as the Slot, so the portal offers that time and no other;
- ``busy-unavailable`` → time off for that span;
- ``busy`` and ``busy-tentative`` → no row: the time is taken (the Appointment that holds it is
  imported as such), so the portal must not offer it; ``entered-in-error`` likewise.

A Slot crossing midnight (hours are a day's start and end), shorter than five minutes (the portal's
shortest slot), or of an inactive Schedule is rejected with a reason. A changed Slot replaces its
row; a removed one (or one no longer free) deletes it, audited: the audit trail keeps its history.
A Schedule that changes (another clinician or place) reaches the Slots imported after it; the rows
of Slots already imported change when those Slots do.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from care.models import ScheduleException, WorkingHours
from interop.context import Context, hospital_time_zone
from interop.errors import Unmappable, named
from interop.fhir import Resource, parse_instant
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit
from portal.vocabulary import Resource as Entity

SLOT_STATUSES = frozenset({"free", "busy", "busy-unavailable", "busy-tentative", "entered-in-error"})
MIN_SLOT_MINUTES = 5
MAX_SLOT_MINUTES = 12 * 60
LOCATION_MAX = 120


def schedule_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    people = [
        actor
        for actor in data.get("actor") or []
        if str(actor.get("reference") or "").partition("/")[0] in ("Practitioner", "PractitionerRole")
    ]
    if not people:
        raise Unmappable("schedule_without_practitioner")
    if len(people) > 1:
        raise Unmappable("schedule_several_practitioners")
    clinician, department = ctx.clinician(people[0])
    location = next(
        (
            str(actor.get("display") or "")[:LOCATION_MAX]
            for actor in data.get("actor") or []
            if str(actor.get("reference") or "").startswith("Location/") and actor.get("display")
        ),
        "",
    )
    state = {
        "department": str(department.pk) if department is not None else None,
        "location": location,
        "active": data.get("active") is not False,
    }
    return Mapped(targets=[str(clinician.pk)], state=state)


def schedule_remove(ctx: Context, record: SourceRecord) -> None:
    """Nothing of its own to end: its Slots, gone from the export with it, end their rows."""


def _slot_row(ctx: Context, data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The kind of row a Slot becomes and its fields, or None when it makes none."""
    status = str(data.get("status") or "")
    if status not in SLOT_STATUSES:
        raise Unmappable(f"slot_status:{named(status, set())}")
    schedule = ctx.record("Schedule", data.get("schedule"))
    start, end = parse_instant(data.get("start")), parse_instant(data.get("end"))
    if start is None or end is None:
        raise Unmappable("no_time")
    if end <= start:
        raise Unmappable("invalid_period")
    if status not in ("free", "busy-unavailable"):
        return None
    if not schedule.state.get("active", True):
        raise Unmappable("schedule_inactive")
    clinician_id = uuid.UUID(schedule.target)
    department = schedule.state.get("department")
    if status == "busy-unavailable":
        return "time_off", {
            "clinician_id": clinician_id,
            "department_id": department,
            "kind": ScheduleException.Kind.TIME_OFF,
            "start": start,
            "end": end,
        }
    zone = hospital_time_zone()
    local_start, local_end = start.astimezone(ZoneInfo(zone)), end.astimezone(ZoneInfo(zone))
    if local_start.date() != local_end.date():
        raise Unmappable("slot_crosses_midnight")
    minutes = int((end - start) / timedelta(minutes=1))
    if minutes < MIN_SLOT_MINUTES:
        raise Unmappable("slot_too_short")
    if minutes > MAX_SLOT_MINUTES:
        raise Unmappable("slot_too_long")
    return "hours", {
        "clinician_id": clinician_id,
        "department_id": department,
        "location": schedule.state.get("location") or str(settings.PORTAL_NEUTRAL_LOCATION)[:LOCATION_MAX],
        "weekday": local_start.weekday(),
        "start": local_start.time().replace(tzinfo=None),
        "end": local_end.time().replace(tzinfo=None),
        "time_zone": zone,
        "slot_minutes": minutes,
        "valid_from": local_start.date(),
        "valid_until": local_start.date(),
    }


MODELS: dict[str, type[WorkingHours] | type[ScheduleException]] = {
    "hours": WorkingHours,
    "time_off": ScheduleException,
}


def _same(row: Any, wanted: dict[str, Any]) -> bool:
    return all(getattr(row, name) == value or str(getattr(row, name)) == str(value) for name, value in wanted.items())


def _delete(ctx: Context, record: SourceRecord, reason: str) -> None:
    model = MODELS.get(str(record.state.get("kind") or ""))
    if model is None or not record.targets:
        return
    deleted, _ = model._default_manager.filter(pk=record.target).delete()
    if deleted:
        ctx.audit(audit.Action.DELETE, Entity.SCHEDULE, record.target, reason=reason)


def slot_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    made = _slot_row(ctx, resource.data)
    if record is not None and record.targets and record.state.get("kind"):
        model = MODELS[str(record.state["kind"])]
        row = model._default_manager.filter(pk=record.target).first()
        if made is not None and row is not None and made[0] == record.state["kind"] and _same(row, made[1]):
            return Mapped(targets=[str(row.pk)], state={"kind": made[0]})
        _delete(ctx, record, "ehr_slot_changed")
    if made is None:
        return Mapped(targets=[], state={})
    kind, fields = made
    row = MODELS[kind]._default_manager.create(**fields)
    ctx.audit(audit.Action.CREATE, Entity.SCHEDULE, row.pk, reason="ehr_import:" + kind)
    return Mapped(targets=[str(row.pk)], state={"kind": kind})


def slot_remove(ctx: Context, record: SourceRecord) -> None:
    _delete(ctx, record, "ehr_removed")


SCHEDULE = Mapping(target_type="portal.User", apply=schedule_apply, remove=schedule_remove)
# A Slot's row is working hours or time off: its record's ``state["kind"]`` says which.
SLOT = Mapping(target_type="care.WorkingHours|ScheduleException", apply=slot_apply, remove=slot_remove)
