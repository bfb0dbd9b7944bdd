"""Next-dose computation across daylight-saving changes, in two hemispheres' worth of time zones."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from care import dosing

NY = ZoneInfo("America/New_York")  # 2026: spring forward 8 March 02:00, fall back 1 November 02:00
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: spring forward 29 March 02:00, fall back 25 October 03:00
SYDNEY = ZoneInfo("Australia/Sydney")  # 2026: clocks back 5 April 03:00, forward 4 October 02:00


@dataclass
class Plan:
    schedule_kind: str
    times_of_day: list[str] = field(default_factory=list)
    weekdays: list[int] = field(default_factory=list)
    interval_hours: int | None = None
    min_interval_minutes: int | None = None
    max_per_day: int | None = None
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    end: datetime | None = None


def local(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


@pytest.mark.parametrize(
    ("tz", "spring_day", "fall_day"),
    [
        (NY, (2026, 3, 8), (2026, 11, 1)),
        (BERLIN, (2026, 3, 29), (2026, 10, 25)),
        (SYDNEY, (2026, 10, 4), (2026, 4, 5)),
    ],
)
def test_fixed_times_stay_on_the_wall_clock(
    tz: ZoneInfo, spring_day: tuple[int, int, int], fall_day: tuple[int, int, int]
) -> None:
    plan = Plan("fixed_times", times_of_day=["08:00", "20:00"])
    for day in (spring_day, fall_day):
        before = local(tz, *day, 0, 30).astimezone(UTC) - timedelta(days=1)
        after = before + timedelta(days=3)
        found = dosing.occurrences(plan, tz, before, after)
        assert [moment.astimezone(tz).strftime("%H:%M") for moment in found] == ["08:00", "20:00"] * 3
        # The day of the change is 23 or 25 hours long, so the UTC gap across it changes by an hour.
        gaps = {found[i + 2] - found[i] for i in range(len(found) - 2)}
        assert gaps <= {timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)}
        assert len(gaps) == 2
    # next_due from just before 08:00 local on the spring-forward day
    now = local(tz, *spring_day, 7, 59).astimezone(UTC)
    assert dosing.next_due(plan, tz, now) == local(tz, *spring_day, 8, 0).astimezone(UTC)
    # A recorded dose is skipped over
    assert dosing.next_due(plan, tz, now, [local(tz, *spring_day, 8, 0).astimezone(UTC)]) == local(
        tz, *spring_day, 20, 0
    ).astimezone(UTC)


def test_a_time_in_the_spring_gap_moves_forward_and_a_repeated_time_is_due_once() -> None:
    plan = Plan("fixed_times", times_of_day=["02:30"])
    spring = dosing.occurrences(plan, NY, local(NY, 2026, 3, 8, 0, 0), local(NY, 2026, 3, 9, 0, 0))
    assert [moment.astimezone(NY).strftime("%H:%M %Z") for moment in spring] == ["03:30 EDT"]
    plan = Plan("fixed_times", times_of_day=["01:30"])
    fall = dosing.occurrences(plan, NY, local(NY, 2026, 11, 1, 0, 0), local(NY, 2026, 11, 2, 0, 0))
    assert len(fall) == 1 and fall[0].astimezone(NY).strftime("%H:%M %Z") == "01:30 EDT"


@pytest.mark.parametrize(
    ("tz", "change"), [(NY, (2026, 3, 8)), (NY, (2026, 11, 1)), (BERLIN, (2026, 3, 29)), (BERLIN, (2026, 10, 25))]
)
def test_every_n_hours_keeps_exact_elapsed_gaps(tz: ZoneInfo, change: tuple[int, int, int]) -> None:
    start = local(tz, *change, 0, 0).astimezone(UTC) - timedelta(days=1, hours=2)
    plan = Plan("every_n_hours", interval_hours=8, start=start)
    found = dosing.occurrences(plan, tz, start, start + timedelta(days=3))
    assert len(found) == 9
    assert {b - a for a, b in itertools.pairwise(found)} == {timedelta(hours=8)}
    walls = {moment.astimezone(tz).strftime("%H:%M") for moment in found}
    assert len(walls) == 6  # the wall-clock times shift by an hour after the change
    now = found[4] - timedelta(minutes=1)
    assert dosing.next_due(plan, tz, now) == found[4]


@pytest.mark.parametrize("tz", [NY, BERLIN])
def test_weekday_schedule_across_the_change(tz: ZoneInfo) -> None:
    # Mondays and Thursdays at 18:00; spring change falls on a Sunday in both zones.
    plan = Plan("weekdays", times_of_day=["18:00"], weekdays=[0, 3])
    sunday = (2026, 3, 8) if tz is NY else (2026, 3, 29)
    now = local(tz, *sunday, 12, 0).astimezone(UTC)
    upcoming = dosing.occurrences(plan, tz, now, now + timedelta(days=7))
    assert [(m.astimezone(tz).strftime("%a %H:%M")) for m in upcoming] == ["Mon 18:00", "Thu 18:00"]
    assert dosing.next_due(plan, tz, now) == upcoming[0]


@pytest.mark.parametrize(
    ("tz", "day"), [(NY, (2026, 3, 8)), (NY, (2026, 11, 1)), (BERLIN, (2026, 3, 29)), (BERLIN, (2026, 10, 25))]
)
def test_as_needed_interval_and_daily_maximum_across_the_change(tz: ZoneInfo, day: tuple[int, int, int]) -> None:
    plan = Plan("as_needed", min_interval_minutes=240, max_per_day=3)
    first = local(tz, *day, 0, 30).astimezone(UTC)
    given = [first]
    too_soon = dosing.as_needed_verdict(plan, tz, given, first + timedelta(hours=3, minutes=59))
    assert not too_soon.allowed and too_soon.code == "dose_too_soon"
    assert too_soon.next_allowed_at == first + timedelta(hours=4)  # elapsed time, whatever the clocks did
    assert dosing.as_needed_verdict(plan, tz, given, first + timedelta(hours=4)).allowed
    given += [first + timedelta(hours=5), first + timedelta(hours=10)]
    over = dosing.as_needed_verdict(plan, tz, given, first + timedelta(hours=15))
    assert not over.allowed and over.code == "daily_maximum_reached"
    # The limit resets at the child's local midnight, not UTC's.
    assert over.next_allowed_at == local(tz, day[0], day[1], day[2] + 1, 0, 0).astimezone(UTC)
    assert dosing.next_as_needed(plan, tz, given, first + timedelta(hours=15)) == over.next_allowed_at


def test_plan_period_bounds_the_schedule() -> None:
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    plan = Plan("fixed_times", times_of_day=["08:00", "20:00"], start=start, end=start + timedelta(days=1))
    found = dosing.occurrences(plan, UTC, start - timedelta(days=2), start + timedelta(days=5))  # type: ignore[arg-type]
    assert found == [datetime(2026, 5, 1, 20, tzinfo=UTC), datetime(2026, 5, 2, 8, tzinfo=UTC)]


def test_adherence_counts_given_skipped_and_missed() -> None:
    plan = Plan("fixed_times", times_of_day=["08:00", "20:00"], start=datetime(2026, 5, 1, tzinfo=UTC))
    now = datetime(2026, 5, 8, 0, 0, tzinfo=UTC)
    slots = dosing.occurrences(plan, UTC, now - timedelta(days=7), now)  # type: ignore[arg-type]
    logs = [(slot, "given") for slot in slots[:10]] + [(slots[10], "skipped")]
    result = dosing.adherence(plan, UTC, now, 7, logs)  # type: ignore[arg-type]
    assert (result.scheduled, result.given, result.skipped, result.missed, result.percent) == (14, 10, 1, 3, 71.4)
