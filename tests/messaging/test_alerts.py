"""Urgent alerts: a red flag pages the on-call clinician at once, the care team acknowledges it, and an
unacknowledged alert escalates to the next on-call clinician and then the department lead (frozen
clock). Every step is audited and shown to the care team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.core import mail

from care.models import ScheduleException
from messaging import alerts, notify, sms
from messaging.models import AlertStep, Notification, UrgentAlert, UserEvent
from portal.models import AuditEvent, CareTeamMembership, User
from tests.canaries import CANARIES
from tests.conftest import World, enrol_mfa, make_user
from tests.messaging import data

WEDNESDAY_10 = datetime(2027, 6, 9, 15, 0, tzinfo=UTC)  # 10:00 in Chicago
RED_FLAG = "Adaline Canaryfeather is not breathing and her lips are blue"


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.PORTAL_ALERT_ACK_MINUTES = 10
    sms.LocmemSmsBackend.outbox.clear()


def _on_call(world: World, email: str, started_hours_ago: int) -> User:
    doctor = make_user(email, f"Dr. {email.split('@')[0]}", phone="+1555010" + str(started_hours_ago))
    enrol_mfa(doctor)
    CareTeamMembership.objects.create(child=world.ada, clinician=doctor, department=world.department, role="specialist")
    ScheduleException.objects.create(
        clinician=doctor,
        department=world.department,
        kind="on_call",
        start=WEDNESDAY_10 - timedelta(hours=started_hours_ago),
        end=WEDNESDAY_10 + timedelta(hours=12),
    )
    return doctor


def _raise(world: World) -> dict[str, Any]:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        created = data.start_thread(world, body=RED_FLAG)
    assert created.status_code == 201, created.content
    body: dict[str, Any] = created.json()
    return body


def _sweep(at: datetime) -> list[UrgentAlert]:
    from django.test import TestCase

    with time_machine.travel(at, tick=False), TestCase.captureOnCommitCallbacks(execute=True):
        return alerts.alerts_escalate_due()


def _acknowledge(world: World, persona: str, alert_id: Any, at: datetime) -> Any:
    with time_machine.travel(at, tick=False):
        world.clients.clear()
        return data.post(world.client(persona), f"/api/v1/children/{world.ada.pk}/alerts/{alert_id}/acknowledge")


def test_an_unacknowledged_alert_escalates_twice_then_waits(world: World) -> None:
    first = _on_call(world, "first@example.org", started_hours_ago=8)
    second = _on_call(world, "second@example.org", started_hours_ago=2)
    lead = world.clinician  # the department's lead
    thread = _raise(world)
    alert = UrgentAlert.objects.get(thread_id=thread["id"])
    assert (alert.status, alert.level) == ("open", 0)
    assert alert.escalate_at == WEDNESDAY_10 + timedelta(minutes=10)
    # Paged at once (sent in the request's process, not left to the queue), on every channel.
    assert Notification.objects.get(user=first, kind="urgent_message", channel="email").status == "sent"
    assert Notification.objects.get(user=first, kind="urgent_message", channel="sms").status == "sent"
    assert not Notification.objects.filter(user__in=[second, lead], kind__startswith="urgent").exists()

    assert _sweep(WEDNESDAY_10 + timedelta(minutes=9)) == []  # not yet due
    assert [a.pk for a in _sweep(WEDNESDAY_10 + timedelta(minutes=10))] == [alert.pk]
    alert.refresh_from_db()
    assert alert.level == 1 and alert.escalate_at == WEDNESDAY_10 + timedelta(minutes=20)
    assert Notification.objects.get(user=second, kind="urgent_escalation", channel="email").status == "sent"

    assert [a.pk for a in _sweep(WEDNESDAY_10 + timedelta(minutes=20))] == [alert.pk]
    alert.refresh_from_db()
    assert alert.level == 2 and alert.escalate_at is None  # nobody is above the lead
    assert Notification.objects.get(user=lead, kind="urgent_escalation", channel="email").status == "sent"
    assert _sweep(WEDNESDAY_10 + timedelta(hours=2)) == []

    steps = list(AlertStep.objects.filter(alert=alert).values_list("kind", "level", "user_id"))
    assert steps == [("page", 0, first.pk), ("escalate", 1, second.pk), ("escalate", 2, lead.pk)]
    reasons = list(
        AuditEvent.objects.filter(entity_type="UrgentAlert", entity_id=str(alert.pk))
        .order_by("seq")
        .values_list("reason", flat=True)
    )
    assert reasons == ["triage_red_flag", "alert_page_level_0", "alert_escalate_level_1", "alert_escalate_level_2"]
    # The care team sees each step on its stream; the guardian does not.
    changes = UserEvent.objects.filter(type="alert.changed", entity_id=alert.pk)
    assert set(changes.values_list("user_id", flat=True)) == {first.pk, second.pk, lead.pk}
    assert sorted(changes.filter(user=lead).values_list("data__level", flat=True)) == [0, 1, 2]
    assert not UserEvent.objects.filter(user=world.guardian, type__in=["alert.changed", "notification"]).exists()
    for paged in (first, second, lead):
        assert UserEvent.objects.filter(user=paged, type="notification", data__alert_id=str(alert.pk)).exists()
    # No PHI in any page.
    texts = [f"{m.subject} {m.body}" for m in mail.outbox] + [s.body for s in sms.LocmemSmsBackend.outbox]
    assert texts and not any(canary in text for text in texts for canary in CANARIES)
    assert not any("breathing" in text for text in texts)

    # Shown in the thread (care team only) and in the lead's inbox.
    later = WEDNESDAY_10 + timedelta(minutes=25)
    with time_machine.travel(later, tick=False):
        world.clients.clear()
        url = f"/api/v1/children/{world.ada.pk}/threads/{thread['id']}"
        shown = world.client("clinician").get(url).json()
        assert [(s["kind"], s["level"]) for s in shown["alerts"][0]["steps"]] == [
            ("page", 0),
            ("escalate", 1),
            ("escalate", 2),
        ]
        assert world.client("guardian").get(url).json()["alerts"] is None
        inbox = world.client("clinician").get("/api/v1/inbox").json()["items"]
        assert [(row["alert"]["status"], row["alert"]["level"]) for row in inbox] == [("open", 2)]

    # The lead acknowledges: audited, visible, and it stays acknowledged.
    answer = _acknowledge(world, "clinician", alert.pk, later)
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "acknowledged" and answer.json()["acknowledged_by"] == str(lead.pk)
    assert AuditEvent.objects.filter(
        entity_id=str(alert.pk), reason="alert_acknowledge", actor_id=lead.pk, child_id=world.ada.pk
    ).exists()
    assert UserEvent.objects.filter(user=first, type="alert.changed", data__status="acknowledged").exists()
    again = _acknowledge(world, "clinician", alert.pk, later + timedelta(minutes=1))
    assert again.status_code == 200 and again.json()["acknowledged_at"] == answer.json()["acknowledged_at"]


def test_an_acknowledged_alert_stops_escalating(world: World) -> None:
    first = _on_call(world, "first@example.org", started_hours_ago=8)
    _on_call(world, "second@example.org", started_hours_ago=2)
    thread = _raise(world)
    alert = UrgentAlert.objects.get(thread_id=thread["id"])
    # The on-call clinician (on the care team) acknowledges within the window.
    world.users["first"] = first
    answer = _acknowledge(world, "first", alert.pk, WEDNESDAY_10 + timedelta(minutes=3))
    assert answer.status_code == 200 and answer.json()["status"] == "acknowledged"
    assert _sweep(WEDNESDAY_10 + timedelta(hours=1)) == []
    assert not Notification.objects.filter(kind="urgent_escalation").exists()
    assert list(AlertStep.objects.filter(alert=alert).values_list("kind", flat=True)) == ["page", "acknowledge"]


def test_a_second_red_flag_in_the_thread_keeps_the_open_alert(world: World) -> None:
    _on_call(world, "first@example.org", started_hours_ago=8)
    thread = _raise(world)
    with time_machine.travel(WEDNESDAY_10 + timedelta(minutes=1), tick=False):
        data.reply(world, thread["id"], persona="guardian", body="she is still not breathing well")
    assert UrgentAlert.objects.filter(thread_id=thread["id"]).count() == 1


def test_only_the_childs_care_team_may_acknowledge(world: World) -> None:
    _on_call(world, "first@example.org", started_hours_ago=8)
    alert = UrgentAlert.objects.get(thread_id=_raise(world)["id"])
    for persona in ("guardian", "co_guardian", "other_guardian", "revoked_guardian", "other_clinician", "admin"):
        denials = AuditEvent.objects.filter(action="deny").count()
        answer = _acknowledge(world, persona, alert.pk, WEDNESDAY_10 + timedelta(minutes=1))
        assert answer.status_code == 404 and answer.json()["code"] == "not_found", persona
        assert AuditEvent.objects.filter(action="deny").count() == denials + 1, persona
    alert.refresh_from_db()
    assert alert.status == "open"
    # An alert of another child, through a child the clinician may treat: 404 and audited.
    world.users["ben_doctor"] = world.other_clinician
    other = _acknowledge(world, "clinician", "00000000-0000-0000-0000-000000000000", WEDNESDAY_10)
    assert other.status_code == 404
    assert AuditEvent.objects.filter(action="deny", reason="no_alert").exists()


def test_without_anyone_on_call_the_lead_is_paged_first_and_nobody_is_left_after(world: World) -> None:
    alert = UrgentAlert.objects.get(thread_id=_raise(world)["id"])
    assert alert.level == 2 and alert.escalate_at is None
    assert list(AlertStep.objects.filter(alert=alert).values_list("kind", "user_id")) == [("page", world.clinician.pk)]


def test_a_page_that_cannot_be_sent_at_once_is_retried_by_the_sweep(world: World, settings) -> None:
    settings.PORTAL_NOTIFICATION_BACKOFF_SECONDS = 30
    first = _on_call(world, "first@example.org", started_hours_ago=8)
    with mock.patch.object(notify, "_send", side_effect=ConnectionError("provider down")):
        _raise(world)
    page = Notification.objects.get(user=first, kind="urgent_message", channel="email")
    assert page.status == "pending" and page.attempts == 1 and page.last_error == "ConnectionError"
    from messaging.worker import sweep

    with time_machine.travel(WEDNESDAY_10 + timedelta(seconds=31), tick=False):
        done = sweep()
    assert done["notifications_sent"] >= 1
    page.refresh_from_db()
    assert page.status == "sent"
