from __future__ import annotations

from datetime import date
from typing import Any

from fixtures.metrics_seed import SeedParams, SeedSummary, seed_metrics
from portal.metrics import reports
from portal.metrics.common import days_between
from portal.metrics.population import cohort_sizes_refresh
from portal.metrics.rollups import rollups_refresh


def seed_and_roll(**overrides: Any) -> SeedSummary:
    params = SeedParams(
        **{
            "patients": 2500,
            "months": 18,
            "departments": 1,
            "effect": 0.6,
            "seed": 11,
            "start": date(2023, 1, 1),
            "calls_per_patient_year": 8.0,
            "actions_per_enrolled_day": 0.02,
            **overrides,
        }
    )
    summary = seed_metrics(params)
    rollups_refresh(days=days_between(summary.start, summary.end))
    cohort_sizes_refresh()
    return summary


def last_quarter(summary: SeedSummary) -> reports.Window:
    return reports.Window(date(2024, 4, 1), summary.end)
