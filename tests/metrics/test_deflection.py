"""Deflection figures compare like with like (same months a year earlier, against families not
enrolled), call-backs are set against a same-topic base rate, and disclosure control hides small
cells with their complements without hiding large groups."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from portal.metrics import reports
from portal.metrics.disclosure import protect
from portal.metrics.models import CallRecord, MetricsPatient
from portal.metrics.rollups import rollups_refresh
from tests.metrics.conftest import seed_and_roll

pytestmark = pytest.mark.django_db

PARTS = ("calls", "enrolled", "not_enrolled", "unattributed")


def _monthly(**filters: Any) -> list[dict[str, Any]]:
    window = reports.Window(date(2023, 1, 1), date(2024, 12, 31))
    return reports.report(period="month", window=window, **filters)


def test_with_no_effect_the_deflection_stays_near_zero_through_winter_and_trend() -> None:
    seed_and_roll(patients=1500, months=24, effect=0.0, trend=-0.15, seed=21)
    values = [row["deflection_net"] for row in _monthly() if row["deflection_net"] is not None]
    assert len(values) >= 6
    # The season and the hospital-wide trend cancel: no month credits the portal with much.
    assert abs(statistics.median(values)) < 0.08
    assert max(abs(value) for value in values) < 0.25


def test_deflection_finds_a_true_reduction_and_callbacks_meet_a_base_rate() -> None:
    seed_and_roll(patients=1500, months=24, effect=0.4, trend=-0.15, seed=22)
    rows = _monthly()
    late = [row["deflection_net"] for row in rows if row["deflection_net"] is not None]
    assert 0.25 < statistics.median(late) < 0.5
    for row in rows:
        if row["callbacks"]:
            assert row["callbacks_expected"] is not None and row["callbacks_expected"] >= 0
            assert row["callbacks_excess"] == pytest.approx(
                max(0.0, row["callbacks"] - row["callbacks_expected"]), abs=0.01
            )
    assert any(row["callbacks_expected"] for row in rows)


def test_a_large_not_enrolled_group_is_not_suppressed() -> None:
    seed_and_roll(patients=1200, months=24, effect=0.3, enrol_share=0.1, seed=23)
    rows = _monthly()
    assert len(rows) == 24
    assert all(row["calls_not_enrolled"] is not None for row in rows)
    assert all(row["calls_per_1000_not_enrolled"] is not None for row in rows)


def test_a_small_cell_is_hidden_with_a_complement_so_totals_do_not_reveal_it() -> None:
    seed_and_roll(patients=1500, months=12, effect=0.5, seed=24)
    # A few calls nobody can attribute: a small "unattributed" cell beside large ones.
    day = date(2023, 9, 12)
    for index in range(3):
        CallRecord.objects.create(
            source="t",
            call_id=f"u{index}",
            started_at=datetime(2023, 9, 12, 9, tzinfo=UTC),
            day=day,
            duration_seconds=10,
            direction="inbound",
            topic="refill",
            caller_hash=f"{index:064d}",
            outcome="answered",
            resolved=True,
        )
    rollups_refresh(days=[day])
    for group_by in ("none", "topic", "department"):
        window = reports.Window(date(2023, 9, 1), date(2023, 9, 30))
        rows = reports.report(period="month", window=window, group_by=group_by)
        for row in rows:
            hidden = set(row["suppressed"])
            # One equation per row: calls = enrolled + not enrolled + unattributed.
            assert len(hidden & set(PARTS)) != 1, row
        if group_by == "none":
            continue
        columns: dict[str, int] = defaultdict(int)
        for row in rows:
            for part in row["suppressed"]:
                columns[part] += 1
        # Each part's cells over topics or departments add up to the ungrouped row: never one alone.
        assert all(count != 1 for count in columns.values()), columns
    september = reports.report(period="month", window=reports.Window(date(2023, 9, 1), date(2023, 9, 30)))[0]
    assert "unattributed" in september["suppressed"]
    assert september["calls"] is not None  # the large total stays visible
    assert MetricsPatient.objects.count() == 1500


def test_complementary_suppression_leaves_no_equation_with_one_hidden_cell() -> None:
    patients: dict[Hashable, int] = {"total": 500, "a": 300, "b": 196, "c": 4, "x": 40, "y": 12}
    hidden = protect(patients, [["total", "a", "b", "c"], ["a", "x", "y"]], 11)
    assert hidden == {"c", "b", "y", "x"} or ("c" in hidden and "b" in hidden)
    for line in (["total", "a", "b", "c"], ["a", "x", "y"]):
        assert len([key for key in line if key in hidden]) != 1
    assert "total" not in hidden and "a" not in hidden
