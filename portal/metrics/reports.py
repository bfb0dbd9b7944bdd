"""The period report (calls, rates, portal use per day, week or month). Every report reads the
rollup tables only, never raw calls or events.

Cells about fewer than ``PORTAL_METRICS_MIN_CELL`` patients are suppressed (their counts and rates
become null and ``suppressed`` lists what was hidden). The number of distinct patients of a cell
spanning several days is not stored; its lower bound (the largest daily count) is used, so
suppression may hide more than needed but never less.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum

from portal import audit
from portal.errors import Invalid
from portal.metrics.common import month_of
from portal.metrics.config import metrics_settings
from portal.metrics.models import (
    NEVER,
    Cohort,
    DailyPopulation,
    DailyResponseRollup,
    DailyTopicRollup,
    MonthlyGuardians,
)
from portal.metrics.rollups import ALL_DEPARTMENTS

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


def report(
    *,
    period: Period,
    window: Window,
    group_by: GroupBy = "none",
    department: str | None = None,
    topic: str | None = None,
    baseline: Window | None = None,
) -> list[dict[str, Any]]:
    """Calls, rates, deflection and portal use per period (and per topic or department)."""
    group_field = {"none": None, "topic": "topic", "department": "department"}[group_by]
    keys = [period] + ([group_field] if group_field else [])
    low = min_cell()

    topics = _filtered(DailyTopicRollup.objects.filter(day__range=(window.start, window.end)), department, topic)
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in topics.values(*keys, "cohort").annotate(
        calls=Sum("calls"), callbacks=Sum("callbacks"), actions=Sum("actions"), people=Max("patients")
    ):
        key = tuple(row[name] for name in keys)
        cell = cells.setdefault(key, {"calls": 0, "callbacks": 0, "actions": 0, "people": 0, "by_cohort": {}})
        cell["calls"] += row["calls"]
        cell["callbacks"] += row["callbacks"]
        cell["actions"] += row["actions"]
        cell["people"] = max(cell["people"], row["people"])
        cell["by_cohort"][row["cohort"]] = (row["calls"], row["people"])

    pop_keys = [period] + (["department"] if group_by == "department" else [])
    population = DailyPopulation.objects.filter(day__range=(window.start, window.end))
    if department is not None:
        population = population.filter(department=department)
    exposure = {
        tuple(row[name] for name in pop_keys): row
        for row in population.values(*pop_keys).annotate(
            pd=Sum("patients"), ed=Sum("enrolled"), days=Count("day", distinct=True)
        )
    }

    base_rates: dict[Any, float] = {}
    if baseline is not None:
        base_keys = [group_field] if group_field else []
        base_pop = DailyPopulation.objects.filter(day__range=(baseline.start, baseline.end))
        if department is not None:
            base_pop = base_pop.filter(department=department)
        pd_by: dict[Any, int] = {}
        if group_by == "department":
            for row in base_pop.values("department").annotate(pd=Sum("patients")):
                pd_by[row["department"]] = row["pd"]
        else:
            pd_by[None] = base_pop.aggregate(pd=Sum("patients"))["pd"] or 0
        base_topics = _filtered(
            DailyTopicRollup.objects.filter(day__range=(baseline.start, baseline.end)), department, topic
        )
        base_calls: list[dict[str, Any]] = (
            list(base_topics.values(*base_keys).annotate(calls=Sum("calls")))
            if base_keys
            else [base_topics.aggregate(calls=Sum("calls"))]
        )
        for row in base_calls:
            group_value = row.get(group_field) if group_field else None
            pd = pd_by.get(group_value if group_by == "department" else None)
            if pd and row["calls"] is not None:
                base_rates[group_value] = row["calls"] / pd

    guardians: dict[tuple[Any, Any], int] = {}
    if period == "month":
        for month, dept, count in MonthlyGuardians.objects.filter(
            month__range=(month_of(window.start), window.end)
        ).values_list("month", "department", "guardians"):
            guardians[(month, dept)] = count

    responses: dict[tuple[Any, ...], dict[str, Any]] = {}
    response_rows = DailyResponseRollup.objects.filter(day__range=(window.start, window.end))
    if department is not None:
        response_rows = response_rows.filter(department=department)
    for response_row in response_rows.values(*pop_keys).annotate(
        n=Sum("responses"), total=Sum("total_seconds"), h1=Sum("within_1h"), h24=Sum("within_24h")
    ):
        responses[tuple(response_row[name] for name in pop_keys)] = response_row

    out = []
    for key in sorted(cells, key=lambda k: tuple(str(part) for part in k)):
        cell = cells[key]
        bucket = key[0]
        group_value = key[1] if group_field else None
        pop = exposure.get((bucket, group_value) if group_by == "department" else (bucket,))
        pd = pop["pd"] if pop else 0
        ed = pop["ed"] if pop else 0
        days = pop["days"] if pop else 0
        base = base_rates.get(group_value)
        hidden: list[str] = []
        row = {"period_start": bucket, "topic": None, "department": None}
        if group_field:
            row[group_field] = group_value
        visible = cell["people"] >= low
        calls = cell["calls"] if visible else None
        callbacks = cell["callbacks"] if visible else None
        if not visible:
            hidden.append("calls")
        enrolled_calls, enrolled_people = cell["by_cohort"].get(Cohort.ENROLLED, (0, 0))
        other_calls, other_people = cell["by_cohort"].get(Cohort.NOT_ENROLLED, (0, 0))
        mean_patients = pd / days if days else None
        mean_enrolled = ed / days if days else None
        enrolled_ok = visible and enrolled_people >= low and (mean_enrolled or 0) >= low
        others_ok = visible and other_people >= low and ((mean_patients or 0) - (mean_enrolled or 0)) >= low
        if not enrolled_ok:
            hidden.append("enrolled")
        if not others_ok:
            hidden.append("not_enrolled")
        rate = calls / pd if calls is not None and pd else None
        response = responses.get((bucket, group_value) if group_by == "department" else (bucket,))
        response_ok = response is not None and response["n"] >= low and group_by != "topic"
        row.update(
            {
                "calls": calls,
                "callbacks": callbacks,
                "calls_enrolled": enrolled_calls if enrolled_ok else None,
                "calls_not_enrolled": other_calls if others_ok else None,
                "actions": cell["actions"] if visible else None,
                "patients": round(mean_patients) if mean_patients is not None and mean_patients >= low else None,
                "enrolled": round(mean_enrolled) if mean_enrolled is not None and mean_enrolled >= low else None,
                "calls_per_1000_patients": _ratio(calls, mean_patients, 1000),
                "calls_per_1000_enrolled": _ratio(enrolled_calls, mean_enrolled, 1000) if enrolled_ok else None,
                "calls_per_1000_not_enrolled": (
                    _ratio(other_calls, (mean_patients or 0) - (mean_enrolled or 0), 1000) if others_ok else None
                ),
                "baseline_per_1000": round(base * days * 1000, 4) if base is not None and days else None,
                "gross_deflection": round(1 - rate / base, 4) if rate is not None and base else None,
                "net_deflection": (
                    round(1 - ((calls or 0) + (callbacks or 0)) / pd / base, 4)
                    if rate is not None and base and pd
                    else None
                ),
                "actions_per_call": _ratio(cell["actions"], calls) if visible else None,
                "active_guardians": None,
                "responses": response["n"] if response_ok and response else None,
                "mean_response_minutes": (
                    round(response["total"] / response["n"] / 60, 1) if response_ok and response else None
                ),
                "responded_within_1h": _ratio(response["h1"], response["n"]) if response_ok and response else None,
                "responded_within_24h": _ratio(response["h24"], response["n"]) if response_ok and response else None,
                "suppressed": hidden,
            }
        )
        if period == "month" and group_by != "topic":
            dept_key = group_value if group_by == "department" else (department or ALL_DEPARTMENTS)
            active = guardians.get((bucket, dept_key))
            row["active_guardians"] = active if active is not None and active >= low else None
        out.append(row)
    return out


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
    audit.record(actor=actor, action=audit.Action.EXPORT, entity_type="MetricsReport", reason=f"{what}:{period}"[:60])
