"""Reads of the metrics. Every report reads the rollup tables only, never raw calls or events.

Cells about fewer than ``PORTAL_METRICS_MIN_CELL`` patients are suppressed (their counts and rates
become null and ``suppressed`` lists what was hidden). The number of distinct patients of a cell
spanning several days is not stored; its lower bound (the largest daily count) is used, so
suppression may hide more than needed but never less.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import Case, CharField, Count, Max, Q, QuerySet, Sum, Value, When

from portal.errors import Invalid
from portal.metrics.models import (
    NEVER,
    Cohort,
    CohortSize,
    DailyCohortRollup,
    DailyPopulation,
    DailyResponseRollup,
    DailyTopicRollup,
    MonthlyGuardians,
)
from portal.metrics.services import ALL_DEPARTMENTS, metrics_settings, month_of
from portal.metrics.stats import GroupPeriod, difference_in_differences, dispersion

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


def _month_days(window: Window) -> dict[date, int]:
    days: dict[date, int] = defaultdict(int)
    day = window.start
    while day <= window.end:
        days[month_of(day)] += 1
        day += timedelta(days=1)
    return days


def default_comparison_window() -> Window | None:
    last = DailyCohortRollup.objects.aggregate(last=Max("day"))["last"]
    if last is None:
        return None
    return Window(last - timedelta(days=89), last)


def comparison(*, baseline: Window, window: Window, topic: str | None = None) -> dict[str, Any]:
    """Enrolled vs not-enrolled families, baseline vs comparison period: the difference in differences.

    Treated: patients who enrolled after the baseline and in a month before the comparison period
    starts (intention to treat: counted as enrolled even if they later left). Comparison: patients
    not enrolled by the end of the comparison period. Calls with no known patient are left out.
    """
    if window.start <= baseline.end:
        raise Invalid("The comparison period must start after the baseline ends.", code="invalid_period")
    low = min_cell()
    sizes = dict(CohortSize.objects.values_list("cohort_month", "patients"))
    treated_months = {m for m in sizes if baseline.end < m < month_of(window.start)}
    control_months = {m for m in sizes if m > window.end}

    def group_of(month: date) -> str | None:
        if month in treated_months:
            return "treated"
        if month in control_months:
            return "control"
        return None

    patients = {
        "treated": sum(sizes[m] for m in treated_months),
        "control": sum(sizes[m] for m in control_months),
        "all": sum(sizes.values()),
    }
    rows = DailyCohortRollup.objects.filter(
        Q(day__range=(baseline.start, baseline.end)) | Q(day__range=(window.start, window.end))
    )
    if topic is not None:
        rows = rows.filter(topic=topic)
    labelled = rows.annotate(
        period=Case(
            When(day__range=(baseline.start, baseline.end), then=Value("base")),
            default=Value("post"),
            output_field=CharField(),
        )
    )
    counts: dict[tuple[str, str], int] = defaultdict(int)
    monthly: dict[tuple[str, str, date], int] = defaultdict(int)
    for row in labelled.values("period", "month", "cohort_month").annotate(calls=Sum("calls")):
        counts[("all", row["period"])] += row["calls"]
        group = group_of(row["cohort_month"])
        if group is not None:
            counts[(group, row["period"])] += row["calls"]
            monthly[(group, row["period"], row["month"])] += row["calls"]
    days = {"base": baseline.days, "post": window.days}
    month_days = {"base": _month_days(baseline), "post": _month_days(window)}
    cells = {
        key: (calls, patients[key[0]] * month_days[key[1]][key[2]])
        for key, calls in monthly.items()
        if patients[key[0]] and month_days[key[1]].get(key[2])
    }

    def gp(group: str, period: str) -> GroupPeriod:
        return GroupPeriod(calls=counts[(group, period)], patients=patients[group], days=days[period])

    def per_1000_per_30d(part: GroupPeriod) -> float | None:
        return round(part.rate * 30_000, 3) if part.exposure and not math.isnan(part.rate) else None

    enough = patients["treated"] >= low and patients["control"] >= low
    result = (
        difference_in_differences(
            treated_base=gp("treated", "base"),
            treated_post=gp("treated", "post"),
            control_base=gp("control", "base"),
            control_post=gp("control", "post"),
            phi=dispersion(cells),
        )
        if enough
        else None
    )
    everyone_base, everyone_post = gp("all", "base"), gp("all", "post")
    hospital = (
        round(1 - everyone_post.rate / everyone_base.rate, 4)
        if everyone_base.calls and everyone_post.exposure and patients["all"] >= low
        else None
    )
    return {
        "baseline_start": baseline.start,
        "baseline_end": baseline.end,
        "period_start": window.start,
        "period_end": window.end,
        "topic": topic,
        "treated_patients": patients["treated"] if patients["treated"] >= low else None,
        "control_patients": patients["control"] if patients["control"] >= low else None,
        "rates_per_1000_per_30_days": {
            "treated_baseline": per_1000_per_30d(gp("treated", "base")) if enough else None,
            "treated_period": per_1000_per_30d(gp("treated", "post")) if enough else None,
            "control_baseline": per_1000_per_30d(gp("control", "base")) if enough else None,
            "control_period": per_1000_per_30d(gp("control", "post")) if enough else None,
        },
        "effect": round(result.effect, 4) if result else None,
        "ci_low": round(result.low, 4) if result else None,
        "ci_high": round(result.high, 4) if result else None,
        "confidence": 0.95,
        "dispersion": round(result.dispersion, 3) if result else None,
        "naive_before_after": round(result.naive_before_after, 4) if result else None,
        "naive_enrolled_vs_not": round(result.naive_enrolled_vs_not, 4) if result else None,
        "hospital_before_after": hospital,
        "suppressed": not enough,
    }


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
