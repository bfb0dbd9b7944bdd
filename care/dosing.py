"""When doses are due: pure functions over a plan's timing, in the child's time zone.

* Fixed times (and fixed times on chosen weekdays) are wall-clock times in the child's time zone: a
  08:00 dose stays at 08:00 across daylight-saving changes. A time that does not exist on the
  spring-forward day (02:30) falls an hour later, at the first instant that does; a time that occurs
  twice on the fall-back day (01:30) is due once, at its first occurrence.
* "Every N hours" is elapsed time from the plan's start: the gap between two doses is always N hours,
  so across a change the wall-clock times move by an hour (what a nurse means by "every 8 hours").
* "As needed" has no schedule: a dose is allowed once the minimum interval since the last one has
  passed and while fewer than the daily maximum were given today (the child's calendar day).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Timing(Protocol):
    schedule_kind: str
    times_of_day: list[str]
    weekdays: list[int]
    interval_hours: int | None
    min_interval_minutes: int | None
    max_per_day: int | None
    start: datetime
    end: datetime | None


def parse_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock time happens on a day; gap times move forward, repeated ones come once."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def occurrences(plan: Timing, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Scheduled dose instants in ``[start, end)`` (UTC), within the plan's own period."""
    lower = max(start, plan.start)
    upper = min(end, plan.end) if plan.end else end
    if upper <= lower:
        return []
    kind = plan.schedule_kind
    if kind == "every_n_hours":
        step = timedelta(hours=int(plan.interval_hours or 0))
        if not step:
            return []
        first = max(0, math.ceil((lower - plan.start) / step))
        result = []
        moment = plan.start + first * step
        while moment < upper:
            result.append(moment.astimezone(UTC))
            moment += step
        return result
    if kind not in ("fixed_times", "weekdays"):
        return []
    times = sorted(parse_time(value) for value in plan.times_of_day)
    allowed_days = set(plan.weekdays) if kind == "weekdays" else set(range(7))
    day = lower.astimezone(tz).date() - timedelta(days=1)
    last_day = upper.astimezone(tz).date() + timedelta(days=1)
    found: set[datetime] = set()
    while day <= last_day:
        if day.weekday() in allowed_days:
            for at in times:
                instant = _local_instant(day, at, tz)
                if lower <= instant < upper:
                    found.add(instant)
        day += timedelta(days=1)
    return sorted(found)


def next_due(plan: Timing, tz: ZoneInfo, now: datetime, recorded: Iterable[datetime] = ()) -> datetime | None:
    """The first scheduled dose at or after ``now`` not yet recorded (given or skipped)."""
    done = set(recorded)
    horizon = now + timedelta(days=8)  # every schedule repeats within a week
    for instant in occurrences(plan, tz, now, horizon):
        if instant not in done:
            return instant
    return None


@dataclass(frozen=True)
class AsNeededVerdict:
    allowed: bool
    code: str = ""
    message: str = ""
    next_allowed_at: datetime | None = None
    given_today: int = 0


def as_needed_verdict(plan: Timing, tz: ZoneInfo, given: Iterable[datetime], at: datetime) -> AsNeededVerdict:
    """May an as-needed dose be given at ``at``, given the earlier doses' times?"""
    earlier = sorted(moment for moment in given if moment <= at)
    local_day = at.astimezone(tz).date()
    today = [moment for moment in earlier if moment.astimezone(tz).date() == local_day]
    if plan.min_interval_minutes and earlier:
        next_allowed = earlier[-1] + timedelta(minutes=plan.min_interval_minutes)
        if at < next_allowed:
            return AsNeededVerdict(
                False,
                "dose_too_soon",
                f"The last dose was less than {plan.min_interval_minutes} minutes ago; the next may be given "
                f"from {next_allowed.astimezone(tz):%H:%M}.",
                next_allowed,
                len(today),
            )
    if plan.max_per_day is not None and len(today) >= plan.max_per_day:
        tomorrow = datetime.combine(local_day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
        return AsNeededVerdict(
            False,
            "daily_maximum_reached",
            f"The daily maximum of {plan.max_per_day} doses has been given today.",
            tomorrow,
            len(today),
        )
    return AsNeededVerdict(True, given_today=len(today))


def next_as_needed(plan: Timing, tz: ZoneInfo, given: Iterable[datetime], now: datetime) -> datetime:
    """The earliest moment from ``now`` at which an as-needed dose would be allowed."""
    moments = list(given)
    verdict = as_needed_verdict(plan, tz, moments, now)
    if verdict.allowed or verdict.next_allowed_at is None:
        return now
    # A later moment may still hit the other limit (e.g. the interval passes after midnight).
    again = as_needed_verdict(plan, tz, moments, verdict.next_allowed_at)
    if again.allowed or again.next_allowed_at is None:
        return verdict.next_allowed_at
    return again.next_allowed_at


@dataclass(frozen=True)
class Adherence:
    days: int
    scheduled: int
    given: int
    skipped: int
    missed: int
    percent: float | None


def adherence(
    plan: Timing, tz: ZoneInfo, now: datetime, days: int, logs: Iterable[tuple[datetime | None, str]]
) -> Adherence:
    """Share of scheduled doses in the last ``days`` days recorded as given (as-needed: no schedule)."""
    window = occurrences(plan, tz, now - timedelta(days=days), now)
    expected = set(window)
    given = skipped = 0
    for scheduled_for, status in logs:
        if scheduled_for in expected:
            if status == "given":
                given += 1
            elif status == "skipped":
                skipped += 1
    missed = max(0, len(window) - given - skipped)
    percent = round(100 * given / len(window), 1) if window else None
    return Adherence(days, len(window), given, skipped, missed, percent)
