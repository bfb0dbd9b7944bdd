"""Appointments (no silent double-booking), the care team's schedule, confirmations and requests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connections
from django.test import Client

from care.models import Appointment, ScheduleException, WorkingHours
from tests import care_data
from tests.conftest import World, app_client, build_world


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def _book(world: World, persona: str, start: datetime, minutes: int = 30) -> Any:
    return post(
        world.client(persona),
        f"/api/v1/children/{world.ada.pk}/appointments",
        {
            "clinician_id": str(world.clinician.pk),
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=minutes)).isoformat(),
            "location": "Clinic A",
            "visit_type": "Review",
        },
    )


def test_double_booking_is_refused(world: World) -> None:
    start = datetime(2030, 1, 7, 15, tzinfo=UTC)
    assert _book(world, "clinician", start).status_code == 201
    clash = _book(world, "clinician", start + timedelta(minutes=15))
    assert clash.status_code == 409 and clash.json()["code"] == "slot_taken"
    assert _book(world, "clinician", start + timedelta(minutes=30)).status_code == 201  # back to back is fine
    # A cancelled appointment frees its slot.
    first = Appointment.objects.order_by("start").first()
    assert first is not None
    cancel = world.client("clinician").patch(
        f"/api/v1/children/{world.ada.pk}/appointments/{first.pk}",
        data=json.dumps({"status": "cancelled"}),
        content_type="application/json",
    )
    assert cancel.status_code == 200
    assert _book(world, "clinician", start).status_code == 201


def test_rescheduling_into_a_taken_slot_is_refused(world: World) -> None:
    start = datetime(2030, 1, 8, 15, tzinfo=UTC)
    _book(world, "clinician", start)
    second = _book(world, "clinician", start + timedelta(hours=2)).json()
    moved = world.client("clinician").patch(
        f"/api/v1/children/{world.ada.pk}/appointments/{second['id']}",
        data=json.dumps({"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}),
        content_type="application/json",
    )
    assert moved.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_of_one_slot_yield_one_appointment(needs_postgres: None) -> None:
    world = build_world()
    clients = [app_client(world.clinician) for _ in range(10)]
    start = datetime(2030, 2, 4, 15, tzinfo=UTC)
    body = {
        "clinician_id": str(world.clinician.pk),
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "location": "Clinic A",
        "visit_type": "Review",
    }

    def book(index: int) -> int:
        try:
            return post(clients[index % 10], f"/api/v1/children/{world.ada.pk}/appointments", body).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(book, range(30)))
    assert statuses.count(201) == 1 and statuses.count(409) == 29
    assert Appointment.objects.filter(clinician=world.clinician, status="booked").count() == 1


def test_status_follows_the_fhir_lifecycle(world: World) -> None:
    appointment = care_data.appointment(world.ada, world.clinician)
    url = f"/api/v1/children/{world.ada.pk}/appointments/{appointment.pk}"
    patch = world.client("clinician").patch
    assert patch(url, data=json.dumps({"status": "fulfilled"}), content_type="application/json").status_code == 409
    for status in ("arrived", "fulfilled"):
        response = patch(url, data=json.dumps({"status": status}), content_type="application/json")
        assert response.status_code == 200 and response.json()["status"] == status
    assert patch(url, data=json.dumps({"status": "cancelled"}), content_type="application/json").status_code == 409


def test_guardian_confirms_and_requests_a_new_time(world: World) -> None:
    appointment = care_data.appointment(world.ada, world.clinician)
    base = f"/api/v1/children/{world.ada.pk}/appointments/{appointment.pk}"
    confirmed = post(world.client("guardian"), base + "/confirm", {})
    assert confirmed.status_code == 200 and confirmed.json()["guardian_confirmed_at"]
    asked = post(
        world.client("co_guardian"), base + "/change-request", {"action": "reschedule", "note": "afternoons suit us"}
    )
    assert asked.json()["change_request"] == "reschedule"
    appointment.refresh_from_db()
    assert appointment.status == "booked"  # nothing changes until staff act
    upcoming = world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/appointments").json()["items"]
    assert upcoming[0]["change_note"] == "afternoons suit us"
    bad = post(world.client("guardian"), base + "/change-request", {"action": "teleport"})
    assert bad.status_code == 422


def test_past_and_upcoming_lists(world: World) -> None:
    care_data.appointment(world.ada, world.clinician, hours_from_now=-72, status="fulfilled")
    care_data.appointment(world.ada, world.clinician, hours_from_now=72)
    client = world.client("guardian")
    upcoming = client.get(f"/api/v1/children/{world.ada.pk}/appointments").json()["items"]
    past = client.get(f"/api/v1/children/{world.ada.pk}/appointments?when=past").json()["items"]
    assert [a["status"] for a in upcoming] == ["booked"] and [a["status"] for a in past] == ["fulfilled"]


def test_confidential_appointments_are_hidden_from_guardians(world: World) -> None:
    hidden = care_data.appointment(world.ada, world.clinician, confidential=True)
    for persona in ("guardian", "co_guardian"):
        listed = world.client(persona).get(f"/api/v1/children/{world.ada.pk}/appointments").json()["items"]
        assert str(hidden.pk) not in json.dumps(listed)
        assert (
            post(
                world.client(persona), f"/api/v1/children/{world.ada.pk}/appointments/{hidden.pk}/confirm", {}
            ).status_code
            == 404
        )
    listed = world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/appointments").json()["items"]
    assert str(hidden.pk) in json.dumps(listed)


def test_schedule_shows_clinic_hours_open_slots_and_on_call(world: World) -> None:
    monday = datetime(2030, 3, 4, 12, tzinfo=UTC)  # 07:00 in New York (EST)
    for weekday in (0, 2):  # Mondays and Wednesdays, 09:00-11:00 New York time
        WorkingHours.objects.create(
            clinician=world.clinician,
            location="Clinic A",
            weekday=weekday,
            start=time(9),
            end=time(11),
            time_zone="America/New_York",
            slot_minutes=30,
            valid_from=monday.date() - timedelta(days=7),
        )
    ScheduleException.objects.create(
        clinician=world.clinician, kind="on_call", start=monday - timedelta(hours=1), end=monday + timedelta(hours=12)
    )
    ScheduleException.objects.create(
        clinician=world.clinician,
        kind="time_off",
        start=datetime(2030, 3, 11, 0, tzinfo=UTC),
        end=datetime(2030, 3, 12, tzinfo=UTC),
    )
    Appointment.objects.create(
        child=world.ben,
        clinician=world.clinician,
        location="Clinic A",
        visit_type="x",
        start=datetime(2030, 3, 4, 14, 0, tzinfo=UTC),
        end=datetime(2030, 3, 4, 14, 30, tzinfo=UTC),
    )
    with time_machine.travel(monday, tick=False):
        schedule = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/schedule").json()["items"]
    assert len(schedule) == 1
    entry = schedule[0]
    assert entry["clinician_name"] == "Dr. Cleo Clinician" and entry["on_call_now"] and not entry["in_clinic_now"]
    # 09:00-11:00 New York = 14:00-16:00 UTC; 14:00 is booked (for another child: only "busy" shows).
    slots = [slot["start"] for slot in entry["next_open_slots"]]
    assert slots == [
        "2030-03-04T14:30:00Z",
        "2030-03-04T15:00:00Z",
        "2030-03-04T15:30:00Z",
        "2030-03-06T14:00:00Z",
        "2030-03-06T14:30:00Z",
    ]
    hours = [block["start"] for block in entry["clinic_hours"]]
    # Monday 11 March is time off; from 10 March New York keeps daylight time, so 09:00 is 13:00 UTC.
    assert hours == ["2030-03-04T14:00:00Z", "2030-03-06T14:00:00Z", "2030-03-13T13:00:00Z"]
    assert "Benedict" not in json.dumps(schedule)


def test_limited_scope_sees_schedules_but_not_medicines_or_coverage(world: World) -> None:
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    care_data.appointment(world.ada, world.clinician)
    client = world.client("co_guardian")
    assert client.get(f"/api/v1/children/{world.ada.pk}/appointments").status_code == 200
    assert client.get(f"/api/v1/children/{world.ada.pk}/schedule").status_code == 200
    for path in ("medications", "coverage", "refills"):
        assert client.get(f"/api/v1/children/{world.ada.pk}/{path}").status_code == 404
