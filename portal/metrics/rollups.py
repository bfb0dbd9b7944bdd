"""The incremental rollup refresh: the daily tables (calls, actions, population, responses per day)
and the monthly tables the comparison and the estimator read (attributed calls with distinct callers,
person-time), recomputed only for dirty days and their months.

Exposure is person-time: a patient counts on the days between registration (``registered_on``) and
exit (``exited_on``), so new patients enter the population when they arrive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce

from portal.metrics.common import (
    COHORTS_STALE,
    WRITE_BATCH,
    days_between,
    flagged,
    month_of,
    next_month,
    week_of,
)
from portal.metrics.derive import CALLBACK_WINDOW
from portal.metrics.models import (
    CallRecord,
    Cohort,
    DailyCohortRollup,
    DailyPopulation,
    DailyResponseRollup,
    DailyTopicRollup,
    DirtyDay,
    MessageResponse,
    MetricsPatient,
    MonthlyCohortRollup,
    MonthlyExposure,
    MonthlyGuardians,
    PeriodCallers,
    SelfServiceEvent,
)
from portal.metrics.population import cohort_sizes_refresh

ALL_DEPARTMENTS = "*"  # the hospital-wide row of MonthlyGuardians
ALL_TOPICS = "*"  # the all-topics rows of MonthlyCohortRollup (distinct callers cannot be summed)
UNATTRIBUTED = date(1900, 1, 1)  # the cohort month of MonthlyCohortRollup rows of unattributed calls


def _enrolled_q(prefix: str, day_field: str) -> Q:
    p = prefix
    return Q(**{f"{p}enrolled_on__lte": F(day_field)}) & (
        Q(**{f"{p}unenrolled_on__isnull": True}) | Q(**{f"{p}unenrolled_on__gt": F(day_field)})
    )


def _cohort_case(prefix: str = "patient__") -> Case:
    return Case(
        When(**{f"{prefix}isnull": True}, then=Value(Cohort.UNATTRIBUTED)),
        When(_enrolled_q(prefix, "day"), then=Value(Cohort.ENROLLED)),
        default=Value(Cohort.NOT_ENROLLED),
        output_field=IntegerField(),
    )


def _refresh_range(first: date, last: date) -> None:
    """Recompute every rollup row of the days ``first``..``last`` (inclusive) from the raw tables."""
    DailyTopicRollup.objects.filter(day__range=(first, last)).delete()
    DailyPopulation.objects.filter(day__range=(first, last)).delete()
    DailyCohortRollup.objects.filter(day__range=(first, last)).delete()
    DailyResponseRollup.objects.filter(day__range=(first, last)).delete()

    window_start = ExpressionWrapper(OuterRef("started_at") - Value(CALLBACK_WINDOW), output_field=DateTimeField())
    by_family = SelfServiceEvent.objects.filter(
        family_hash=OuterRef("caller_hash"),
        topic=OuterRef("topic"),
        occurred_at__lt=OuterRef("started_at"),
        occurred_at__gte=window_start,
    )
    by_patient = SelfServiceEvent.objects.filter(
        patient_id=OuterRef("patient_id"),
        topic=OuterRef("topic"),
        occurred_at__lt=OuterRef("started_at"),
        occurred_at__gte=window_start,
    )
    calls = (
        CallRecord.objects.filter(day__range=(first, last), direction=CallRecord.Direction.INBOUND)
        .annotate(
            dept=Coalesce(F("patient__department"), Value("")),
            cohort=_cohort_case(),
            after_portal=Case(
                When(Q(caller_hash__gt="") & Exists(by_family), then=Value(1)),
                When(Q(patient__isnull=False) & Exists(by_patient), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
            who=Coalesce(Cast("patient_id", CharField()), F("caller_hash")),
        )
        .values("day", "dept", "topic", "cohort")
        .annotate(
            n=Count("id"),
            cb=Count("id", filter=Q(after_portal=1)),
            people=Count("who", distinct=True),
        )
    )
    cells: dict[tuple[date, str, str, int], DailyTopicRollup] = {}

    def cell(day: date, dept: str, topic: str, cohort: int) -> DailyTopicRollup:
        key = (day, dept, topic, cohort)
        if key not in cells:
            cells[key] = DailyTopicRollup(
                day=day, week=week_of(day), month=month_of(day), department=dept, topic=topic, cohort=cohort
            )
        return cells[key]

    for row in calls:
        item = cell(row["day"], row["dept"], row["topic"], row["cohort"])
        item.calls, item.callbacks, item.patients = row["n"], row["cb"], row["people"]
    actions = (
        SelfServiceEvent.objects.filter(day__range=(first, last))
        .annotate(dept=Coalesce(F("patient__department"), Value("")), cohort=_cohort_case())
        .values("day", "dept", "topic", "cohort")
        .annotate(n=Count("id"), people=Count("guardian_hash", distinct=True))
    )
    for row in actions:
        item = cell(row["day"], row["dept"], row["topic"], row["cohort"])
        item.actions = row["n"]
        # A lower bound of the distinct people in the cell (suppression never under-counts them).
        item.patients = max(item.patients, row["people"])
    DailyTopicRollup.objects.bulk_create(cells.values(), batch_size=WRITE_BATCH)

    cohorts = (
        CallRecord.objects.filter(
            day__range=(first, last), direction=CallRecord.Direction.INBOUND, patient__isnull=False
        )
        .values("day", "topic", "patient__cohort_month")
        .annotate(n=Count("id"))
    )
    DailyCohortRollup.objects.bulk_create(
        (
            DailyCohortRollup(
                day=row["day"],
                month=month_of(row["day"]),
                topic=row["topic"],
                cohort_month=row["patient__cohort_month"],
                calls=row["n"],
            )
            for row in cohorts
        ),
        batch_size=WRITE_BATCH,
    )
    _population(first, last)
    responses = (
        MessageResponse.objects.filter(day__range=(first, last))
        .annotate(dept=Coalesce(F("patient__department"), Value("")))
        .values("day", "dept")
        .annotate(
            n=Count("id"),
            total=Coalesce(Sum("seconds"), Value(0)),
            h1=Count("id", filter=Q(seconds__lte=3600)),
            h4=Count("id", filter=Q(seconds__lte=4 * 3600)),
            h24=Count("id", filter=Q(seconds__lte=24 * 3600)),
        )
    )
    DailyResponseRollup.objects.bulk_create(
        DailyResponseRollup(
            day=row["day"],
            week=week_of(row["day"]),
            month=month_of(row["day"]),
            department=row["dept"],
            responses=row["n"],
            total_seconds=row["total"],
            within_1h=row["h1"],
            within_4h=row["h4"],
            within_24h=row["h24"],
        )
        for row in responses
    )


def _monthly_guardians(months: Iterable[date]) -> None:
    for month in sorted(set(months)):
        following = (month + timedelta(days=32)).replace(day=1)
        events = SelfServiceEvent.objects.filter(day__gte=month, day__lt=following)
        rows = [
            MonthlyGuardians(month=month, department=row["dept"], guardians=row["n"])
            for row in events.annotate(dept=Coalesce(F("patient__department"), Value("")))
            .values("dept")
            .annotate(n=Count("guardian_hash", distinct=True))
        ]
        total = events.aggregate(n=Count("guardian_hash", distinct=True))["n"]
        rows.append(MonthlyGuardians(month=month, department=ALL_DEPARTMENTS, guardians=total))
        MonthlyGuardians.objects.filter(month=month).delete()
        MonthlyGuardians.objects.bulk_create(rows)


def _ranges(days: Iterable[date], max_span: int = 31) -> list[tuple[date, date]]:
    """Contiguous runs of days, each at most ``max_span`` long."""
    ordered = sorted(set(days))
    runs: list[tuple[date, date]] = []
    for day in ordered:
        if runs and runs[-1][1] + timedelta(days=1) == day and (day - runs[-1][0]).days < max_span:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def rollups_refresh(*, days: Iterable[date] | None = None) -> int:
    """Recompute the rollups of the given days, or of every day marked dirty. Returns days refreshed."""
    explicit = days is not None
    todo = (
        sorted(set(days)) if days is not None else list(DirtyDay.objects.order_by("day").values_list("day", flat=True))
    )
    for first, last in _ranges(todo):
        with transaction.atomic():
            _refresh_range(first, last)
            if not explicit:
                DirtyDay.objects.filter(day__range=(first, last)).delete()
    if todo:
        months = {month_of(day) for day in todo}
        _monthly_guardians(months)
        for month in sorted(months):
            with transaction.atomic():
                monthly_refresh(month)
        with transaction.atomic():
            callers_refresh(todo)
    if flagged(COHORTS_STALE):
        cohort_sizes_refresh()
    return len(todo)


def _present_q(day: date) -> Q:
    return (Q(registered_on__isnull=True) | Q(registered_on__lte=day)) & (
        Q(exited_on__isnull=True) | Q(exited_on__gt=day)
    )


def _running(first: date, last: date, start: str, end: str, base_q: Q) -> dict[str, list[int]]:
    """Per department, the count of patients inside [start, end) on each day of first..last."""
    span = (last - first).days + 1
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * span)
    for row in MetricsPatient.objects.filter(base_q).values("department").annotate(n=Count("id")):
        counts[row["department"]][0] += row["n"]
    later = (first + timedelta(days=1), last)
    for field, sign in ((start, 1), (end, -1)):
        for row in (
            MetricsPatient.objects.filter(**{f"{field}__range": later})
            .values("department", field)
            .annotate(n=Count("id"))
        ):
            counts[row["department"]][(row[field] - first).days] += sign * row["n"]
    for values in counts.values():
        for index in range(1, span):
            values[index] += values[index - 1]
    return counts


def _population(first: date, last: date) -> None:
    """Patients present (registered, not exited) and enrolled, per day and department."""
    present = _running(first, last, "registered_on", "exited_on", _present_q(first))
    enrolled_q = Q(enrolled_on__lte=first) & (Q(unenrolled_on__isnull=True) | Q(unenrolled_on__gt=first))
    enrolled = _running(first, last, "enrolled_on", "unenrolled_on", enrolled_q & _present_q(first))
    rows = []
    for dept in sorted(set(present) | set(enrolled)):
        for index, day in enumerate(days_between(first, last)):
            rows.append(
                DailyPopulation(
                    day=day,
                    week=week_of(day),
                    month=month_of(day),
                    department=dept,
                    patients=max(0, present[dept][index]) if dept in present else 0,
                    enrolled=max(0, enrolled[dept][index]) if dept in enrolled else 0,
                )
            )
    DailyPopulation.objects.bulk_create(rows, batch_size=WRITE_BATCH)


def _exposure(month: date) -> list[MonthlyExposure]:
    """Patient-days per department and enrolment month in ``month``."""
    following = next_month(month)
    present = (Q(registered_on__isnull=True) | Q(registered_on__lt=following)) & (
        Q(exited_on__isnull=True) | Q(exited_on__gt=month)
    )
    cells: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    for dept, cohort, registered, exited in (
        MetricsPatient.objects.filter(present)
        .values_list("department", "cohort_month", "registered_on", "exited_on")
        .iterator(chunk_size=WRITE_BATCH)
    ):
        first = max(month, registered) if registered else month
        end = min(following, exited) if exited else following
        days = (end - first).days
        if days > 0:
            cell = cells[(dept, cohort)]
            cell[0] += 1
            cell[1] += days
    return [
        MonthlyExposure(month=month, department=dept, cohort_month=cohort, patients=n, patient_days=pd)
        for (dept, cohort), (n, pd) in cells.items()
    ]


def _after_portal() -> Case:
    window_start = ExpressionWrapper(OuterRef("started_at") - Value(CALLBACK_WINDOW), output_field=DateTimeField())
    by_patient = SelfServiceEvent.objects.filter(
        patient_id=OuterRef("patient_id"),
        topic=OuterRef("topic"),
        occurred_at__lt=OuterRef("started_at"),
        occurred_at__gte=window_start,
    )
    return Case(When(Exists(by_patient), then=Value(1)), default=Value(0), output_field=IntegerField())


def _monthly_calls(month: date) -> list[MonthlyCohortRollup]:
    """Attributed inbound calls per department, topic (and all topics) and enrolment month."""
    inbound = CallRecord.objects.filter(
        day__gte=month, day__lt=next_month(month), direction=CallRecord.Direction.INBOUND
    )
    calls = inbound.filter(patient__isnull=False).annotate(after_portal=_after_portal())
    measures: dict[str, Any] = {
        "calls": Count("id"),
        "callers": Count("patient_id", distinct=True),
        "callbacks": Count("id", filter=Q(after_portal=1)),
        "mrn_calls": Count("id", filter=Q(mrn_hash__gt="")),
        "mrn_calls_phone_known": Count("id", filter=Q(mrn_hash__gt="", phone_known=True)),
    }
    rows = []
    for row in calls.values("patient__department", "topic", "patient__cohort_month").annotate(**measures):
        rows.append((row["topic"], row))
    for row in calls.values("patient__department", "patient__cohort_month").annotate(**measures):
        rows.append((ALL_TOPICS, row))
    out = [
        MonthlyCohortRollup(
            month=month,
            department=row["patient__department"],
            topic=topic,
            cohort_month=row["patient__cohort_month"],
            **{name: row[name] for name in measures},
        )
        for topic, row in rows
    ]
    unattributed = inbound.filter(patient__isnull=True).aggregate(
        n=Count("id"), m=Count("id", filter=Q(mrn_hash__gt=""))
    )
    if unattributed["n"]:
        out.append(
            MonthlyCohortRollup(
                month=month,
                department="",
                topic=ALL_TOPICS,
                cohort_month=UNATTRIBUTED,
                calls=unattributed["n"],
                mrn_calls=unattributed["m"],
            )
        )
    return out


def monthly_refresh(month: date) -> None:
    """Recompute the monthly calls and exposure of one month (call inside a transaction)."""
    MonthlyCohortRollup.objects.filter(month=month).delete()
    MonthlyExposure.objects.filter(month=month).delete()
    MonthlyCohortRollup.objects.bulk_create(_monthly_calls(month), batch_size=WRITE_BATCH)
    MonthlyExposure.objects.bulk_create(_exposure(month), batch_size=WRITE_BATCH)


PERIOD_DAYS = {"day": lambda start: start, "week": lambda start: start + timedelta(days=6)}


def _period_end(kind: str, start: date) -> date:
    if kind == "month":
        return next_month(start) - timedelta(days=1)
    return PERIOD_DAYS[kind](start)


def _callers(kind: str, first: date, last: date) -> list[PeriodCallers]:
    """Distinct callers of one week or month (``first`` its start), or of every day of first..last."""
    calls = CallRecord.objects.filter(day__range=(first, last), direction=CallRecord.Direction.INBOUND).annotate(
        dept=Coalesce(F("patient__department"), Value("")),
        cohort=_cohort_case(),
        who=Coalesce(Cast("patient_id", CharField()), F("caller_hash")),
    )
    who = Count("who", distinct=True, filter=Q(patient__isnull=False) | Q(caller_hash__gt=""))
    by_day = ("day",) if kind == "day" else ()
    rows: list[PeriodCallers] = []
    for fields, topic_of, cohort_of in (
        (("dept", "topic", "cohort"), lambda r: r["topic"], lambda r: r["cohort"]),
        (("dept", "cohort"), lambda r: ALL_TOPICS, lambda r: r["cohort"]),
        (("dept", "topic"), lambda r: r["topic"], lambda r: PeriodCallers.ALL_COHORTS),
        (("dept",), lambda r: ALL_TOPICS, lambda r: PeriodCallers.ALL_COHORTS),
    ):
        for row in calls.values(*by_day, *fields).annotate(n=who):
            rows.append(
                PeriodCallers(
                    kind=kind,
                    start=row["day"] if kind == "day" else first,
                    department=row["dept"],
                    topic=topic_of(row),
                    cohort=cohort_of(row),
                    callers=row["n"],
                )
            )
    return rows


def callers_refresh(days: Iterable[date]) -> None:
    """Recompute the distinct callers of the given days and of their weeks and months (in a transaction)."""
    todo = sorted(set(days))
    for first, last in _ranges(todo):
        PeriodCallers.objects.filter(kind="day", start__range=(first, last)).delete()
        PeriodCallers.objects.bulk_create(_callers("day", first, last), batch_size=WRITE_BATCH)
    periods = {("week", week_of(day)) for day in todo} | {("month", month_of(day)) for day in todo}
    for kind, start in sorted(periods):
        PeriodCallers.objects.filter(kind=kind, start=start).delete()
        PeriodCallers.objects.bulk_create(_callers(kind, start, _period_end(kind, start)), batch_size=WRITE_BATCH)
