"""Threads and messages: routing, reply-by, idempotent send, no edits, handling by the care team,
confidential threads, read receipts and unread counts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from messaging.models import Message, RoutingRule, Thread, ThreadAssignment
from portal.models import AuditEvent, CareTeamMembership, Department, DepartmentMembership
from tests.canaries import CANARIES
from tests.conftest import World, enrol_mfa, make_user
from tests.messaging import data

# A Wednesday, 10:00 in New York: business hours.
WEDNESDAY_10 = datetime(2027, 6, 9, 14, 0, tzinfo=UTC)
HOURS = {"time_zone": "America/New_York", "weekdays": [0, 1, 2, 3, 4], "opens": "08:00", "closes": "17:00"}


@pytest.fixture(autouse=True)
def _business_hours(settings):
    settings.PORTAL_BUSINESS_HOURS = HOURS


def test_guardian_starts_a_thread_routed_to_the_care_teams_pool(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        response = data.start_thread(world, body="How much water should she drink?")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "awaiting_care_team" and body["priority"] == "routine"
    assert body["pool_id"] == str(world.department.pk)
    # Routine: one business day (9 business hours) → Thursday 10:00 New York.
    assert datetime.fromisoformat(body["reply_by"]) == datetime(2027, 6, 10, 14, 0, tzinfo=UTC)
    assert [m["author_role"] for m in body["messages"]] == ["guardian"]
    assert body["assignment_history"] is None  # guardians do not see the care team's handling


def test_a_routing_rule_sends_refills_to_the_pharmacy_with_its_own_reply_by(world: World) -> None:
    pharmacy = Department.objects.create(code="pharmacy", name="Pharmacy")
    RoutingRule.objects.create(topic="refill", department=pharmacy, reply_within_minutes=120, order=1)
    RoutingRule.objects.create(topic="", department=world.other_department, order=50, active=False)
    with time_machine.travel(datetime(2027, 6, 9, 20, 30, tzinfo=UTC), tick=False):  # 16:30 New York
        body = data.start_thread(world, topic="refill").json()
        other = data.start_thread(world, topic="billing").json()
    assert body["pool_id"] == str(pharmacy.pk)
    # 30 business minutes today, 90 tomorrow from 08:00 → 09:30 New York.
    assert datetime.fromisoformat(body["reply_by"]) == datetime(2027, 6, 10, 13, 30, tzinfo=UTC)
    assert other["pool_id"] == str(world.department.pk)  # no active rule matches: the care team's pool


def test_send_is_idempotent_by_client_id_and_edits_do_not_exist(world: World) -> None:
    thread = data.start_thread(world).json()
    url = f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}/messages"
    payload = {"body": "Second thought", "client_id": data.new_id()}
    first = data.post(world.client("guardian"), url, payload)
    again = data.post(world.client("guardian"), url, payload)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert Message.objects.filter(thread_id=thread["id"], author=world.guardian).count() == 2
    reused = data.post(world.client("guardian"), url, {**payload, "body": "Something else"})
    assert reused.status_code == 409 and reused.json()["code"] == "client_id_reused"
    # A retried thread creation returns the first thread.
    create = {"subject": "S", "topic": "other", "body": "B", "client_id": data.new_id()}
    url_threads = f"/api/v1/children/{world.ada.pk}/threads"
    one, two = (data.post(world.client("guardian"), url_threads, create) for _ in range(2))
    assert (one.status_code, two.status_code) == (201, 200) and one.json()["id"] == two.json()["id"]
    # No edits: a correction is a new message.
    message_url = f"{url}/{first.json()['id']}"
    for method in ("put", "patch", "delete"):
        response = getattr(world.client("guardian"), method)(
            message_url, data=json.dumps({"body": "x"}), content_type="application/json"
        )
        assert response.status_code in (404, 405)
    assert Message.objects.get(pk=first.json()["id"]).body == "Second thought"


def test_unknown_fields_and_bad_input_are_rejected_with_a_code(world: World) -> None:
    url = f"/api/v1/children/{world.ada.pk}/threads"
    bad = [
        {"subject": "S", "topic": "medical", "body": "B", "client_id": data.new_id(), "priority": "urgent"},
        {"subject": "S", "topic": "gossip", "body": "B", "client_id": data.new_id()},
        {"subject": "S", "topic": "medical", "body": "", "client_id": data.new_id()},
        {"subject": "S", "topic": "medical", "body": "B", "client_id": "not-a-uuid"},
    ]
    for payload in bad:
        response = data.post(world.client("guardian"), url, payload)
        assert response.status_code == 422 and response.json()["code"] == "invalid_input", payload
    confidential = data.start_thread(world, confidential=True)
    assert confidential.status_code == 422 and confidential.json()["code"] == "confidential_not_allowed"


def test_care_team_claims_assigns_reassigns_replies_and_closes_with_history(world: World) -> None:
    nurse = make_user("nurse@example.org", "Nurse Nia")
    enrol_mfa(nurse)
    DepartmentMembership.objects.create(department=world.department, clinician=nurse, role="nurse")
    CareTeamMembership.objects.create(child=world.ada, clinician=nurse, department=world.department, role="nurse")
    thread = data.start_thread(world).json()
    base = f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}"
    staff = world.client("clinician")
    assert data.post(staff, f"{base}/claim").json()["assignee_id"] == str(world.clinician.pk)
    assert data.post(staff, f"{base}/assign", {"assignee_id": str(nurse.pk)}).json()["assignee_id"] == str(nurse.pk)
    outsider = data.post(staff, f"{base}/assign", {"assignee_id": str(world.other_clinician.pk)})
    assert outsider.status_code == 422 and outsider.json()["code"] == "not_on_care_team"
    reply = data.reply(world, thread["id"])
    assert reply.status_code == 201 and reply.json()["author_role"] == "care_team"
    detail = staff.get(base).json()
    assert detail["status"] == "awaiting_family" and detail["reply_by"] is None
    assert [row["kind"] for row in detail["assignment_history"]] == ["claim", "reassign"]
    closed = data.post(staff, f"{base}/close").json()
    assert closed["status"] == "closed"
    # A guardian's message reopens it, with a new reply-by clock.
    data.reply(world, thread["id"], persona="guardian", body="One more thing")
    reopened = Thread.objects.get(pk=thread["id"])
    assert reopened.status == "awaiting_care_team" and reopened.reply_by is not None
    assert ThreadAssignment.objects.filter(thread=reopened).count() == 2
    rows = AuditEvent.objects.filter(entity_type__in=["MessageThread", "Communication"])
    assert {row.reason for row in rows} >= {"claim", "reassign", "close", "new_thread"}
    text = json.dumps([row.entry() for row in AuditEvent.objects.all()])
    assert not any(canary in text for canary in CANARIES)


def test_guardians_cannot_handle_threads_and_other_children_threads_are_not_found(world: World) -> None:
    thread = data.start_thread(world).json()
    base = f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}"
    assert data.post(world.client("guardian"), f"{base}/claim").status_code == 404
    assert data.post(world.client("guardian"), f"{base}/close").status_code == 404
    # The thread id under another child the user may see is not found either.
    CareTeamMembership.objects.create(child=world.ben, clinician=world.clinician, role="primary")
    wrong = world.client("clinician").get(f"/api/v1/children/{world.ben.pk}/threads/{thread['id']}")
    assert wrong.status_code == 404 and wrong.json()["code"] == "not_found"
    assert world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/threads/{uuid.uuid4()}").status_code == 404


def test_confidential_threads_reach_the_care_team_only(world: World) -> None:
    response = data.start_thread(world, persona="clinician", confidential=True, body="Private to the teen")
    assert response.status_code == 201
    thread_id = response.json()["id"]
    listed = world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/threads").json()["items"]
    assert [t["id"] for t in listed] == [thread_id]
    for persona in ("guardian", "co_guardian"):
        client = world.client(persona)
        assert client.get(f"/api/v1/children/{world.ada.pk}/threads").json()["items"] == []
        assert client.get(f"/api/v1/children/{world.ada.pk}/threads/{thread_id}").status_code == 404
        assert data.reply(world, thread_id, persona=persona).status_code == 404
        assert client.get("/api/v1/events").json()["events"] == []
        assert client.get("/api/v1/me/today").json()["children"][0]["unread_messages"] == 0


@time_machine.travel(data.IN_BUSINESS_HOURS, tick=True)
def test_read_receipts_and_unread_counts(world: World) -> None:
    thread = data.start_thread(world).json()
    data.reply(world, thread["id"], body="First answer")
    data.reply(world, thread["id"], body="Second answer")
    guardian = world.client("guardian")
    assert guardian.get("/api/v1/me/today").json()["children"][0]["unread_messages"] == 2
    listing = guardian.get(f"/api/v1/children/{world.ada.pk}/threads").json()["items"]
    assert listing[0]["unread"] == 2
    read = data.post(guardian, f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}/read")
    assert read.status_code == 204
    assert guardian.get("/api/v1/me/today").json()["children"][0]["unread_messages"] == 0
    receipts = world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}").json()
    assert str(world.guardian.pk) in {r["user_id"] for r in receipts["read_receipts"]}
    # The co-guardian has read nothing yet: receipts are per participant.
    assert world.client("co_guardian").get("/api/v1/me/today").json()["children"][0]["unread_messages"] == 3


def test_unread_counter_is_one_query(world: World) -> None:
    from messaging.selectors import unread_counts

    for _ in range(3):
        data.reply(world, data.start_thread(world).json()["id"])
    with CaptureQueriesContext(connection) as queries:
        counts = unread_counts(world.guardian, [world.ada.pk, world.ben.pk])
    assert len(queries) == 1 and counts == {world.ada.pk: 3}


@override_settings(PORTAL_MESSAGE_RATE="3/m")
def test_sending_is_rate_limited(world: World) -> None:
    # One instant, so one fixed rate-limit window (a run crossing a minute boundary would restart the count).
    with time_machine.travel(datetime.now(UTC), tick=False):
        thread = data.start_thread(world).json()
        codes = [data.reply(world, thread["id"], persona="guardian").status_code for _ in range(3)]
    assert codes[:2] == [201, 201] and codes[2] == 429


def test_overdue_flag_in_the_thread(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        thread = data.start_thread(world).json()
    with time_machine.travel(WEDNESDAY_10 + timedelta(days=2), tick=False):
        listing = world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/threads").json()["items"]
    assert listing[0]["id"] == thread["id"] and listing[0]["overdue"] is True
