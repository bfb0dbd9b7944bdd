"""The staggered-adoption estimate, fitted by the nightly refresh and stored (``EstimateRun``).

Design: a monthly patient panel (patients clustered by family), Poisson with log person-time as the
offset, patient fixed effects and calendar-month fixed effects within strata of department x
baseline call rate (tercile of calls per person-month in the baseline; patients registered later form
their own stratum): parallel trends are assumed only within a stratum. Treatment effects are
interacted with the enrolment cohort and binned months since enrolment (Sun & Abraham's interaction-
weighted estimator), so never-enrolled and not-yet-enrolled patient-months are the controls and no
already-enrolled cohort serves as a control for a later one. The overall effect and the event study
aggregate the cohort coefficients by their treated person-months (delta-method variances from the
family-clustered covariance). Leads (2 to 6 months before enrolment) form the pre-trend test: a joint
Wald test whose rejection (p < 0.05) marks the result "not credible".

pyfixest fits it (fast Poisson with high-dimensional fixed effects and clustered errors).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import date
from typing import Any

from django.db.models import Count, Q

from portal.metrics.common import month_of, next_month
from portal.metrics.config import metrics_settings
from portal.metrics.models import NEVER, CallRecord, EstimateRun, MetricsPatient
from portal.metrics.reports import min_cell

# Event-time bins (months since enrolment); -1 and earlier than -6 are the reference.
BINS: tuple[tuple[str, int, int], ...] = (
    ("pre_6_4", -6, -4),
    ("pre_3_2", -3, -2),
    ("post_0_2", 0, 2),
    ("post_3_5", 3, 5),
    ("post_6_11", 6, 11),
    ("post_12", 12, 10_000),
)
LEADS = ("pre_6_4", "pre_3_2")
MIN_TREATED_PATIENTS = 20
COLUMNS = ["unit", "family", "department", "month", "days", "calls", "mrn_calls", "cohort", "rel"]
STRATA = 3  # quantile groups of the baseline call rate


def _index(month: date) -> int:
    return month.year * 12 + month.month - 1


def _bin(rel: int) -> str | None:
    for name, low, high in BINS:
        if low <= rel <= high:
            return name
    return None


def _patients() -> dict[int, dict[str, Any]]:
    return {
        row["id"]: dict(row)
        for row in MetricsPatient.objects.values(
            "id", "department", "family_hash", "cohort_month", "registered_on", "exited_on"
        )
    }


def _calls(first: date, last: date) -> dict[tuple[int, date], tuple[int, int]]:
    counts: dict[tuple[int, date], tuple[int, int]] = {}
    rows = (
        CallRecord.objects.filter(
            day__gte=first, day__lt=next_month(last), direction=CallRecord.Direction.INBOUND, patient__isnull=False
        )
        .values("patient_id", "day__year", "day__month")
        .annotate(n=Count("id"), mrn=Count("id", filter=Q(mrn_hash__gt="")))
    )
    for row in rows:
        counts[(row["patient_id"], date(row["day__year"], row["day__month"], 1))] = (row["n"], row["mrn"])
    return counts


def _days_present(patient: dict[str, Any], month: date) -> int:
    start = max(month, patient["registered_on"]) if patient["registered_on"] else month
    end = min(next_month(month), patient["exited_on"]) if patient["exited_on"] else next_month(month)
    return max(0, (end - start).days)


def panel(first: date, last: date) -> Any:
    """The patient-month panel as a pandas DataFrame (no identifiers beyond opaque ids)."""
    import pandas as pd

    patients = _patients()
    calls = _calls(first, last)
    months = []
    month = first
    while month <= last:
        months.append(month)
        month = next_month(month)
    rows = []
    for pid, patient in patients.items():
        cohort = patient["cohort_month"]
        for month in months:
            days = _days_present(patient, month)
            if days == 0:
                continue
            rel = _index(month) - _index(cohort) if cohort != NEVER else None
            rows.append(
                (
                    pid,
                    patient["family_hash"] or f"p{pid}",
                    patient["department"],
                    month,
                    days,
                    *calls.get((pid, month), (0, 0)),
                    cohort,
                    rel,
                )
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def stratification_months(first: date, baseline: tuple[date, date] | None) -> list[date]:
    """The months that define the strata: the first half of the baseline (at least three months).

    They are left out of the fit: conditioning on the noise of months that are also compared would
    make each stratum regress to its group's own mean and bias the comparison.
    """
    if baseline is None:
        return []
    months, month = [], max(first, month_of(baseline[0]))
    while month <= baseline[1]:
        months.append(month)
        month = next_month(month)
    if len(months) < 6:
        return []
    return months[: len(months) // 2]


def _strata(frame: Any, months: list[date]) -> Any:
    """Department x quantile of the MRN-attributed call rate in the stratification months.

    Only calls that gave an MRN count there: they are attributed whoever calls, so the rate measures
    need alike in families whose phones are known and in those whose phones are not. Patients absent
    then (registered later) form their own stratum.
    """
    import numpy as np

    department = frame["department"].astype(str)
    if not months:
        return department, frame.assign(base_rate=np.nan)
    inside = frame[frame["month"].isin(months)]
    sums = inside.groupby("unit")[["mrn_calls", "calls", "days"]].sum()
    frame = frame.join((sums["calls"] / sums["days"].clip(lower=1)).rename("base_rate"), on="unit")
    rate = (sums["mrn_calls"] / sums["days"].clip(lower=1)).to_numpy()
    quantiles = [step / STRATA for step in range(1, STRATA)]
    cuts = np.unique(np.nanquantile(rate, quantiles)) if len(rate) else np.array([])
    by_unit = dict(zip(sums.index, np.searchsorted(cuts, rate, side="right"), strict=True))
    level = frame["unit"].map(lambda unit: str(by_unit.get(unit, "new")))
    return department + ":" + level, frame


def _dummies(frame: Any) -> tuple[Any, dict[str, tuple[str, date]]]:
    """One column per (enrolment cohort, event-time bin)."""
    columns: dict[str, tuple[str, date]] = {}
    treated = frame["rel"].notna()
    bins = frame["rel"].where(treated).map(lambda rel: _bin(int(rel)) if rel == rel else None)
    data = {}
    for (cohort, name), index in frame[bins.notna()].groupby([frame["cohort"], bins]).groups.items():
        column = f"d_{name}_{cohort:%Y%m}"
        values = frame.index.isin(index).astype(float)
        data[column] = values
        columns[column] = (name, cohort)
    return data, columns


def _aggregate(coef: Any, vcov: Any, names: list[str], weights: dict[str, float]) -> tuple[float, float] | None:
    import numpy as np

    used = [name for name in weights if name in names and weights[name] > 0]
    if not used:
        return None
    total = sum(weights[name] for name in used)
    vector = np.zeros(len(names))
    for name in used:
        vector[names.index(name)] = weights[name] / total
    estimate = float(vector @ coef)
    variance = float(vector @ vcov @ vector)
    return estimate, math.sqrt(max(variance, 0.0))


def _interval(estimate: float, se: float) -> dict[str, float]:
    z = 1.959963984540054
    return {
        "effect": round(1 - math.exp(estimate), 4),
        "ci_low": round(1 - math.exp(estimate + z * se), 4),
        "ci_high": round(1 - math.exp(estimate - z * se), 4),
        "log_rate_ratio": round(estimate, 5),
        "se": round(se, 5),
    }


def _pretrend(coef: Any, vcov: Any, names: list[str], per_bin: dict[str, dict[str, float]]) -> dict[str, Any]:
    import numpy as np
    from scipy import stats

    vectors = []
    for lead in LEADS:
        weights = per_bin.get(lead, {})
        used = [name for name in weights if name in names]
        if not used:
            continue
        total = sum(weights[name] for name in used)
        vector = np.zeros(len(names))
        for name in used:
            vector[names.index(name)] = weights[name] / total
        vectors.append(vector)
    if not vectors:
        return {"chi2": None, "df": 0, "p_value": None, "passed": False}
    matrix = np.vstack(vectors)
    values = matrix @ coef
    covariance = matrix @ vcov @ matrix.T
    chi2 = float(values @ np.linalg.pinv(covariance) @ values)
    p_value = float(stats.chi2.sf(chi2, len(vectors)))
    return {"chi2": round(chi2, 3), "df": len(vectors), "p_value": round(p_value, 4), "passed": p_value >= 0.05}


def _balance(frame: Any, low: int) -> list[dict[str, Any]]:
    """Baseline call rate and department mix of ever- and never-enrolled patients (no small cells)."""
    out: list[dict[str, Any]] = []
    units = frame.drop_duplicates("unit")
    for label, group in (
        ("ever_enrolled", units[units["rel"].notna()]),
        ("never_enrolled", units[units["rel"].isna()]),
    ):
        n = int(group["unit"].nunique())
        if n < low:
            out.append(
                {"group": label, "patients": None, "baseline_calls_per_1000_person_months": None, "departments": {}}
            )
            continue
        rates = frame[frame["unit"].isin(group["unit"])]
        base = rates["base_rate"].dropna()
        shares = group["department"].value_counts()
        out.append(
            {
                "group": label,
                "patients": n,
                "baseline_calls_per_1000_person_months": round(float(base.mean()) * 30_000, 2) if len(base) else None,
                "departments": {str(k): round(int(v) / n, 3) for k, v in shares.items() if int(v) >= low},
            }
        )
    return out


def fit(first: date, last: date, baseline: tuple[date, date] | None) -> dict[str, Any]:
    """Fit the model on months first..last; returns the aggregate result (JSON-ready)."""
    return fit_panel(panel(first, last), first, last, baseline)


def _verdict(fitted: bool, pretrend_passed: bool) -> str:
    if not fitted:
        return "insufficient data"
    return "credible" if pretrend_passed else "not credible: calls of enrolling families were already diverging"


def fit_panel(frame: Any, first: date, last: date, baseline: tuple[date, date] | None) -> dict[str, Any]:
    """Fit the model on a patient-month panel (columns of ``panel``)."""
    import numpy as np
    import pandas as pd
    import pyfixest as pf

    low = min_cell()
    base: dict[str, Any] = {"method": "poisson-sun-abraham", "first_month": first, "last_month": last}
    treated_units = frame.loc[frame["rel"].notna(), "unit"].nunique() if len(frame) else 0
    if len(frame) == 0 or treated_units < MIN_TREATED_PATIENTS:
        return {**base, "status": "insufficient_data", "credible": False, "verdict": "insufficient data"}
    months = stratification_months(first, baseline)
    strata, frame = _strata(frame.reset_index(drop=True), months)
    frame = frame.assign(stratum=strata)
    balance = _balance(frame, low)
    frame = frame[~frame["month"].isin(months)].reset_index(drop=True)
    data, columns = _dummies(frame)
    frame = pd.concat([frame, pd.DataFrame(data)], axis=1)
    frame["log_days"] = np.log(frame["days"].astype(float))
    frame["month_key"] = frame["month"].map(lambda m: f"{m:%Y%m}") + "|" + frame["stratum"]
    formula = "calls ~ " + " + ".join(columns) + " | unit + month_key"
    model = pf.fepois(formula, data=frame, vcov={"CRV1": "family"}, offset="log_days")
    names = list(model._coefnames)
    coef = np.asarray(model._beta_hat, dtype=float)
    vcov = np.asarray(model._vcov, dtype=float)
    weights: dict[str, dict[str, float]] = defaultdict(dict)
    for column, (name, _cohort) in columns.items():
        weights[name][column] = float(frame.loc[frame[column] > 0, "days"].sum())
    post = {column: w for name, group in weights.items() if name.startswith("post") for column, w in group.items()}
    overall = _aggregate(coef, vcov, names, post)
    events = []
    for name, lowest, highest in BINS:
        found = _aggregate(coef, vcov, names, weights.get(name, {}))
        if found is not None:
            events.append({"bin": name, "from_month": lowest, "to_month": min(highest, 24), **_interval(*found)})
    pretrend = _pretrend(coef, vcov, names, weights)
    return {
        **base,
        "status": "fitted" if overall is not None else "insufficient_data",
        "att": _interval(*overall) if overall is not None else None,
        "event_study": events,
        "pretrend": pretrend,
        "credible": bool(overall is not None and pretrend["passed"]),
        "verdict": _verdict(overall is not None, pretrend["passed"]),
        "balance": balance,
        "strata_months": [months[0], months[-1]] if months else None,
        "panel_rows": len(frame),
        "patients": int(frame["unit"].nunique()),
        "treated_patients": int(treated_units),
        "included": (
            "every patient present (registered, not exited) in a month after the stratification months "
            "contributes that month's attributed calls and patient-days; calls not attributed to a patient "
            "are left out; patients registered later form their own stratum"
        ),
    }


def _months_with_data() -> tuple[date, date] | None:
    days = CallRecord.objects.filter(patient__isnull=False).order_by("day").values_list("day", flat=True)
    first = days.first()
    last = days.last()
    if first is None or last is None:
        return None
    return month_of(first), month_of(last)


def estimate_refresh() -> EstimateRun | None:
    """Fit on every month with attributed calls and store the result (the nightly task)."""
    span = _months_with_data()
    if span is None:
        return None
    config = metrics_settings()
    baseline = (config.baseline_start, config.baseline_end) if config.baseline_start and config.baseline_end else None
    started = time.perf_counter()
    result = fit(span[0], span[1], baseline)
    return EstimateRun.objects.create(result=_jsonable(result), seconds=round(time.perf_counter() - started, 3))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def latest_estimate() -> dict[str, Any] | None:
    run = EstimateRun.objects.order_by("-fitted_at", "-id").first()
    if run is None:
        return None
    return {**run.result, "fitted_at": run.fitted_at.isoformat(), "seconds": run.seconds}
