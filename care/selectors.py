"""Reads of the child's care record, scoped by the access policy and audited."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from care import dosing, scheduling
from care.models import (
    OPEN_REFILL_STATUSES,
    Appointment,
    CalendarFeed,
    Coverage,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    ScheduleException,
    WorkingHours,
)
from care.results import ClinicianSchedule, CoverageAsOf, PlanStatus
from care.services import coverage_statuses, feed_token_hash, plan_for
from care.today import today as today  # one glance (its own module: prepared queries)
from portal import audit, zones
from portal.access import (
    Capability,
    ChildAccess,
    care_team_memberships,
    current_membership_q,
    effective_scope,
    guardian_links,
    hide_confidential,
    is_portal_manager,
)
from portal.models import CareTeamMembership, User
from portal.pagination import Pager
from portal.vocabulary import Resource

SCHEDULE_DAYS = 14
OPEN_SLOTS = 5


def _reads(user: User, entity_type: Resource, access: ChildAccess) -> None:
    audit.reads(user, entity_type, [access.child.pk])


# -- schedules and appointments -----------------------------------------------------------------


def child_schedule(*, user: User, access: ChildAccess, now: datetime | None = None) -> list[ClinicianSchedule]:
    """For each clinician on the child's care team: clinic hours in the next two weeks, the next open
    slots, and whether they are on call now."""
    moment = now or timezone.now()
    horizon = moment + timedelta(days=SCHEDULE_DAYS)
    members = list(
        CareTeamMembership.objects.filter(current_membership_q(moment), child=access.child)
        .select_related("clinician", "department")
        .order_by("role")
    )
    clinician_ids = {m.clinician_id for m in members}
    hours = list(WorkingHours.objects.filter(clinician_id__in=clinician_ids))
    exceptions = list(
        ScheduleException.objects.filter(clinician_id__in=clinician_ids, end__gt=moment, start__lt=horizon)
    )
    booked = list(
        Appointment.objects.filter(
            clinician_id__in=clinician_ids, status__in=("booked", "arrived"), end__gt=moment, start__lt=horizon
        ).values_list("clinician_id", "start", "end")
    )
    blocks = scheduling.without_time_off(scheduling.clinic_blocks(hours, moment, horizon), exceptions)
    on_call = scheduling.on_call_at(exceptions, moment)
    _reads(user, Resource.SCHEDULE, access)
    result = []
    for member in members:
        own = [b for b in blocks if b.clinician_id == member.clinician_id]
        result.append(
            ClinicianSchedule(
                member=member,
                on_call_now=member.clinician_id in on_call,
                in_clinic_now=any(b.start <= moment < b.end for b in own),
                clinic_hours=own,
                next_open_slots=scheduling.open_slots(own, booked, after=moment, limit=OPEN_SLOTS),
            )
        )
    return result


def appointments_list(
    *,
    user: User,
    access: ChildAccess,
    when: str = "upcoming",
    now: datetime | None = None,
    page: Pager | None = None,
) -> list[Appointment]:
    moment = now or timezone.now()
    rows = Appointment.objects.filter(child=access.child).select_related("clinician", "department")
    rows = hide_confidential(rows, access)
    rows = (
        rows.filter(end__gt=moment).order_by("start")
        if when == "upcoming"
        else rows.filter(end__lte=moment).order_by("-start")
    )
    _reads(user, Resource.APPOINTMENT, access)
    return list(page.queryset(rows) if page is not None else rows[:200])


# -- medication plans ---------------------------------------------------------------------------


# The plan's columns the medication list shows or computes the schedule from.
PLAN_COLUMNS = (
    "id",
    "medication",
    "strength",
    "form",
    "dose_quantity",
    "dose_unit",
    "route",
    "schedule_kind",
    "times_of_day",
    "weekdays",
    "interval_hours",
    "min_interval_minutes",
    "max_per_day",
    "start",
    "end",
    "instructions",
    "prescriber",
    "refills_allowed",
    "refills_remaining",
    "pharmacy",
    "status",
)


def _plan_status(plan: MedicationPlan, tz: ZoneInfo, logs: list[DoseLog], now: datetime) -> PlanStatus:
    recorded = {log.scheduled_for for log in logs if log.scheduled_for is not None}
    pairs = [(log.scheduled_for, log.status) for log in logs]
    adherence = [dosing.adherence(plan, tz, now, days, pairs) for days in (7, 30)]
    if plan.status != MedicationPlan.Status.ACTIVE:
        return PlanStatus(plan, None, [], None, adherence)
    if plan.schedule_kind == MedicationPlan.ScheduleKind.AS_NEEDED:
        given = [log.occurred_at for log in logs if log.status == DoseLog.Status.GIVEN]
        return PlanStatus(plan, None, [], dosing.next_as_needed(plan, tz, given, now), adherence)
    overdue = [at for at in dosing.occurrences(plan, tz, now - timedelta(hours=24), now) if at not in recorded]
    return PlanStatus(plan, dosing.next_due(plan, tz, now, recorded), overdue, None, adherence)


def plans_list(*, user: User, access: ChildAccess, now: datetime | None = None) -> list[PlanStatus]:
    """Active and recent plans with the next dose, overdue doses and adherence over 7 and 30 days."""
    moment = now or timezone.now()
    tz = zones.zone(access.child.time_zone)
    # Only what the answer shows: of the prescriber the name (``User.__str__``), of each dose what
    # the schedule and adherence are computed from (no note, no recorder).
    plans = list(
        hide_confidential(MedicationPlan.objects.filter(child=access.child), access)
        .select_related("prescriber")
        .only(*PLAN_COLUMNS, "prescriber__id", "prescriber__display_name", "prescriber__email")
        .order_by("status", "start")
    )
    logs: dict[uuid.UUID, list[DoseLog]] = defaultdict(list)
    recent = DoseLog.objects.filter(plan__in=plans, occurred_at__gte=moment - timedelta(days=31))
    for log in recent.only("plan_id", "scheduled_for", "occurred_at", "status").order_by("occurred_at"):
        logs[log.plan_id].append(log)
    _reads(user, Resource.MEDICATION_REQUEST, access)
    return [_plan_status(plan, tz, logs[plan.pk], moment) for plan in plans]


def doses_list(
    *, user: User, access: ChildAccess, plan_id: uuid.UUID, days: int = 30, page: Pager | None = None
) -> list[DoseLog]:
    plan = plan_for(access, plan_id)
    since = timezone.now() - timedelta(days=days)
    rows = (
        DoseLog.objects.filter(plan=plan, occurred_at__gte=since).select_related("recorded_by").order_by("-occurred_at")
    )
    _reads(user, Resource.MEDICATION_ADMINISTRATION, access)
    return list(page.queryset(rows) if page is not None else rows)


# -- refills and coverage -----------------------------------------------------------------------


def refills_list(*, user: User, access: ChildAccess, page: Pager | None = None) -> list[RefillRequest]:
    rows = RefillRequest.objects.filter(child=access.child).select_related("plan").order_by("-requested_at")
    if not access.is_clinician:
        rows = rows.filter(plan__confidential=False)
    _reads(user, Resource.TASK, access)
    return list(page.queryset(rows) if page is not None else rows[:200])


def refill_queue(*, user: User, status: str | None = None, page: Pager | None = None) -> list[RefillRequest]:
    """Refill requests for the children on the clinician's care teams, oldest first (plan and child
    loaded)."""
    child_ids = list(care_team_memberships(user).values_list("child_id", flat=True))
    rows = RefillRequest.objects.filter(child_id__in=child_ids).select_related("plan", "child")
    rows = rows.filter(status=status) if status else rows.filter(status__in=OPEN_REFILL_STATUSES)
    rows_list = list(page.queryset(rows) if page is not None else rows.order_by("requested_at")[:500])
    audit.reads(user, Resource.TASK, sorted({row.child_id for row in rows_list}, key=str))
    return rows_list


def coverage_list(*, user: User, access: ChildAccess) -> list[CoverageAsOf]:
    """Active coverage and any change waiting for verification (and, for staff, the history)."""
    rows = list(Coverage.objects.filter(child=access.child).order_by("-submitted_at")[:50])
    current = [row for row in rows if row.status in (Coverage.Status.ACTIVE, Coverage.Status.PENDING_START)]
    statuses = coverage_statuses(current, access.child.local_today())
    shown = {Coverage.Status.ACTIVE, Coverage.Status.PENDING, Coverage.Status.PENDING_START, Coverage.Status.REJECTED}
    _reads(user, Resource.COVERAGE, access)
    return [
        CoverageAsOf(row, statuses.get(row.pk, row.status))
        for row in rows
        if access.can(Capability.MANAGE) or statuses.get(row.pk, row.status) in shown
    ]


# -- calendar -----------------------------------------------------------------------------------


def calendar_ics(*, token: str, now: datetime | None = None) -> bytes | None:
    """The guardian's feed (RFC 5545), or None for an unknown or revoked token. Appointments name the
    child by first name, the time and a neutral place (``PORTAL_NEUTRAL_LOCATION``, whatever the
    scope: feeds end up in shared and synced calendars); never a diagnosis, department, clinic name or
    visit reason."""
    from icalendar import Alarm, Calendar, Event

    feed = (
        CalendarFeed.objects.select_related("guardian")
        .filter(token_hash=feed_token_hash(token), revoked_at__isnull=True)
        .first()
    )
    if feed is None:
        return None
    moment = now or timezone.now()
    guardian = feed.guardian
    links = list(guardian_links(guardian, moment))
    children = {link.child_id: link.child for link in links}
    calendar = Calendar()
    calendar.add("prodid", "-//Family care portal//Appointments//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "Care appointments")
    rows = Appointment.objects.filter(
        child_id__in=list(children),
        confidential=False,
        end__gt=moment - timedelta(days=30),
        status__in=("proposed", "booked", "arrived"),
    ).order_by("start")
    for row in rows:
        first_name = children[row.child_id].name.split()[0]
        event = Event()
        event.add("uid", f"appointment-{row.pk}@care-portal")
        event.add("dtstamp", moment)
        event.add("dtstart", row.start)
        event.add("dtend", row.end)
        event.add("summary", f"Appointment for {first_name}")
        event.add("location", settings.PORTAL_NEUTRAL_LOCATION)
        event.add("status", "TENTATIVE" if row.status == "proposed" else "CONFIRMED")
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Appointment for {first_name}")
        alarm.add("trigger", timedelta(hours=-24))
        event.add_component(alarm)
        calendar.add_component(event)
    if feed.include_doses:
        full = [link.child_id for link in links if effective_scope(link, moment) == "full"]
        for plan in MedicationPlan.objects.filter(child_id__in=full, status="active", confidential=False):
            tz = zones.zone(children[plan.child_id].time_zone)
            first_name = children[plan.child_id].name.split()[0]
            for at in dosing.occurrences(plan, tz, moment, moment + timedelta(days=7)):
                event = Event()
                event.add("uid", f"dose-{plan.pk}-{int(at.timestamp())}@care-portal")
                event.add("dtstamp", moment)
                event.add("dtstart", at)
                event.add("duration", timedelta(minutes=15))
                event.add("summary", f"Medicine due for {first_name}")
                calendar.add_component(event)
    audit.reads(guardian, Resource.APPOINTMENT, list(children))
    return bytes(calendar.to_ical())


def calendar_feed_active(*, user: User) -> CalendarFeed | None:
    """The user's calendar feed in force, if any."""
    return CalendarFeed.objects.filter(guardian=user, revoked_at__isnull=True).first()


# -- the care team's queues ---------------------------------------------------------------------


def _care_team_child_ids(user: User) -> list[uuid.UUID]:
    return list(care_team_memberships(user).values_list("child_id", flat=True))


def coverage_queue(*, user: User) -> list[Coverage]:
    """Coverage waiting for verification, oldest first (child loaded): of the children on the user's
    care teams, and for a portal manager (``manage_portal``) of every child, as ``coverage_verify``
    allows."""
    rows = Coverage.objects.filter(status=Coverage.Status.PENDING).select_related("child")
    if not is_portal_manager(user):
        rows = rows.filter(child_id__in=_care_team_child_ids(user))
    rows_list = list(rows.order_by("submitted_at")[:500])
    audit.reads(user, Resource.COVERAGE, sorted({row.child_id for row in rows_list}, key=str))
    return rows_list


def change_request_queue(*, user: User) -> list[Appointment]:
    """Proposed or booked appointments of the children on the clinician's care teams whose family asked
    to cancel or move them, oldest request first (child and clinician loaded)."""
    rows = (
        Appointment.objects.filter(
            child_id__in=_care_team_child_ids(user),
            status__in=(Appointment.Status.PROPOSED, Appointment.Status.BOOKED),
        )
        .exclude(change_request="")
        .select_related("child", "clinician")
    )
    rows_list = list(rows.order_by("change_requested_at")[:500])
    audit.reads(user, Resource.APPOINTMENT, sorted({row.child_id for row in rows_list}, key=str))
    return rows_list
