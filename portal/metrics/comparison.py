"""The simple two-by-two comparison, kept for transparency beside the staggered-adoption estimate:
patients who enrolled between the baseline and the comparison period (treated) against patients not
enrolled by its end (control), calls per person-time in whole months, with the groups' match rates.

Periods count in whole months (every month the period touches). Exposure is person-time from
``MonthlyExposure`` (patient-days registered and not exited), so new patients count from their
arrival. Calls are the attributed ones (``attribution``); since attribution is never complete, each
group's match rate per period is estimated and published: a call carries an MRN independently of
who calls, so among a group's attributed calls the share carrying an MRN is ``q / m`` (``q``: the
MRN share of all calls, ``m``: the group's match rate). The match-rate bias of the comparison,
``log(m_T,post / m_T,base) - log(m_C,post / m_C,base)``, follows from those shares; beyond the
configured margin (``PORTAL_METRICS_MATCH_MARGIN``, with 95% confidence: the shares are estimates)
the comparison is flagged and its effect withheld; when no call carries an MRN it cannot be checked
and is flagged too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from portal.errors import Invalid
from portal.metrics.common import month_of, next_month
from portal.metrics.config import match_margin
from portal.metrics.models import NEVER, MonthlyCohortRollup, MonthlyExposure
from portal.metrics.reports import Window, latest_day, min_cell
from portal.metrics.rollups import ALL_TOPICS, UNATTRIBUTED
from portal.metrics.stats import GroupPeriod, difference_in_differences, dispersion

GROUPS = ("treated", "control")
INCLUDED = (
    "treated: patients whose first guardian link began after the baseline and before the period's first "
    "month (counted as enrolled even if they left); control: patients not enrolled by the period's end; "
    "each counted from registration to exit (person-time), whole months; calls attributed to them only"
)
PERIODS = ("base", "post")


def months_of(window: Window) -> list[date]:
    months, month = [], month_of(window.start)
    while month <= window.end:
        months.append(month)
        month = next_month(month)
    return months


class _Tally:
    def __init__(self, baseline: Window, window: Window) -> None:
        self.base_months = set(months_of(baseline))
        self.post_months = set(months_of(window))
        self.first_post = month_of(window.start)
        self.baseline_end = baseline.end
        self.window_end = window.end
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.mrn: dict[tuple[str, str], int] = defaultdict(int)
        self.all_calls: dict[str, int] = defaultdict(int)
        self.all_mrn: dict[str, int] = defaultdict(int)
        self.days: dict[tuple[str, str], int] = defaultdict(int)
        self.people: dict[tuple[str, str], int] = defaultdict(int)
        self.present: dict[tuple[str, str, date], int] = defaultdict(int)
        self.monthly: dict[tuple[str, str, date], list[float]] = defaultdict(lambda: [0, 0.0])

    def period(self, month: date) -> str | None:
        if month in self.base_months:
            return "base"
        return "post" if month in self.post_months else None

    def group(self, cohort: date) -> str | None:
        if self.baseline_end < cohort < self.first_post:
            return "treated"
        return "control" if cohort > self.window_end else None


def _tally(baseline: Window, window: Window, topic: str | None) -> _Tally:
    tally = _Tally(baseline, window)
    months = sorted(tally.base_months | tally.post_months)
    for row in MonthlyCohortRollup.objects.filter(month__in=months, topic=topic or ALL_TOPICS).values(
        "month", "cohort_month", "calls", "mrn_calls", "callers"
    ):
        period = tally.period(row["month"])
        if period is None:
            continue
        tally.all_calls[period] += row["calls"]
        tally.all_mrn[period] += row["mrn_calls"]
        group = tally.group(row["cohort_month"]) if row["cohort_month"] != UNATTRIBUTED else None
        if group is not None:
            tally.calls[(group, period)] += row["calls"]
            tally.mrn[(group, period)] += row["mrn_calls"]
            tally.monthly[(group, period, row["month"])][0] += row["calls"]
    for exposure in MonthlyExposure.objects.filter(month__in=months).values(
        "month", "cohort_month", "patient_days", "patients"
    ):
        period, group = tally.period(exposure["month"]), tally.group(exposure["cohort_month"])
        if period is None or group is None:
            continue
        tally.days[(group, period)] += exposure["patient_days"]
        tally.monthly[(group, period, exposure["month"])][1] += exposure["patient_days"]
        tally.present[(group, period, exposure["month"])] += exposure["patients"]
    for (group, period, _month), present in tally.present.items():
        # Cohorts and departments are disjoint: a month's sum is the group's distinct patients.
        tally.people[(group, period)] = max(tally.people[(group, period)], present)
    return tally


def _match(tally: _Tally) -> tuple[dict[str, float | None], float | None, float | None]:
    """Estimated match rate per group and period, the bias they put on the log effect, its error."""
    rates: dict[str, float | None] = {}
    shares: dict[tuple[str, str], float] = {}
    variance = 0.0
    for group in GROUPS:
        for period in PERIODS:
            calls, mrn, everyone = tally.calls[(group, period)], tally.mrn[(group, period)], tally.all_calls[period]
            q = tally.all_mrn[period] / everyone if everyone else 0.0
            share = mrn / calls if calls else 0.0
            if share > 0:
                shares[(group, period)] = share
                variance += (1 - share) / mrn  # delta method: var(log share) = (1 - s) / (n s)
            rates[f"{group}_{'baseline' if period == 'base' else 'period'}"] = (
                round(min(1.0, q / share), 3) if share > 0 and q > 0 else None
            )
    if len(shares) < 4:
        return rates, None, None
    bias = math.log(shares[("treated", "base")] / shares[("treated", "post")]) - math.log(
        shares[("control", "base")] / shares[("control", "post")]
    )
    return rates, round(bias, 4), round(math.sqrt(variance), 4)


def match_flag(bias: float | None, se: float | None) -> bool:
    """Flag when the match rates cannot be checked, or differ beyond the margin with 95% confidence."""
    if bias is None or se is None:
        return True
    return abs(bias) - 1.96 * se > match_margin()


def _patients(tally: _Tally) -> dict[str, int]:
    return {group: max(tally.people[(group, "base")], tally.people[(group, "post")]) for group in GROUPS}


def comparison(*, baseline: Window, window: Window, topic: str | None = None) -> dict[str, Any]:
    """Treated vs control, baseline vs period: the difference in differences with match rates."""
    if window.start <= baseline.end or month_of(window.start) <= month_of(baseline.end):
        raise Invalid("The comparison period must start in a month after the baseline ends.", code="invalid_period")
    low = min_cell()
    tally = _tally(baseline, window, topic)
    patients = _patients(tally)
    enough = all(patients[group] >= low for group in GROUPS)

    def gp(group: str, period: str) -> GroupPeriod:
        return GroupPeriod(calls=tally.calls[(group, period)], patients=tally.days[(group, period)], days=1)

    def per_1000_months(group: str, period: str) -> float | None:
        part = gp(group, period)
        return round(part.rate * 30_000, 3) if enough and part.exposure else None

    cells = {key: (int(v[0]), v[1]) for key, v in tally.monthly.items() if v[1] > 0}
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
    rates, bias, bias_se = _match(tally)
    flagged = match_flag(bias, bias_se)
    shown = result if result is not None and not flagged else None
    return {
        "baseline_start": baseline.start,
        "baseline_end": baseline.end,
        "period_start": window.start,
        "period_end": window.end,
        "topic": topic,
        "treated_patients": patients["treated"] if patients["treated"] >= low else None,
        "control_patients": patients["control"] if patients["control"] >= low else None,
        "rates_per_1000_per_30_days": {
            "treated_baseline": per_1000_months("treated", "base"),
            "treated_period": per_1000_months("treated", "post"),
            "control_baseline": per_1000_months("control", "base"),
            "control_period": per_1000_months("control", "post"),
        },
        "match_rates": rates if enough else dict.fromkeys(rates),
        "match_bias": bias if enough else None,
        "match_bias_se": bias_se if enough else None,
        "match_margin": match_margin(),
        "match_flagged": flagged,
        "effect": round(shown.effect, 4) if shown else None,
        "ci_low": round(shown.low, 4) if shown else None,
        "ci_high": round(shown.high, 4) if shown else None,
        "confidence": 0.95,
        "dispersion": round(result.dispersion, 3) if result else None,
        "naive_before_after": round(result.naive_before_after, 4) if result else None,
        "naive_enrolled_vs_not": round(result.naive_enrolled_vs_not, 4) if result else None,
        "suppressed": not enough,
        "included": INCLUDED,
    }


def default_comparison_window() -> Window | None:
    """The last three whole months with data (the last month may be partial)."""
    last = latest_day()
    if last is None:
        return None
    first = month_of(last)
    for _ in range(2):
        first = month_of(first - timedelta(days=1))
    return Window(first, last)


def never() -> date:
    return NEVER
