"""Dosage timings: the four shapes the portal follows, and the ones refused with their reason."""

from __future__ import annotations

import pytest

from interop.errors import Unmappable
from interop.mapping.timing import schedule


def _dosage(repeat, **extra):
    return [{"timing": {"repeat": repeat}, **extra}]


@pytest.mark.parametrize(
    ("dosages", "expected"),
    [
        (
            _dosage({"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["20:00:00", "08:00:00"]}),
            ("fixed_times", ["08:00", "20:00"], [], None, None, None),
        ),
        (
            _dosage({"period": 1, "periodUnit": "d", "timeOfDay": ["18:00:00"], "dayOfWeek": ["fri", "mon"]}),
            ("weekdays", ["18:00"], [0, 4], None, None, None),
        ),
        (_dosage({"frequency": 1, "period": 8, "periodUnit": "h"}), ("every_n_hours", [], [], 8, None, None)),
        (
            _dosage({"frequency": 3, "period": 1, "periodUnit": "d"} | {"periodUnit": "h", "period": 24}),
            ("every_n_hours", [], [], 8, None, None),
        ),
        (
            _dosage(
                {"period": 4, "periodUnit": "h"},
                asNeededBoolean=True,
                maxDosePerPeriod={"numerator": {"value": 4}, "denominator": {"value": 1, "code": "d"}},
            ),
            ("as_needed", [], [], None, 240, 4),
        ),
        (
            _dosage(
                {},
                asNeededBoolean=True,
                maxDosePerPeriod={"numerator": {"value": 3}, "denominator": {"value": 24, "unit": "h"}},
            ),
            ("as_needed", [], [], None, None, 3),
        ),
    ],
)
def test_followable_timings(dosages, expected):
    plan = schedule(dosages)
    assert (
        plan.schedule_kind,
        plan.times_of_day,
        plan.weekdays,
        plan.interval_hours,
        plan.min_interval_minutes,
        plan.max_per_day,
    ) == expected


@pytest.mark.parametrize(
    ("dosages", "reason"),
    [
        (_dosage({"frequency": 2, "period": 1, "periodUnit": "d"}), "timing_times_not_given"),
        (_dosage({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["ACM"]}), "timing_when"),
        (_dosage({"frequency": 1, "period": 1, "periodUnit": "wk"}), "timing_period_unit:wk"),
        (_dosage({"frequency": 1, "period": 4, "periodMax": 6, "periodUnit": "h"}), "timing_periodMax"),
        (_dosage({"frequency": 1, "period": 8, "periodUnit": "h", "count": 10}), "timing_count"),
        (_dosage({"frequency": 1, "period": 90, "periodUnit": "min"}), "timing_interval"),
        (_dosage({"dayOfWeek": ["mon"], "period": 1, "periodUnit": "d"}), "timing_weekdays_without_times"),
        (_dosage({"timeOfDay": ["08:00:00"], "period": 2, "periodUnit": "d"}), "timing_times_with_period"),
        (
            _dosage({"timeOfDay": ["08:00:00"], "frequency": 2, "period": 1, "periodUnit": "d"}),
            "timing_frequency_differs_from_times",
        ),
        (_dosage({}, asNeededBoolean=True), "timing_as_needed_without_limits"),
        (
            _dosage(
                {},
                asNeededBoolean=True,
                maxDosePerPeriod={"numerator": {"value": 2}, "denominator": {"value": 1, "code": "wk"}},
            ),
            "timing_period_unit:wk",
        ),
        (_dosage({"frequency": 1, "period": 8, "periodUnit": "h"}) * 2, "timing_several_dosage_lines"),
        ([], "timing_missing"),
        ([{"timing": {"event": ["2026-12-01T08:00:00Z"]}}], "timing_events_or_code_only"),
    ],
)
def test_unfollowable_timings_are_refused_with_the_reason(dosages, reason):
    with pytest.raises(Unmappable) as refused:
        schedule(dosages)
    assert refused.value.reason == reason
