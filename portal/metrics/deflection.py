"""Monthly deflection figures that compare like with like.

For a month ``m``, the families who enrolled in the twelve months up to ``m`` (``E``) are compared
with the families not enrolled by the end of ``m`` (``C``), each in ``m`` and in the same month a
year earlier, when none of them was enrolled (seasonally matched), in calls per 1,000 person-months:

    deflection = 1 - (E_m / E_m-12) / (C_m / C_m-12)

The season and the hospital-wide trend cancel; what remains is the change of the enrolled families
beyond the change of those not enrolled (it still carries who chooses to enrol: the estimate beside
it is the figure to trust). ``net`` counts every call once (call-backs included); ``gross`` leaves out
call-backs. Call-backs are set against the calls a family would make on the same topic within seven
days anyway (the enrolled families' same-topic call rate x 7 days x portal actions): only the excess
is blamed on the portal.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from django.db.models import Sum

from portal.metrics.common import month_of, next_month
from portal.metrics.models import Cohort, DailyPopulation, DailyTopicRollup, MonthlyCohortRollup, MonthlyExposure
from portal.metrics.rollups import ALL_TOPICS, UNATTRIBUTED

CALLBACK_DAYS = 7


def _shift(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class _Counts:
    def __init__(self, months: list[date], topic: str | None, department: str | None) -> None:
        wanted = sorted(set(months) | {_shift(month, -12) for month in months})
        calls = MonthlyCohortRollup.objects.filter(month__in=wanted, topic=topic or ALL_TOPICS).exclude(
            cohort_month=UNATTRIBUTED
        )
        exposure = MonthlyExposure.objects.filter(month__in=wanted)
        if department is not None:
            calls = calls.filter(department=department)
            exposure = exposure.filter(department=department)
        self.calls: dict[tuple[date, date], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for row in calls.values("month", "cohort_month").annotate(n=Sum("calls"), cb=Sum("callbacks")):
            self.calls[(row["month"], row["cohort_month"])] = (row["n"], row["cb"])
        self.days: dict[tuple[date, date], int] = defaultdict(int)
        for row in exposure.values("month", "cohort_month").annotate(pd=Sum("patient_days")):
            self.days[(row["month"], row["cohort_month"])] = row["pd"]

    def rate(self, month: date, cohorts: Any, *, net: bool) -> float | None:
        calls = days = 0
        for (when, cohort), (n, callbacks) in self.calls.items():
            if when == month and cohorts(cohort):
                calls += n if net else n - callbacks
        for (when, cohort), patient_days in self.days.items():
            if when == month and cohorts(cohort):
                days += patient_days
        return calls / days if days and calls else None


def _figure(counts: _Counts, month: date, *, net: bool) -> float | None:
    def enrolled(cohort: date) -> bool:
        return _shift(month, -12) < cohort <= month

    def control(cohort: date) -> bool:
        return cohort > month

    year_ago = _shift(month, -12)
    rates = (
        counts.rate(month, enrolled, net=net),
        counts.rate(year_ago, enrolled, net=net),
        counts.rate(month, control, net=net),
        counts.rate(year_ago, control, net=net),
    )
    if any(rate is None for rate in rates):
        return None
    e_now, e_then, c_now, c_then = (float(rate) for rate in rates if rate is not None)
    return round(1 - (e_now / e_then) / (c_now / c_then), 4)


def expected_callbacks(first: date, last: date, topic: str | None, department: str | None) -> float | None:
    """Same-topic calls enrolled families would make within 7 days of their portal actions anyway."""
    rows = DailyTopicRollup.objects.filter(day__range=(first, last), cohort=Cohort.ENROLLED)
    population = DailyPopulation.objects.filter(day__range=(first, last))
    if topic is not None:
        rows = rows.filter(topic=topic)
    if department is not None:
        rows = rows.filter(department=department)
        population = population.filter(department=department)
    enrolled_days = population.aggregate(n=Sum("enrolled"))["n"] or 0
    if not enrolled_days:
        return None
    expected = 0.0
    for row in rows.values("topic").annotate(calls=Sum("calls"), callbacks=Sum("callbacks"), actions=Sum("actions")):
        # The base rate leaves out the call-backs themselves (they are what is being tested).
        rate = (row["calls"] - row["callbacks"]) / enrolled_days
        expected += row["actions"] * rate * CALLBACK_DAYS
    return round(expected, 2)


def monthly(months: list[date], topic: str | None = None, department: str | None = None) -> dict[date, dict[str, Any]]:
    """Net and gross deflection per month (None where a rate is missing)."""
    counts = _Counts(months, topic, department)
    return {
        month: {
            "deflection_net": _figure(counts, month, net=True),
            "deflection_gross": _figure(counts, month, net=False),
        }
        for month in months
    }


def months_between(first: date, last: date) -> list[date]:
    months, month = [], month_of(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months
