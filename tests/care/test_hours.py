"""Business hours (care.scheduling owns them): reply-by arithmetic, the hospital's time zone, a
department's own hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from django.conf import settings
from django.utils import timezone

from care import scheduling as hours
from care.models import DepartmentHours
from care.scheduling import BusinessHours, hospital_hours
from messaging import routing
from messaging.models import Message, RoutingRule
from portal.models import DepartmentMembership
from tests.conftest import World

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


# -- the hospital's time zone, through the messenger, on a frozen clock ---------------------------

CHICAGO = ZoneInfo("America/Chicago")
NOON_CHICAGO = datetime(2027, 6, 9, 12, 0, tzinfo=CHICAGO)  # a Wednesday (17:00 UTC: closed in UTC)
EVENING_CHICAGO = datetime(2027, 6, 9, 20, 0, tzinfo=CHICAGO)  # 01:00 UTC on Thursday


def _start(world: World, moment: datetime) -> dict[str, Any]:
    from tests.messaging import data

    with time_machine.travel(moment, tick=False):
        world.clients.clear()
        answer = data.start_thread(world, body="Can we move the appointment?")
    assert answer.status_code == 201, answer.content
    body: dict[str, Any] = answer.json()
    return body


def _automatic(thread: dict[str, Any]) -> list[str]:
    return [m.body for m in Message.objects.filter(thread_id=thread["id"], kind="automatic")]


def test_the_demo_hospital_keeps_chicago_hours_by_default() -> None:
    assert settings.PORTAL_HOSPITAL_TIME_ZONE == "America/Chicago"
    assert hospital_hours().time_zone == "America/Chicago"


def test_at_noon_in_chicago_the_care_team_is_in(world: World) -> None:
    thread = _start(world, NOON_CHICAGO)
    assert _automatic(thread) == []
    # One business day (9 business hours): 5 today, 4 from Thursday's 08:00 opening.
    assert datetime.fromisoformat(thread["reply_by"]) == datetime(2027, 6, 10, 12, 0, tzinfo=CHICAGO)


def test_at_eight_in_the_evening_in_chicago_the_family_gets_the_after_hours_reply(world: World) -> None:
    world.guardian.time_zone = "America/Chicago"
    world.guardian.save(update_fields=["time_zone"])
    thread = _start(world, EVENING_CHICAGO)
    assert datetime.fromisoformat(thread["reply_by"]) == datetime(2027, 6, 10, 17, 0, tzinfo=CHICAGO)
    [reply] = _automatic(thread)
    assert "outside business hours" in reply and "2027-06-10 17:00 CDT" in reply


def test_a_department_keeps_its_own_hours_and_holidays(world: World) -> None:
    DepartmentHours.objects.create(
        department=world.department,
        weekdays=[0, 1, 2, 3, 4, 5],
        opens=time(7),
        closes=time(21),
        holidays=["2027-06-10"],
    )
    own = hours.department_hours(world.department)
    assert own.time_zone == "America/Chicago" and own.closes == time(21)
    assert hours.department_hours(world.other_department) == hospital_hours()
    thread = _start(world, EVENING_CHICAGO)  # 20:00: this department is still in
    assert _automatic(thread) == []
    # 1 hour on Wednesday, Thursday is the department's holiday, 8 hours from Friday's 07:00.
    assert datetime.fromisoformat(thread["reply_by"]) == datetime(2027, 6, 11, 15, 0, tzinfo=CHICAGO)
    # The department's hours count for its routing rule too.
    RoutingRule.objects.create(topic="billing", department=world.department, reply_within_minutes=60)
    with time_machine.travel(datetime(2027, 6, 12, 20, 30, tzinfo=CHICAGO), tick=False):  # Saturday: open to 21:00
        route = routing.route(child=world.ada, topic="billing", priority="routine", moment=timezone.now())
        # 30 minutes on Saturday, none on Sunday, 30 from Monday's 07:00.
        assert route.reply_by(timezone.now()) == datetime(2027, 6, 14, 7, 30, tzinfo=CHICAGO)


def test_the_messenger_pages_from_cares_on_call_rota(world: World) -> None:
    """Care owns on-call duty: the care team's on-call clinicians first, by the start of duty, then the
    department's; without anyone on call, the department's leads."""
    from care.models import ScheduleException
    from tests.conftest import make_user

    at = NOON_CHICAGO
    assert hours.on_call_rota(child_id=world.ada.pk, department=world.department, moment=at) == []
    assert hours.department_leads(world.department) == [world.clinician.pk]  # who is paged instead
    colleague = make_user("colleague@example.org", "Dr. Colleague")
    DepartmentMembership.objects.create(department=world.department, clinician=colleague, role="doctor")
    ScheduleException.objects.create(
        clinician=colleague, kind="on_call", start=at - timedelta(hours=9), end=at + timedelta(hours=1)
    )
    ScheduleException.objects.create(
        clinician=world.clinician, kind="on_call", start=at - timedelta(hours=1), end=at + timedelta(hours=1)
    )
    assert hours.on_call_rota(child_id=world.ada.pk, department=world.department, moment=at) == [
        world.clinician.pk,  # on Ada's care team
        colleague.pk,
    ]
    assert hours.on_call_rota(child_id=world.ada.pk, department=None, moment=at) == [world.clinician.pk]
    assert hours.on_call_rota(child_id=world.ada.pk, department=world.department, moment=at + timedelta(hours=2)) == []
