"""The difference-in-differences recovers a known effect where the naive before/after does not."""

from __future__ import annotations

import pytest

from portal.metrics import reports
from portal.metrics.comparison import comparison
from tests.metrics.conftest import last_quarter, seed_and_roll

pytestmark = pytest.mark.django_db


def test_did_recovers_the_true_effect_despite_a_hospital_wide_trend() -> None:
    summary = seed_and_roll(effect=0.6, trend=-0.15)
    baseline = reports.baseline_window()
    assert baseline is not None
    result = comparison(baseline=baseline, window=last_quarter(summary))
    assert result["effect"] == pytest.approx(0.6, abs=0.03)
    assert result["ci_low"] < 0.6 < result["ci_high"]
    # The trend (calls falling hospital-wide) is credited to the portal by the naive figure.
    assert abs(result["naive_before_after"] - 0.6) > 0.03
    assert result["naive_before_after"] > result["effect"]


def test_with_no_effect_the_interval_contains_zero() -> None:
    summary = seed_and_roll(effect=0.0, trend=-0.15, seed=5)
    baseline = reports.baseline_window()
    assert baseline is not None
    result = comparison(baseline=baseline, window=last_quarter(summary))
    assert result["ci_low"] <= 0 <= result["ci_high"]
    # ...while the naive before/after claims a reduction.
    assert result["naive_before_after"] > 0.05
