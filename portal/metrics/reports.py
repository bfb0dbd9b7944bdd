"""The period report (calls, rates, portal use per day, week or month). Every report reads the
rollup tables only, never raw calls or events.

Cells about fewer than ``PORTAL_METRICS_MIN_CELL`` distinct patients are suppressed, with the
complementary cells that would let them be recovered by subtraction (``disclosure``); their counts
and rates become null and ``suppressed`` lists what was hidden. Month rows carry the seasonally
matched, control-referenced deflection figures (``deflection``); every row its call-backs against
the same-topic base rate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum

from portal import audit
from portal.errors import Invalid
from portal.metrics import deflection
from portal.metrics.common import month_of, next_month, week_of
from portal.metrics.config import metrics_settings
from portal.metrics.disclosure import protect
from portal.metrics.models import (
    NEVER,
    Cohort,
    DailyPopulation,
    DailyResponseRollup,
    DailyTopicRollup,
    MonthlyGuardians,
    PeriodCallers,
)
from portal.metrics.rollups import ALL_DEPARTMENTS, ALL_TOPICS
from portal.vocabulary import Resource

Period = Literal["day", "week", "month"]
GroupBy = Literal["none", "topic", "department"]
MAX_SPAN_DAYS = 3 * 366


def min_cell() -> int:
    return int(settings.PORTAL_METRICS_MIN_CELL)


@dataclass(frozen=True)
class Window:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def check_window(start: date, end: date) -> Window:
    if end < start or (end - start).days > MAX_SPAN_DAYS:
        raise Invalid("end must not be before start, and the period at most 3 years.", code="invalid_period")
    return Window(start, end)


def baseline_window(start: date | None = None, end: date | None = None) -> Window | None:
    config = metrics_settings()
    first = start or config.baseline_start
    last = end or config.baseline_end
    if first is None or last is None:
        return None
    return check_window(first, last)


def _ratio(numerator: float | None, denominator: float | None, scale: float = 1.0) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator * scale / denominator, 4)


def _filtered(queryset: QuerySet[Any], department: str | None, topic: str | None) -> QuerySet[Any]:
    if department is not None:
        queryset = queryset.filter(department=department)
    if topic is not None:
        queryset = queryset.filter(topic=topic)
    return queryset


COHORT_PARTS = {Cohort.ENROLLED: "enrolled", Cohort.NOT_ENROLLED: "not_enrolled", Cohort.UNATTRIBUTED: "unattributed"}
ALL = PeriodCallers.ALL_COHORTS


@dataclass
class Query:
    period: Period
    window: Window
    group_field: str | None
    department: str | None
    topic: str | None

    @property
    def keys(self) -> list[str]:
        return [self.period] + ([self.group_field] if self.group_field else [])


@dataclass
class Cell:
    calls: int = 0
    callbacks: int = 0
    actions: int = 0
    by_cohort: dict[int, int] = field(default_factory=dict)


def _cells(query: Query) -> dict[tuple[Any, ...], Cell]:
    rows = _filtered(
        DailyTopicRollup.objects.filter(day__range=(query.window.start, query.window.end)),
        query.department,
        query.topic,
    )
    cells: dict[tuple[Any, ...], Cell] = {}
    for row in rows.values(*query.keys, "cohort").annotate(
        calls=Sum("calls"), callbacks=Sum("callbacks"), actions=Sum("actions")
    ):
        cell = cells.setdefault(tuple(row[name] for name in query.keys), Cell())
        cell.calls += row["calls"]
        cell.callbacks += row["callbacks"]
        cell.actions += row["actions"]
        cell.by_cohort[row["cohort"]] = row["calls"]
    return cells


def _clipped(query: Query, start: date) -> bool:
    """Whether the window cuts the period starting at ``start`` (its distinct count is then unknown)."""
    if query.period == "day":
        return False
    end = start + timedelta(days=6) if query.period == "week" else next_month(start) - timedelta(days=1)
    return start < query.window.start or end > query.window.end


def _people(query: Query) -> dict[tuple[Any, ...], int]:
    """Distinct patients per (period, [group], cohort or ALL), for the cells and their margins.

    Whole periods use the stored distinct counts; a period cut by the window's edge uses the largest
    daily count inside the window (a lower bound: it may hide more, never less).
    """
    people: dict[tuple[Any, ...], int] = defaultdict(int)
    first = query.window.start if query.period == "day" else week_of(query.window.start)
    if query.period == "month":
        first = month_of(query.window.start)
    rows = PeriodCallers.objects.filter(kind=query.period, start__range=(first, query.window.end))
    if query.department is not None:
        rows = rows.filter(department=query.department)
    clipped: set[date] = set()
    for row in rows.values("start", "department", "topic", "cohort", "callers"):
        if _clipped(query, row["start"]):
            clipped.add(row["start"])
            continue
        _count(people, query, row["start"], row["department"], row["topic"], row["cohort"], row["callers"])
    if clipped:
        daily = PeriodCallers.objects.filter(kind="day", start__range=(query.window.start, query.window.end))
        if query.department is not None:
            daily = daily.filter(department=query.department)
        bounds: dict[tuple[Any, ...], int] = defaultdict(int)
        for row in daily.values("start", "department", "topic", "cohort", "callers"):
            bucket = week_of(row["start"]) if query.period == "week" else month_of(row["start"])
            if bucket in clipped:
                single: dict[tuple[Any, ...], int] = defaultdict(int)
                _count(single, query, bucket, row["department"], row["topic"], row["cohort"], row["callers"])
                for key, value in single.items():
                    bounds[key] = max(bounds[key], value)
        for key, value in bounds.items():
            people[key] = value
    return people


def _count(
    people: dict[tuple[Any, ...], int], query: Query, start: date, dept: str, topic: str, cohort: int, n: int
) -> None:
    """Add one stored row to the cells it belongs to (departments are disjoint, topics are not)."""
    wanted_topic = query.topic if query.topic is not None else ALL_TOPICS
    if query.group_field == "topic":
        if topic != ALL_TOPICS and (query.topic is None or topic == query.topic):
            people[(start, topic, cohort)] += n
        if topic == wanted_topic:
            people[(start, None, cohort)] += n
    elif topic == wanted_topic:
        people[(start, None, cohort)] += n
        if query.group_field == "department":
            people[(start, dept, cohort)] += n


def _hidden(query: Query, cells: dict[tuple[Any, ...], Cell], people: dict[tuple[Any, ...], int]) -> set[Any]:
    """Cells (key, part) to suppress: primary and complementary (``portal.metrics.disclosure``)."""
    counts: dict[Any, int] = {}
    equations: list[list[Any]] = []
    margins: set[Any] = set()
    by_period: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for key in cells:
        group = key[1] if query.group_field else None
        counts[(key, "calls")] = people.get((key[0], group, ALL), 0)
        for cohort, part in COHORT_PARTS.items():
            counts[(key, part)] = people.get((key[0], group, cohort), 0)
        equations.append([(key, "calls"), *[(key, part) for part in COHORT_PARTS.values()]])
        by_period[key[0]].append(key)
    if query.group_field:
        for bucket, keys in by_period.items():
            margin = (bucket,)
            parts: list[tuple[int, str]] = [(int(value), part) for value, part in COHORT_PARTS.items()]
            for number, part in [*parts, (ALL, "calls")]:
                counts[(margin, part)] = people.get((bucket, None, number), 0)
                margins.add((margin, part))
                equations.append([(margin, part), *[(key, part) for key in keys]])
    hidden = protect(counts, equations, min_cell(), shown_elsewhere=margins)
    return {item for item in hidden if item not in margins}


def _exposure(query: Query, group_by: GroupBy) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = [query.period] + (["department"] if group_by == "department" else [])
    population = DailyPopulation.objects.filter(day__range=(query.window.start, query.window.end))
    if query.department is not None:
        population = population.filter(department=query.department)
    return {
        tuple(row[name] for name in keys): row
        for row in population.values(*keys).annotate(
            pd=Sum("patients"), ed=Sum("enrolled"), days=Count("day", distinct=True)
        )
    }


def _guardians(query: Query) -> dict[tuple[Any, Any], int]:
    if query.period != "month":
        return {}
    return {
        (month, dept): count
        for month, dept, count in MonthlyGuardians.objects.filter(
            month__range=(month_of(query.window.start), query.window.end)
        ).values_list("month", "department", "guardians")
    }


def _responses(query: Query, group_by: GroupBy) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = [query.period] + (["department"] if group_by == "department" else [])
    rows = DailyResponseRollup.objects.filter(day__range=(query.window.start, query.window.end))
    if query.department is not None:
        rows = rows.filter(department=query.department)
    return {
        tuple(row[name] for name in keys): row
        for row in rows.values(*keys).annotate(
            n=Sum("responses"), total=Sum("total_seconds"), h1=Sum("within_1h"), h24=Sum("within_24h")
        )
    }


def _response_fields(response: dict[str, Any] | None, allowed: bool) -> dict[str, Any]:
    ok = allowed and response is not None and response["n"] >= min_cell()
    if not ok or response is None:
        return dict.fromkeys(("responses", "mean_response_minutes", "responded_within_1h", "responded_within_24h"))
    return {
        "responses": response["n"],
        "mean_response_minutes": round(response["total"] / response["n"] / 60, 1),
        "responded_within_1h": _ratio(response["h1"], response["n"]),
        "responded_within_24h": _ratio(response["h24"], response["n"]),
    }


def _rates(cell: Cell, pop: dict[str, Any] | None, shown: dict[str, bool]) -> dict[str, Any]:
    low = min_cell()
    days = pop["days"] if pop else 0
    mean_patients = pop["pd"] / days if pop and days else None
    mean_enrolled = pop["ed"] / days if pop and days else None
    others = (mean_patients or 0) - (mean_enrolled or 0)
    calls = cell.calls if shown["calls"] else None
    enrolled_ok = shown["enrolled"] and (mean_enrolled or 0) >= low
    others_ok = shown["not_enrolled"] and others >= low
    return {
        "patients": round(mean_patients) if mean_patients is not None and mean_patients >= low else None,
        "enrolled": round(mean_enrolled) if mean_enrolled is not None and mean_enrolled >= low else None,
        "calls_per_1000_patients": _ratio(calls, mean_patients, 1000),
        "calls_per_1000_person_months": _ratio(calls, pop["pd"] if pop else None, 30_000),
        "calls_per_1000_enrolled": (
            _ratio(cell.by_cohort.get(Cohort.ENROLLED, 0), mean_enrolled, 1000) if enrolled_ok else None
        ),
        "calls_per_1000_not_enrolled": (
            _ratio(cell.by_cohort.get(Cohort.NOT_ENROLLED, 0), others, 1000) if others_ok else None
        ),
    }


def _callbacks(query: Query, key: tuple[Any, ...], cell: Cell, visible: bool) -> dict[str, Any]:
    if not visible:
        return {"callbacks": None, "callbacks_expected": None, "callbacks_excess": None}
    start = max(key[0], query.window.start)
    end = {"day": start, "week": key[0] + timedelta(days=6), "month": next_month(key[0]) - timedelta(days=1)}[
        query.period
    ]
    topic = key[1] if query.group_field == "topic" else query.topic
    department = key[1] if query.group_field == "department" else query.department
    expected = deflection.expected_callbacks(start, min(end, query.window.end), topic, department)
    return {
        "callbacks": cell.callbacks,
        "callbacks_expected": expected,
        "callbacks_excess": round(max(0.0, cell.callbacks - expected), 2) if expected is not None else None,
    }


def report(
    *,
    period: Period,
    window: Window,
    group_by: GroupBy = "none",
    department: str | None = None,
    topic: str | None = None,
) -> list[dict[str, Any]]:
    """Calls, rates, deflection and portal use per period (and per topic or department)."""
    query = Query(
        period, window, {"none": None, "topic": "topic", "department": "department"}[group_by], department, topic
    )
    cells = _cells(query)
    hidden = _hidden(query, cells, _people(query))
    exposure = _exposure(query, group_by)
    guardians = _guardians(query)
    responses = _responses(query, group_by)
    figures = _deflection(query, cells)
    out = []
    for key in sorted(cells, key=lambda k: tuple(str(part) for part in k)):
        out.append(_row(query, group_by, key, cells[key], hidden, exposure, guardians, responses, figures))
    return out


def _deflection(query: Query, cells: dict[tuple[Any, ...], Cell]) -> dict[tuple[Any, ...], dict[str, Any]]:
    if query.period != "month":
        return {}
    months = sorted({key[0] for key in cells})
    if query.group_field is None:
        return {
            (month,): figures for month, figures in deflection.monthly(months, query.topic, query.department).items()
        }
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for group in sorted({key[1] for key in cells}, key=str):
        topic = group if query.group_field == "topic" else query.topic
        dept = group if query.group_field == "department" else query.department
        for month, figures in deflection.monthly(months, topic, dept).items():
            out[(month, group)] = figures
    return out


def _row(
    query: Query,
    group_by: GroupBy,
    key: tuple[Any, ...],
    cell: Cell,
    hidden: set[Any],
    exposure: dict[tuple[Any, ...], dict[str, Any]],
    guardians: dict[tuple[Any, Any], int],
    responses: dict[tuple[Any, ...], dict[str, Any]],
    figures: dict[tuple[Any, ...], dict[str, Any]],
) -> dict[str, Any]:
    low = min_cell()
    bucket = key[0]
    group_value = key[1] if query.group_field else None
    shown = {part: (key, part) not in hidden for part in ("calls", *COHORT_PARTS.values())}
    pop_key = (bucket, group_value) if group_by == "department" else (bucket,)
    row: dict[str, Any] = {"period_start": bucket, "topic": None, "department": None}
    if query.group_field:
        row[query.group_field] = group_value
    calls = cell.calls if shown["calls"] else None
    row.update(
        {
            "calls": calls,
            "calls_enrolled": cell.by_cohort.get(Cohort.ENROLLED, 0) if shown["enrolled"] else None,
            "calls_not_enrolled": cell.by_cohort.get(Cohort.NOT_ENROLLED, 0) if shown["not_enrolled"] else None,
            "calls_unattributed": cell.by_cohort.get(Cohort.UNATTRIBUTED, 0) if shown["unattributed"] else None,
            "actions": cell.actions if shown["calls"] else None,
            "actions_per_call": _ratio(cell.actions, calls) if shown["calls"] else None,
            **_callbacks(query, key, cell, shown["calls"]),
            **_rates(cell, exposure.get(pop_key), shown),
            **figures.get(key, {"deflection_net": None, "deflection_gross": None}),
            **_response_fields(responses.get(pop_key), group_by != "topic"),
            "active_guardians": None,
            "suppressed": [part for part in ("calls", *COHORT_PARTS.values()) if not shown[part]],
        }
    )
    if query.period == "month" and group_by != "topic":
        dept_key = group_value if group_by == "department" else (query.department or ALL_DEPARTMENTS)
        active = guardians.get((bucket, dept_key))
        row["active_guardians"] = active if active is not None and active >= low else None
    return row


def weeks_window(weeks: int, end: date | None = None) -> Window | None:
    last = end or DailyTopicRollup.objects.aggregate(last=Max("day"))["last"]
    if last is None:
        return None
    monday = last - timedelta(days=last.weekday())
    return Window(monday - timedelta(weeks=weeks - 1), last)


def latest_day() -> date | None:
    last: date | None = DailyTopicRollup.objects.aggregate(last=Max("day"))["last"]
    return last


def never() -> date:
    return NEVER


def export_record(*, actor: Any, what: str, period: str) -> None:
    """Audit an export of aggregated metrics (no PHI leaves, but exports are always recorded)."""
    audit.record(
        actor=actor, action=audit.Action.EXPORT, entity_type=Resource.METRICS_REPORT, reason=f"{what}:{period}"[:60]
    )
