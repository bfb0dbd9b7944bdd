"""``/me/today``: everything a guardian needs at a glance, for every child they may see.

A fixed seven queries however many children and plans (links, appointments, plans, doses, refills,
new results and visit summaries, unread messages), each a ``portal.prepared`` query compiled once per
process and shape, reading only the columns the answer shows. Every query starts from the guardian's
links in force at this moment, so a revoked or expired link hides its child on the very next call;
rows are built with ``Model.from_db`` so that encrypted fields decrypt only when the answer reads them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from care import dosing
from care.models import (
    OPEN_REFILL_STATUSES,
    Appointment,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    ResultsSeen,
    TestResult,
    VisitSummary,
)
from care.presenters import appointment_out, refill_out
from care.services.results import family_results_q, family_summaries_q
from portal import audit, zones
from portal.access import effective_scope, live_link_q
from portal.models import Child, Department, GuardianLink, User
from portal.prepared import Prepared
from portal.vocabulary import Resource

TODAY_APPOINTMENTS = 3
# New results and visit summaries: those released in the last NEW_DAYS that the guardian has not
# seen yet, the newest NEW_SHOWN of them per child (with the count of all).
NEW_DAYS = 30
NEW_SHOWN = 5
UPCOMING = ("proposed", "booked", "arrived")

LINK_FIELDS = ("id", "scope", "adolescent_exception")
CHILD_FIELDS = ("id", "name", "date_of_birth", "time_zone", "adolescent_from")
APPOINTMENT_FIELDS = (
    "id",
    "child_id",
    "clinician_id",
    "department_id",
    "location",
    "start",
    "end",
    "status",
    "visit_type",
    "preparation",
    "guardian_confirmed_at",
    "change_request",
    "change_note",
)
PLAN_FIELDS = (
    "id",
    "child_id",
    "medication",
    "dose_quantity",
    "dose_unit",
    "schedule_kind",
    "times_of_day",
    "weekdays",
    "interval_hours",
    "min_interval_minutes",
    "max_per_day",
    "start",
    "end",
)
DOSE_FIELDS = ("plan_id", "scheduled_for", "occurred_at", "status")
REFILL_FIELDS = (
    "id",
    "plan_id",
    "child_id",
    "status",
    "pharmacy",
    "note",
    "denial_reason",
    "requested_at",
    "updated_at",
)


def _live_children(user: uuid.UUID, now: datetime) -> QuerySet[GuardianLink, Any]:
    return GuardianLink.objects.filter(live_link_q(now), guardian_id=user).values("child_id")


def _active_plans(user: uuid.UUID, now: datetime, ended_after: datetime) -> QuerySet[MedicationPlan]:
    return MedicationPlan.objects.filter(
        Q(end__isnull=True) | Q(end__gt=ended_after),
        child_id__in=_live_children(user, now),
        confidential=False,
        status=MedicationPlan.Status.ACTIVE,
    )


LINKS = Prepared(
    lambda user, now: GuardianLink.objects.filter(live_link_q(now), guardian_id=user).values_list(
        *LINK_FIELDS, *(f"child__{name}" for name in CHILD_FIELDS)
    )
)
APPOINTMENTS = Prepared(
    lambda user, now: (
        Appointment.objects.filter(
            child_id__in=_live_children(user, now), confidential=False, end__gt=now, status__in=UPCOMING
        )
        .order_by("start", "id")
        .values_list(*APPOINTMENT_FIELDS, "clinician__display_name", "clinician__email", "department__name")
    )
)
PLANS = Prepared(
    lambda user, now, ended_after: (
        _active_plans(user, now, ended_after).order_by("start", "id").values_list(*PLAN_FIELDS)
    )
)
DOSES = Prepared(
    lambda user, now, ended_after, since: DoseLog.objects.filter(
        plan__in=_active_plans(user, now, ended_after).values("id"), occurred_at__gte=since
    ).values_list(*DOSE_FIELDS)
)
REFILLS = Prepared(
    lambda user, now: (
        RefillRequest.objects.filter(
            child_id__in=_live_children(user, now), status__in=OPEN_REFILL_STATUSES, plan__confidential=False
        )
        .order_by("requested_at", "id")
        .values_list(*REFILL_FIELDS)
    )
)


def _unseen(model: type[TestResult] | type[VisitSummary], q: Q, user: uuid.UUID, now: datetime) -> QuerySet[Any]:
    """The model's items a family reads (``q``) and the guardian has not seen: released (``out_at``)
    after the guardian's marker for the child, or with no marker yet."""
    marker = "results_seen_at" if model is TestResult else "summaries_seen_at"
    seen = ResultsSeen.objects.filter(
        guardian_id=user, child_id=OuterRef("child_id"), **{f"{marker}__gte": OuterRef("out_at")}
    )
    return (
        model.objects.filter(q, child_id__in=_live_children(user, now))
        .annotate(out_at=Coalesce("released_at", "hold_until"))
        .exclude(Exists(seen))
    )


# One query for both: results (with their flag) and visit summaries (title and date), in the same
# columns; ``kind`` tells them apart.
NEW_ITEMS = Prepared(
    lambda user, now, since: (
        _unseen(TestResult, family_results_q(now), user, now)
        .filter(out_at__gt=since)
        .annotate(kind=Value("result", output_field=CharField()))
        .values_list("kind", "id", "child_id", "name", "effective_at", "out_at", "interpretation")
        .union(
            _unseen(VisitSummary, family_summaries_q(now), user, now)
            .filter(out_at__gt=since)
            .annotate(
                kind=Value("visit_summary", output_field=CharField()),
                interpretation=Value("", output_field=CharField()),
            )
            .values_list("kind", "id", "child_id", "title", "date", "out_at", "interpretation"),
            all=True,
        )
    )
)


def _load(model: Any, fields: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    return model.from_db("default", fields, values)


def _children(user: User, moment: datetime) -> tuple[dict[uuid.UUID, Child], dict[uuid.UUID, str]]:
    children: dict[uuid.UUID, Child] = {}
    scopes: dict[uuid.UUID, str] = {}
    width = len(LINK_FIELDS)
    for row in LINKS.rows(user=user.pk, now=moment):
        child = _load(Child, CHILD_FIELDS, row[width:])
        link = _load(GuardianLink, LINK_FIELDS, row[:width])
        link.child = child
        children[child.pk] = child
        scopes[child.pk] = effective_scope(link, moment)
    return children, scopes


def _appointments(user: User, moment: datetime, children: dict[uuid.UUID, Child]) -> dict[uuid.UUID, list[Any]]:
    upcoming: dict[uuid.UUID, list[Any]] = defaultdict(list)
    width = len(APPOINTMENT_FIELDS)
    for row in APPOINTMENTS.rows(user=user.pk, now=moment):
        appointment = _load(Appointment, APPOINTMENT_FIELDS, row[:width])
        if appointment.child_id not in children or len(upcoming[appointment.child_id]) >= TODAY_APPOINTMENTS:
            continue
        display_name, email, department_name = row[width:]
        appointment.clinician = _load(User, ("id", "display_name", "email"), (row[2], display_name, email))
        appointment.department = (
            _load(Department, ("id", "name"), (row[3], department_name)) if row[3] is not None else None
        )
        upcoming[appointment.child_id].append(appointment)
    return upcoming


def _doses(user: User, moment: datetime, children: dict[uuid.UUID, Child], full: set[uuid.UUID]) -> dict[Any, Any]:
    ended_after = moment - timedelta(hours=24)
    rows = PLANS.rows(user=user.pk, now=moment, ended_after=ended_after)
    plans = [plan for plan in (_load(MedicationPlan, PLAN_FIELDS, row) for row in rows) if plan.child_id in full]
    logs: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    since = moment - timedelta(days=2)
    for plan_id, scheduled_for, occurred_at, status in DOSES.rows(
        user=user.pk, now=moment, ended_after=ended_after, since=since
    ):
        logs[plan_id].append((scheduled_for, occurred_at, status))
    doses: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for plan in plans:
        tz = zones.zone(children[plan.child_id].time_zone)
        base = {
            "plan_id": plan.pk,
            "medication": plan.medication,
            "dose": f"{plan.dose_quantity.normalize():f} {plan.dose_unit}",
        }
        if plan.schedule_kind == MedicationPlan.ScheduleKind.AS_NEEDED:
            given = [occurred for _, occurred, status in logs[plan.pk] if status == DoseLog.Status.GIVEN]
            at = dosing.next_as_needed(plan, tz, given, moment)
            doses[plan.child_id].append({**base, "at": at, "overdue": False, "as_needed": True})
            continue
        recorded = {scheduled for scheduled, _, _ in logs[plan.pk] if scheduled}
        for at in dosing.occurrences(plan, tz, moment - timedelta(hours=24), moment + timedelta(hours=24)):
            if at not in recorded:
                doses[plan.child_id].append({**base, "at": at, "overdue": at < moment, "as_needed": False})
    return doses


def _new_items(user: User, moment: datetime, full: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """Per full-scope child: the results and visit summaries released to the family since the
    guardian last looked at them (``care.services.results_seen``), newest first."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for kind, pk, child_id, name, at, out_at, interpretation in NEW_ITEMS.rows(
        user=user.pk, now=moment, since=moment - timedelta(days=NEW_DAYS)
    ):
        if child_id not in full:
            continue
        if kind == "result":
            row = _load(TestResult, ("id", "child_id", "name"), (pk, child_id, name))
            title = row.name
        else:
            row = _load(VisitSummary, ("id", "child_id", "title"), (pk, child_id, name))
            title = row.title
        item = {"kind": kind, "id": pk, "name": title, "date": at, "released_at": out_at}
        found[child_id].append(item | {"interpretation": interpretation or None})
    new: dict[uuid.UUID, dict[str, Any]] = {}
    for child_id, items in found.items():
        items.sort(key=lambda item: (item["released_at"], item["date"], str(item["id"])), reverse=True)
        new[child_id] = {
            "results": sum(1 for item in items if item["kind"] == "result"),
            "visit_summaries": sum(1 for item in items if item["kind"] == "visit_summary"),
            "items": items[:NEW_SHOWN],
        }
    return new


def _unread_counts(user: User, child_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Unread messages per child, from the messenger when one is installed (one query)."""
    path = getattr(settings, "PORTAL_UNREAD_COUNTER", "")
    if not path or not child_ids:
        return {}
    counter = import_string(path)
    return dict(counter(user=user, child_ids=child_ids))


def today(*, user: User, now: datetime | None = None) -> dict[str, Any]:
    """Everything a guardian needs at a glance, for every child they may see, in a fixed number of
    queries whatever the number of children and plans."""
    moment = now or timezone.now()
    children, scopes = _children(user, moment)
    full = {child_id for child_id, scope in scopes.items() if scope == GuardianLink.Scope.FULL}
    child_ids = list(children)
    upcoming = _appointments(user, moment, children) if children else {}
    doses = _doses(user, moment, children, full) if full else {}
    refills: dict[uuid.UUID, list[RefillRequest]] = defaultdict(list)
    if full:
        for row in REFILLS.rows(user=user.pk, now=moment):
            refill = _load(RefillRequest, REFILL_FIELDS, row)
            if refill.child_id in full:
                refills[refill.child_id].append(refill)
    new = _new_items(user, moment, full) if full else {}
    unread = _unread_counts(user, child_ids)
    # One append: the children read, and the results and summaries shown by name.
    entries = [(Resource.PATIENT, child_id) for child_id in child_ids]
    entries += [(Resource.OBSERVATION, child_id) for child_id, found in new.items() if found["results"]]
    entries += [(Resource.DOCUMENT_REFERENCE, child_id) for child_id, found in new.items() if found["visit_summaries"]]
    audit.record_many(
        [audit.Entry(action=audit.Action.READ, entity_type=kind, entity_id=cid, child_id=cid) for kind, cid in entries],
        actor=user,
    )
    result = []
    for child_id, child in sorted(children.items(), key=lambda item: (item[1].date_of_birth, str(item[0]))):
        clinical = child_id in full
        result.append(
            {
                "child": {"id": child_id, "name": child.name, "scope": scopes[child_id]},
                "appointments": [appointment_out(row, limited=not clinical) for row in upcoming.get(child_id, [])],
                "doses": sorted(doses.get(child_id, []), key=lambda d: d["at"]) if clinical else None,
                "open_refills": [refill_out(r) for r in refills[child_id]] if clinical else None,
                "new_results": (new.get(child_id) or {"results": 0, "visit_summaries": 0, "items": []})
                if clinical
                else None,
                "unread_messages": unread.get(child_id, 0),
            }
        )
    return {"generated_at": moment, "children": result}
