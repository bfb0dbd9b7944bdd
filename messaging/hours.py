"""Business hours: whether the care team is in, and reply-by times counted in business time.

The clock is ``django.utils.timezone.now`` (tests freeze it with time-machine); every function takes
the moment explicitly.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from messaging.conf import BusinessHours, business_hours

_MAX_DAYS = 370  # a year of holidays cannot make a search loop forever


def _is_business_day(day: date, hours: BusinessHours) -> bool:
    return day.weekday() in hours.weekdays and day.isoformat() not in hours.holidays


def _window(day: date, hours: BusinessHours, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return datetime.combine(day, hours.opens, tzinfo=tz), datetime.combine(day, hours.closes, tzinfo=tz)


def is_open(moment: datetime, hours: BusinessHours | None = None) -> bool:
    hours = hours or business_hours()
    tz = ZoneInfo(hours.time_zone)
    local = moment.astimezone(tz)
    if not _is_business_day(local.date(), hours):
        return False
    start, end = _window(local.date(), hours, tz)
    return start <= moment < end


def next_open(moment: datetime, hours: BusinessHours | None = None) -> datetime:
    """``moment`` itself when open, else the next opening."""
    hours = hours or business_hours()
    tz = ZoneInfo(hours.time_zone)
    day = moment.astimezone(tz).date()
    for _ in range(_MAX_DAYS):
        if _is_business_day(day, hours):
            start, end = _window(day, hours, tz)
            if moment < end:
                return max(start, moment)
        day += timedelta(days=1)
    return moment


def last_close(moment: datetime, hours: BusinessHours | None = None) -> datetime:
    """The most recent closing at or before ``moment`` (when the current out-of-hours period began)."""
    hours = hours or business_hours()
    tz = ZoneInfo(hours.time_zone)
    day = moment.astimezone(tz).date()
    for _ in range(_MAX_DAYS):
        if _is_business_day(day, hours):
            _, end = _window(day, hours, tz)
            if end <= moment:
                return end
        day -= timedelta(days=1)
    return moment


def add_business_minutes(moment: datetime, minutes: int, hours: BusinessHours | None = None) -> datetime:
    """The instant ``minutes`` of business time after ``moment``."""
    hours = hours or business_hours()
    tz = ZoneInfo(hours.time_zone)
    remaining = timedelta(minutes=minutes)
    cursor = next_open(moment, hours)
    for _ in range(_MAX_DAYS):
        _, end = _window(cursor.astimezone(tz).date(), hours, tz)
        available = end - cursor
        if remaining <= available:
            return cursor + remaining
        remaining -= available
        cursor = next_open(end, hours)
    return cursor + remaining


def reply_by(moment: datetime, minutes: int, business_only: bool) -> datetime:
    return add_business_minutes(moment, minutes) if business_only else moment + timedelta(minutes=minutes)
