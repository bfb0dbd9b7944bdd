"""Small shared pieces of the metrics: date buckets, dirty days, flags."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta

from django.utils import timezone

from portal.metrics.models import DirtyDay, Watermark

WRITE_BATCH = 5000
COHORTS_STALE = "cohort_sizes_stale"
ESTIMATE_STALE = "estimate_stale"


def days_between(first: date, last: date) -> Iterator[date]:
    """Every day from ``first`` to ``last``, both included."""
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=1) + timedelta(days=32)).replace(day=1)


def mark_dirty(days: Iterable[date]) -> None:
    rows = [DirtyDay(day=day) for day in set(days)]
    if rows:
        DirtyDay.objects.bulk_create(rows, batch_size=WRITE_BATCH, ignore_conflicts=True)
        flag(ESTIMATE_STALE)


def flag(name: str) -> None:
    Watermark.objects.update_or_create(name=name, defaults={"value": 1, "updated_at": timezone.now()})


def flagged(name: str) -> bool:
    return Watermark.objects.filter(name=name, value=1).exists()


def unflag(name: str) -> None:
    Watermark.objects.filter(name=name).delete()
