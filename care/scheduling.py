"""The one owner of hours and duty: clinic blocks, open slots, on-call duty, and the business hours
(hospital-wide, or a department's own) that reply-by times and after-hours replies are counted in.

The messenger asks this module; it keeps no hours of its own. Every function takes the moment
explicitly (callers pass ``django.utils.timezone.now()``, which tests freeze).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Case, IntegerField, Q, Value, When

from care.models import DepartmentHours, ScheduleException, WorkingHours
from portal import zones
from portal.access import current_membership_q
from portal.models import CareTeamMembership, Department, DepartmentMembership


@dataclass(frozen=True)
class Block:
    clinician_id: uuid.UUID
    location: str
    start: datetime
    end: datetime
    slot_minutes: int


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def clinic_blocks(hours: Iterable[WorkingHours], start: datetime, end: datetime) -> list[Block]:
    """Working-hour blocks in ``[start, end)``, in each clinic's own time zone (DST-safe)."""
    blocks = []
    for row in hours:
        tz = zones.zone(row.time_zone)
        day = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date() + timedelta(days=1)
        while day <= last:
            valid = day >= row.valid_from and (row.valid_until is None or day <= row.valid_until)
            if valid and day.weekday() == row.weekday:
                begin = datetime.combine(day, row.start, tzinfo=tz).astimezone(UTC)
                finish = datetime.combine(day, row.end, tzinfo=tz).astimezone(UTC)
                if _overlaps(begin, finish, start, end):
                    blocks.append(Block(row.clinician_id, row.location, begin, finish, row.slot_minutes))
            day += timedelta(days=1)
    return sorted(blocks, key=lambda block: (block.start, str(block.clinician_id)))


def without_time_off(blocks: list[Block], exceptions: Iterable[ScheduleException]) -> list[Block]:
    """Drop (or trim) blocks that fall in a clinician's time off."""
    result: list[Block] = []
    offs = [e for e in exceptions if e.kind == ScheduleException.Kind.TIME_OFF]
    for block in blocks:
        pieces = [(block.start, block.end)]
        for off in offs:
            if off.clinician_id != block.clinician_id:
                continue
            next_pieces = []
            for piece_start, piece_end in pieces:
                if not _overlaps(piece_start, piece_end, off.start, off.end):
                    next_pieces.append((piece_start, piece_end))
                    continue
                if piece_start < off.start:
                    next_pieces.append((piece_start, off.start))
                if off.end < piece_end:
                    next_pieces.append((off.end, piece_end))
            pieces = next_pieces
        result.extend(Block(block.clinician_id, block.location, s, e, block.slot_minutes) for s, e in pieces)
    return result


@dataclass(frozen=True)
class Slot:
    clinician_id: uuid.UUID
    location: str
    start: datetime
    end: datetime


def open_slots(
    blocks: list[Block], booked: Iterable[tuple[uuid.UUID, datetime, datetime]], *, after: datetime, limit: int
) -> list[Slot]:
    """The first ``limit`` free slots starting at or after ``after`` (FHIR Slot, status free)."""
    busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = {}
    for clinician_id, start, end in booked:
        busy.setdefault(clinician_id, []).append((start, end))
    slots: list[Slot] = []
    for block in sorted(blocks, key=lambda b: b.start):
        step = timedelta(minutes=block.slot_minutes)
        moment = block.start
        while moment + step <= block.end:
            if moment >= after and not any(
                _overlaps(moment, moment + step, s, e) for s, e in busy.get(block.clinician_id, [])
            ):
                slots.append(Slot(block.clinician_id, block.location, moment, moment + step))
            moment += step
    slots.sort(key=lambda slot: (slot.start, str(slot.clinician_id)))
    return slots[:limit]


def on_call_at(exceptions: Iterable[ScheduleException], moment: datetime) -> set[uuid.UUID]:
    return {
        e.clinician_id for e in exceptions if e.kind == ScheduleException.Kind.ON_CALL and e.start <= moment < e.end
    }


# -- business hours ------------------------------------------------------------------------------

_MAX_DAYS = 370  # a year of holidays cannot make a search loop forever


@dataclass(frozen=True)
class BusinessHours:
    time_zone: str
    weekdays: frozenset[int]  # 0 = Monday
    opens: time
    closes: time
    holidays: frozenset[str]  # ISO dates on which the care team is closed all day


def hospital_time_zone() -> str:
    """``PORTAL_HOSPITAL_TIME_ZONE`` (required in production; the demo hospital is in Chicago)."""
    return str(getattr(settings, "PORTAL_HOSPITAL_TIME_ZONE", "") or settings.TIME_ZONE)


def hospital_hours() -> BusinessHours:
    """``PORTAL_BUSINESS_HOURS``: {"weekdays": [0..4], "opens": "08:00", "closes": "17:00",
    "holidays": ["2026-12-25"]}, in the hospital's time zone unless it names another."""
    raw: dict[str, Any] = getattr(settings, "PORTAL_BUSINESS_HOURS", {}) or {}
    return BusinessHours(
        time_zone=str(raw.get("time_zone") or hospital_time_zone()),
        weekdays=frozenset(int(day) for day in raw.get("weekdays", (0, 1, 2, 3, 4))),
        opens=time.fromisoformat(str(raw.get("opens", "08:00"))),
        closes=time.fromisoformat(str(raw.get("closes", "17:00"))),
        holidays=frozenset(str(day) for day in raw.get("holidays", ())),
    )


def department_hours(department: Department | uuid.UUID | None) -> BusinessHours:
    """The department's own hours where it keeps them (``DepartmentHours``), else the hospital's."""
    hospital = hospital_hours()
    if department is None:
        return hospital
    department_id = department.pk if isinstance(department, Department) else department
    own = DepartmentHours.objects.filter(department_id=department_id).first()
    if own is None:
        return hospital
    return BusinessHours(
        time_zone=own.time_zone or hospital.time_zone,
        weekdays=frozenset(int(day) for day in own.weekdays),
        opens=own.opens,
        closes=own.closes,
        holidays=hospital.holidays | frozenset(str(day) for day in own.holidays),
    )


def _is_business_day(day: date, hours: BusinessHours) -> bool:
    return day.weekday() in hours.weekdays and day.isoformat() not in hours.holidays


def _window(day: date, hours: BusinessHours, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return datetime.combine(day, hours.opens, tzinfo=tz), datetime.combine(day, hours.closes, tzinfo=tz)


def is_open(moment: datetime, hours: BusinessHours | None = None) -> bool:
    hours = hours or hospital_hours()
    tz = zones.zone(hours.time_zone)
    local = moment.astimezone(tz)
    if not _is_business_day(local.date(), hours):
        return False
    start, end = _window(local.date(), hours, tz)
    return start <= moment < end


def next_open(moment: datetime, hours: BusinessHours | None = None) -> datetime:
    """``moment`` itself when open, else the next opening."""
    hours = hours or hospital_hours()
    tz = zones.zone(hours.time_zone)
    day = moment.astimezone(tz).date()
    for _ in range(_MAX_DAYS):
        if _is_business_day(day, hours):
            start, end = _window(day, hours, tz)
            if moment < end:
                return max(start, moment)
        day += timedelta(days=1)
    return moment


def last_close(moment: datetime, hours: BusinessHours | None = None) -> datetime:
    """The most recent closing at or before ``moment`` (when the current out-of-hours period began)."""
    hours = hours or hospital_hours()
    tz = zones.zone(hours.time_zone)
    day = moment.astimezone(tz).date()
    for _ in range(_MAX_DAYS):
        if _is_business_day(day, hours):
            _, end = _window(day, hours, tz)
            if end <= moment:
                return end
        day -= timedelta(days=1)
    return moment


@dataclass(frozen=True)
class ClosedPeriod:
    """An out-of-hours period: since the last closing until the next opening."""

    since: datetime
    reopens: datetime


def closed_period(department: Department | uuid.UUID | None, moment: datetime) -> ClosedPeriod | None:
    """The out-of-hours period of the department (its own hours, else the hospital's) that ``moment``
    falls in, or None while it is open."""
    hours = department_hours(department)
    if is_open(moment, hours):
        return None
    return ClosedPeriod(since=last_close(moment, hours), reopens=next_open(moment, hours))


def department_reply_by(
    department: Department | uuid.UUID | None, moment: datetime, minutes: int, business_only: bool
) -> datetime:
    """``reply_by`` counted in the department's business hours (its own, else the hospital's)."""
    return reply_by(moment, minutes, business_only, department_hours(department) if business_only else None)


def add_business_minutes(moment: datetime, minutes: int, hours: BusinessHours | None = None) -> datetime:
    """The instant ``minutes`` of business time after ``moment``."""
    hours = hours or hospital_hours()
    tz = zones.zone(hours.time_zone)
    remaining = timedelta(minutes=minutes)
    cursor = next_open(moment, hours)
    for _ in range(_MAX_DAYS):
        _, end = _window(cursor.astimezone(tz).date(), hours, tz)
        available = end - cursor
        if remaining <= available:
            return cursor + remaining
        remaining -= available
        cursor = next_open(end, hours)
    return cursor + remaining


def reply_by(moment: datetime, minutes: int, business_only: bool, hours: BusinessHours | None = None) -> datetime:
    """When a reply is owed: ``minutes`` of business time, or of clock time around the clock."""
    if business_only:
        return add_business_minutes(moment, minutes, hours)
    return moment + timedelta(minutes=minutes)


# -- on call and department leads ----------------------------------------------------------------


def on_call_rota(*, child_id: uuid.UUID, department: Department | None, moment: datetime) -> list[uuid.UUID]:
    """Clinicians on call at ``moment`` for the department or on the child's care team, in paging
    order: the child's care team first, then the department's duty, each by the start of the duty."""
    care_team = CareTeamMembership.objects.filter(current_membership_q(moment), child_id=child_id).values(
        "clinician_id"
    )
    scope = Q(clinician_id__in=care_team)
    if department is not None:
        members = DepartmentMembership.objects.filter(department=department, active=True).values("clinician_id")
        scope |= Q(clinician_id__in=members) | Q(department=department)
    rows = (
        ScheduleException.objects.filter(
            scope, kind=ScheduleException.Kind.ON_CALL, start__lte=moment, end__gt=moment, clinician__is_active=True
        )
        .annotate(
            on_team=Case(When(clinician_id__in=care_team, then=Value(0)), default=Value(1), output_field=IntegerField())
        )
        .order_by("on_team", "start", "clinician_id")
        .values_list("clinician_id", flat=True)
    )
    return list(dict.fromkeys(rows))


def department_leads(department: Department | uuid.UUID | None) -> list[uuid.UUID]:
    """The active leads of a department (where an unanswered red flag ends up)."""
    if department is None:
        return []
    return list(
        DepartmentMembership.objects.filter(department=department, is_lead=True, active=True, clinician__is_active=True)
        .order_by("clinician_id")
        .values_list("clinician_id", flat=True)
    )
