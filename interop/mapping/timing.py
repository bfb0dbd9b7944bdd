"""A MedicationRequest's dosage timing → the portal's dosing rules (``care.dosing``), or a reason.

The portal follows four shapes: fixed clock times every day, fixed times on chosen weekdays, every N
hours, and as needed (a minimum interval and/or a daily maximum). Anything else is refused with its
reason rather than approximated: "twice a day" without clock times, times tied to meals or sleep
(``when``), weekly or monthly periods, ranges (``periodMax``, ``frequencyMax``), a number of doses
(``count``), or several dosage lines (tapering). A family must never be told a medicine is due at a
time the prescriber did not write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interop.errors import Unmappable, named

DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
HOURS_PER_UNIT = {"h": 1.0, "min": 1 / 60, "d": 24.0}
UNITS = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})  # UCUM units of time a Timing may use
UNFOLLOWABLE = ("when", "offset", "count", "countMax", "duration", "durationMax", "frequencyMax", "periodMax")


@dataclass
class Schedule:
    schedule_kind: str
    times_of_day: list[str] = field(default_factory=list)
    weekdays: list[int] = field(default_factory=list)
    interval_hours: int | None = None
    min_interval_minutes: int | None = None
    max_per_day: int | None = None


def _hours(amount: Any, unit: Any) -> float:
    if unit not in HOURS_PER_UNIT or amount is None:
        raise Unmappable(f"timing_period_unit:{named(unit, UNITS)}")
    return float(amount) * HOURS_PER_UNIT[unit]


def _max_per_day(dosage: dict[str, Any]) -> int | None:
    ratio = dosage.get("maxDosePerPeriod")
    if not ratio:
        return None
    numerator, denominator = ratio.get("numerator") or {}, ratio.get("denominator") or {}
    unit = denominator.get("code") or denominator.get("unit")
    if numerator.get("value") is None or _hours(denominator.get("value"), unit) != 24:
        raise Unmappable("timing_max_dose_not_per_day")
    return int(numerator["value"])


def _as_needed(dosage: dict[str, Any], repeat: dict[str, Any]) -> Schedule:
    minutes = None
    if repeat.get("period") is not None:
        if repeat.get("frequency", 1) != 1:
            raise Unmappable("timing_as_needed_frequency")
        minutes = round(_hours(repeat["period"], repeat.get("periodUnit")) * 60)
    max_per_day = _max_per_day(dosage)
    if not minutes and not max_per_day:
        raise Unmappable("timing_as_needed_without_limits")
    return Schedule("as_needed", min_interval_minutes=minutes or None, max_per_day=max_per_day)


def _clock(value: str) -> str:
    return value[:5]


def schedule(dosages: list[dict[str, Any]]) -> Schedule:
    """The portal's schedule for the dosage instructions, or ``Unmappable`` with the reason."""
    if len(dosages) != 1:
        raise Unmappable("timing_several_dosage_lines" if dosages else "timing_missing")
    dosage = dosages[0]
    timing = dosage.get("timing") or {}
    repeat = timing.get("repeat") or {}
    if timing.get("event") or (timing.get("code") and not repeat):
        raise Unmappable("timing_events_or_code_only")
    if dosage.get("asNeededBoolean") or dosage.get("asNeededCodeableConcept"):
        return _as_needed(dosage, repeat)
    for name in UNFOLLOWABLE:
        if repeat.get(name):
            raise Unmappable(f"timing_{name}")
    times = sorted(_clock(t) for t in repeat.get("timeOfDay") or [])
    days = sorted(DAYS[d] for d in repeat.get("dayOfWeek") or [])
    if times:
        if repeat.get("period", 1) != 1 or repeat.get("periodUnit", "d") != "d":
            raise Unmappable("timing_times_with_period")
        if repeat.get("frequency") not in (None, len(times)):
            raise Unmappable("timing_frequency_differs_from_times")
        if days and len(days) < 7:
            return Schedule("weekdays", times_of_day=times, weekdays=days)
        return Schedule("fixed_times", times_of_day=times)
    if days:
        raise Unmappable("timing_weekdays_without_times")
    if repeat.get("period") is None:
        raise Unmappable("timing_missing")
    hours = _hours(repeat["period"], repeat.get("periodUnit")) / float(repeat.get("frequency", 1))
    if repeat.get("periodUnit") == "d" or hours != int(hours) or hours < 1:
        # "Once/twice a day" names no clock time; fractional intervals have no portal rule.
        raise Unmappable("timing_times_not_given" if repeat.get("periodUnit") == "d" else "timing_interval")
    return Schedule("every_n_hours", interval_hours=int(hours))
