from __future__ import annotations

from datetime import date
from typing import Any

from portal.metrics import selectors, services
from portal.metrics.seed import SeedParams, SeedSummary, seed_metrics


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
    services.rollups_refresh(days=services._days(summary.start, summary.end))
    services.cohort_sizes_refresh()
    return summary


def last_quarter(summary: SeedSummary) -> selectors.Window:
    return selectors.Window(date(2024, 4, 1), summary.end)
