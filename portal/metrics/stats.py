"""Difference-in-differences on call rates, with a confidence interval (standard library only).

Four rates: enrolled (treated) and not-enrolled (comparison) families, in the baseline and in the
comparison period, each calls / patient-days. The portal's effect is the relative change of the
treated rate beyond the change the comparison group saw over the same periods:

    effect = 1 - (T_post / T_base) / (C_post / C_base)

A hospital-wide trend or a season multiplies both groups' rates alike and cancels out; a different
level of calling between the groups (families who enrol may call more) cancels out too. The
interval treats the four call counts as Poisson, widened by the over-dispersion that the monthly
counts show around a model with a common month effect (quasi-Poisson), on the log scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist


@dataclass(frozen=True)
class GroupPeriod:
    calls: int
    patients: int
    days: int

    @property
    def exposure(self) -> int:
        return self.patients * self.days

    @property
    def rate(self) -> float:
        return self.calls / self.exposure if self.exposure else math.nan


@dataclass(frozen=True)
class DidResult:
    effect: float
    low: float
    high: float
    dispersion: float
    naive_before_after: float
    naive_enrolled_vs_not: float


def dispersion(cells: Mapping[tuple[str, str, date], tuple[int, float]]) -> float:
    """Pearson χ²/df of monthly counts around ``log μ = groupxperiod + month`` (at least 1).

    ``cells`` maps (group, period, month) → (calls, exposure). Fitted by iterative proportional
    fitting, which is the maximum-likelihood fit of this log-linear Poisson model.
    """
    if not cells:
        return 1.0
    keys = list(cells)
    fitted = {key: max(cells[key][1], 1e-9) for key in keys}
    margins_gp: dict[tuple[str, str], list[tuple[str, str, date]]] = {}
    margins_m: dict[date, list[tuple[str, str, date]]] = {}
    for key in keys:
        margins_gp.setdefault((key[0], key[1]), []).append(key)
        margins_m.setdefault(key[2], []).append(key)
    for _ in range(50):
        for group in (margins_gp, margins_m):
            for members in group.values():
                observed = sum(cells[key][0] for key in members)
                expected = sum(fitted[key] for key in members)
                factor = observed / expected if expected else 0.0
                for key in members:
                    fitted[key] *= factor
    chi2 = sum((cells[key][0] - fitted[key]) ** 2 / fitted[key] for key in keys if fitted[key] > 0)
    # Months are nested in periods, so each period adds one redundancy between the group x period and
    # the month parameters: the model has |gp| + |months| - |periods| free parameters.
    periods = {key[1] for key in keys}
    df = len(keys) - len(margins_gp) - len(margins_m) + len(periods)
    if df <= 0:
        return 1.0
    return max(1.0, chi2 / df)


def difference_in_differences(
    *,
    treated_base: GroupPeriod,
    treated_post: GroupPeriod,
    control_base: GroupPeriod,
    control_post: GroupPeriod,
    phi: float = 1.0,
    confidence: float = 0.95,
) -> DidResult | None:
    """The relative effect with its interval, or None when a group has no calls to compare."""
    groups = (treated_base, treated_post, control_base, control_post)
    if any(group.calls == 0 or group.exposure == 0 for group in groups):
        return None
    log_ratio = (
        math.log(treated_post.rate)
        - math.log(treated_base.rate)
        - math.log(control_post.rate)
        + math.log(control_base.rate)
    )
    se = math.sqrt(phi * sum(1 / group.calls for group in groups))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return DidResult(
        effect=1 - math.exp(log_ratio),
        low=1 - math.exp(log_ratio + z * se),
        high=1 - math.exp(log_ratio - z * se),
        dispersion=phi,
        naive_before_after=1 - treated_post.rate / treated_base.rate,
        naive_enrolled_vs_not=1 - treated_post.rate / control_post.rate,
    )
