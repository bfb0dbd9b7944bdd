"""Medication plans and doses, coverage, the one-glance view and the calendar feed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from icalendar import Calendar

from care.models import DoseLog
from portal import services as portal_services
from portal.models import GuardianLink
from tests import care_data
from tests.care import results_data
from tests.conftest import ADA_NAME, World, app_client, make_user


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


NOON = datetime(2027, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)


def test_plans_show_next_due_overdue_and_adherence(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician, start=datetime(2027, 6, 1, tzinfo=UTC))
    morning = datetime(2027, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
    with time_machine.travel(NOON, tick=False):
        views = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/medications").json()["items"]
        assert views[0]["medication"] == care_data.INSULIN
        assert views[0]["next_due"] == "2027-06-11T00:00:00Z"  # 20:00 EDT
        assert views[0]["overdue"] == ["2027-06-10T00:00:00Z", "2027-06-10T12:00:00Z"]
        given = post(
            world.client("guardian"),
            f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/doses",
            {
                "client_id": str(uuid.uuid4()),
                "status": "given",
                "scheduled_for": morning.isoformat(),
                "occurred_at": (morning + timedelta(minutes=5)).isoformat(),
            },
        )
        assert given.status_code == 201, given.content
        views = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/medications").json()["items"]
        assert views[0]["overdue"] == ["2027-06-10T00:00:00Z"]
        week = views[0]["adherence"][0]
        assert (week["days"], week["scheduled"], week["given"]) == (7, 14, 1)


def test_dose_recording_is_idempotent_by_client_id(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician, start=datetime(2027, 6, 1, tzinfo=UTC))
    body = {
        "client_id": str(uuid.uuid4()),
        "status": "skipped",
        "scheduled_for": "2027-06-10T12:00:00Z",
        "note": "vomiting",
    }
    url = f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/doses"
    with time_machine.travel(NOON, tick=False):
        first = post(world.client("guardian"), url, body)
        retry = post(world.client("guardian"), url, body)
        assert (first.status_code, retry.status_code) == (201, 200)
        assert first.json()["id"] == retry.json()["id"]
        other_id = post(world.client("co_guardian"), url, {**body, "client_id": str(uuid.uuid4())})
        assert other_id.status_code == 409 and other_id.json()["code"] == "dose_already_recorded"
        wrong_time = post(
            world.client("guardian"),
            url,
            {**body, "client_id": str(uuid.uuid4()), "scheduled_for": "2027-06-10T13:00:00Z"},
        )
        assert wrong_time.status_code == 422 and wrong_time.json()["code"] == "not_a_scheduled_dose"
    assert DoseLog.objects.count() == 1


def test_as_needed_too_soon_and_daily_maximum_are_refused(world: World) -> None:
    plan = care_data.plan(
        world.ada,
        world.clinician,
        schedule_kind="as_needed",
        times_of_day=[],
        min_interval_minutes=240,
        max_per_day=2,
        medication="Salbutamol",
    )
    url = f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/doses"

    def give(at: datetime) -> Any:
        return post(
            world.client("guardian"),
            url,
            {"client_id": str(uuid.uuid4()), "status": "given", "occurred_at": at.isoformat()},
        )

    with time_machine.travel(NOON + timedelta(hours=10), tick=False):
        assert give(NOON).status_code == 201
        soon = give(NOON + timedelta(hours=1))
        assert soon.status_code == 422 and soon.json()["code"] == "dose_too_soon"
        assert "16:00" in soon.json()["message"]  # local time of the next allowed dose
        assert give(NOON + timedelta(hours=4)).status_code == 201
        over = give(NOON + timedelta(hours=9))
        assert over.status_code == 422 and over.json()["code"] == "daily_maximum_reached"
        views = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/medications").json()["items"]
        assert views[0]["next_allowed_at"] == "2027-06-11T04:00:00Z"  # local midnight in New York


def test_doses_cannot_be_logged_in_the_future_or_for_stopped_plans(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    url = f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/doses"
    future = post(
        world.client("guardian"),
        url,
        {"client_id": str(uuid.uuid4()), "status": "given", "occurred_at": "2099-01-01T00:00:00Z"},
    )
    assert future.status_code == 422
    stopped = care_data.plan(world.ada, world.clinician, status="stopped")
    refused = post(
        world.client("guardian"),
        f"/api/v1/children/{world.ada.pk}/medications/{stopped.pk}/doses",
        {"client_id": str(uuid.uuid4()), "status": "given"},
    )
    assert refused.status_code == 409


def test_prescribing_validates_the_schedule(world: World) -> None:
    url = f"/api/v1/children/{world.ada.pk}/medications"
    bad = post(
        world.client("clinician"),
        url,
        {
            "medication": "X",
            "dose_quantity": "1",
            "dose_unit": "mg",
            "schedule_kind": "fixed_times",
            "start": "2026-01-01T00:00:00Z",
        },
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_schedule"
    bad_time = post(
        world.client("clinician"),
        url,
        {
            "medication": "X",
            "dose_quantity": "1",
            "dose_unit": "mg",
            "schedule_kind": "fixed_times",
            "times_of_day": ["25:00"],
            "start": "2026-01-01T00:00:00Z",
        },
    )
    assert bad_time.status_code == 422 and bad_time.json()["code"] == "invalid_input"
    ok = post(
        world.client("clinician"),
        url,
        {
            "medication": "Levetiracetam",
            "dose_quantity": "250",
            "dose_unit": "mg",
            "schedule_kind": "weekdays",
            "weekdays": [0, 3],
            "times_of_day": ["18:00"],
            "start": "2026-01-01T00:00:00Z",
            "refills_allowed": 2,
        },
    )
    assert ok.status_code == 201 and ok.json()["refills_remaining"] == 2


def test_coverage_change_is_pending_until_verified(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    base = f"/api/v1/children/{world.ada.pk}/coverage"
    submitted = post(
        world.client("guardian"), base, {"payer": "New Payer", "member_id": "NP-555", "copays": {"specialist": "40"}}
    )
    assert submitted.status_code == 201 and submitted.json()["status"] == "pending"
    assert submitted.json()["copays"] == {"specialist": "40.00"}
    listed = world.client("co_guardian").get(base).json()["items"]
    assert {row["status"] for row in listed} == {"active", "pending"}
    verified = post(world.client("admin"), f"{base}/{submitted.json()['id']}/verify", {"accept": True})
    assert verified.status_code == 200 and verified.json()["status"] == "active"
    listed = world.client("guardian").get(base).json()["items"]
    assert [(row["payer"], row["status"]) for row in listed] == [("New Payer", "active")]
    again = post(world.client("admin"), f"{base}/{submitted.json()['id']}/verify", {"accept": False})
    assert again.status_code == 409


def _guardian_with_children(world: World, count: int) -> Client:
    parent = make_user(f"parent{count}@example.org", "Multi Parent")
    for index in range(count):
        child = portal_services.child_create(
            actor=None,
            name=f"Kid {index}",
            mrn=f"MRN-Q-{count}-{index}",
            date_of_birth=date(2019, 1, 1),
            time_zone="America/New_York",
        )
        GuardianLink.objects.create(guardian=parent, child=child, relationship="mother", status="active")
        care_data.appointment(child, world.clinician, hours_from_now=24 + index)
        care_data.plan(child, world.clinician)
        care_data.plan(child, world.clinician, schedule_kind="every_n_hours", times_of_day=[], interval_hours=6)
        care_data.refill(care_data.plan(child, world.clinician), parent)
        results_data.result(child, name=f"Glucose {index}")
        results_data.summary(child, title=f"Review {index}")
    return app_client(parent)


@pytest.mark.parametrize("count", [1, 3, 10])
def test_today_uses_a_constant_number_of_queries(world: World, count: int, django_assert_num_queries: Any) -> None:
    client = _guardian_with_children(world, count)
    client.get("/api/v1/me/today")  # the session's first touch: its timestamp and the MFA answer
    # auth: the token's session comes from the cache, the MFA answer from the session; the user = 1;
    # links, appointments, plans, doses, refills, new results and summaries, unread messages = 7;
    # the audit append (one insert) = 1
    with django_assert_num_queries(9):
        response = client.get("/api/v1/me/today")
    body = response.json()
    assert len(body["children"]) == count
    entry = body["children"][0]
    assert len(entry["appointments"]) == 1 and entry["open_refills"] and entry["unread_messages"] == 0
    assert any(dose["medication"] == care_data.INSULIN for dose in entry["doses"])
    assert (entry["new_results"]["results"], entry["new_results"]["visit_summaries"]) == (1, 1)


def test_today_for_limited_scope_shows_no_medicines(world: World) -> None:
    care_data.plan(world.ada, world.clinician)
    care_data.appointment(world.ada, world.clinician)
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    entry = world.client("co_guardian").get("/api/v1/me/today").json()["children"][0]
    assert entry["child"]["name"] == ADA_NAME and entry["doses"] is None and entry["open_refills"] is None
    assert len(entry["appointments"]) == 1
    assert care_data.INSULIN not in json.dumps(entry)
    assert world.client("stranger").get("/api/v1/me/today").json()["children"] == []
    assert world.client("revoked_guardian").get("/api/v1/me/today").json()["children"] == []


def test_calendar_feed_parses_holds_no_diagnosis_and_reissue_kills_the_old_url(world: World) -> None:
    care_data.appointment(world.ada, world.clinician, department=world.department, visit_type="Insulin pump review")
    care_data.plan(world.ada, world.clinician)
    issued = post(world.client("guardian"), "/api/v1/me/calendar-feed", {"include_doses": True})
    assert issued.status_code == 201
    path = issued.json()["url"].split("testserver")[1]
    feed = Client().get(path)
    assert feed.status_code == 200 and feed["Content-Type"].startswith("text/calendar")
    calendar = Calendar.from_ical(feed.content)
    events = list(calendar.walk("VEVENT"))
    summaries = {str(event["SUMMARY"]) for event in events}
    assert "Appointment for Adaline" in summaries and "Medicine due for Adaline" in summaries
    text = feed.content.decode()
    for secret in ("Insulin", "Endocrinology", "46635009", care_data.INSULIN, "Canaryfeather"):
        assert secret not in text
    reissued = post(world.client("guardian"), "/api/v1/me/calendar-feed", {})
    assert Client().get(path).status_code == 404
    new_path = reissued.json()["url"].split("testserver")[1]
    assert Client().get(new_path).status_code == 200
    assert world.client("guardian").delete("/api/v1/me/calendar-feed").status_code == 204
    assert Client().get(new_path).status_code == 404
    assert world.client("guardian").get("/api/v1/me/calendar-feed").json()["active"] is False
    assert Client().get("/api/v1/calendar/not-a-token.ics").status_code == 404
