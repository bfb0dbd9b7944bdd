"""Business hours (care.scheduling owns them): reply-by arithmetic, the hospital's time zone, a
department's own hours."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from care import scheduling as hours
from care.scheduling import BusinessHours, hospital_hours

NY = ZoneInfo("America/New_York")
CLINIC = BusinessHours(
    time_zone="America/New_York",
    weekdays=frozenset({0, 1, 2, 3, 4}),
    opens=datetime(2000, 1, 1, 8).time(),
    closes=datetime(2000, 1, 1, 17).time(),
    holidays=frozenset({"2027-07-05"}),
)


def ny(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def test_open_and_closed() -> None:
    assert hours.is_open(ny(2027, 6, 9, 10), CLINIC)
    assert not hours.is_open(ny(2027, 6, 9, 17), CLINIC)  # closing time is closed
    assert not hours.is_open(ny(2027, 6, 12, 10), CLINIC)  # Saturday
    assert not hours.is_open(ny(2027, 7, 5, 10), CLINIC)  # holiday


def test_business_minutes_skip_nights_weekends_and_holidays() -> None:
    assert hours.add_business_minutes(ny(2027, 6, 9, 10), 60, CLINIC) == ny(2027, 6, 9, 11)
    assert hours.add_business_minutes(ny(2027, 6, 11, 16), 9 * 60, CLINIC) == ny(2027, 6, 14, 16)  # Fri → Mon
    assert hours.add_business_minutes(ny(2027, 6, 12, 3), 30, CLINIC) == ny(2027, 6, 14, 8, 30)  # Saturday night
    assert hours.add_business_minutes(ny(2027, 7, 2, 16), 120, CLINIC) == ny(2027, 7, 6, 9)  # across the holiday
    assert hours.reply_by(ny(2027, 6, 12, 3), 60, business_only=False) == ny(2027, 6, 12, 4)


def test_next_open_and_last_close() -> None:
    assert hours.next_open(ny(2027, 6, 9, 20), CLINIC) == ny(2027, 6, 10, 8)
    assert hours.next_open(ny(2027, 6, 9, 9), CLINIC) == ny(2027, 6, 9, 9)
    assert hours.last_close(ny(2027, 6, 10, 2), CLINIC) == ny(2027, 6, 9, 17)
    assert hours.last_close(ny(2027, 6, 14, 7), CLINIC) == ny(2027, 6, 11, 17)


def test_settings_configure_business_hours(settings) -> None:
    settings.PORTAL_BUSINESS_HOURS = {
        "time_zone": "Europe/Madrid",
        "weekdays": [0],
        "opens": "09:00",
        "closes": "10:00",
    }
    configured = hospital_hours()
    assert configured.time_zone == "Europe/Madrid" and configured.weekdays == frozenset({0})
    assert hours.is_open(datetime(2027, 6, 14, 7, 30, tzinfo=UTC))  # Monday 09:30 in Madrid
