"""Notifications for users who are not connected: email and SMS, preferences and quiet hours, retries
with backoff, and bodies free of PHI."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail

from messaging import notify, sms
from messaging.models import Notification, NotificationPreference
from messaging.realtime import presence
from tests.canaries import CANARIES
from tests.conftest import World
from tests.messaging import data

NOON_NY = datetime(2027, 6, 9, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.PORTAL_BUSINESS_HOURS = {"time_zone": "America/New_York"}
    sms.LocmemSmsBackend.outbox.clear()


def _all_texts() -> str:
    return "\n".join([f"{m.subject} {m.body}" for m in mail.outbox] + [s.body for s in sms.LocmemSmsBackend.outbox])


def test_a_care_team_reply_notifies_guardians_who_are_not_connected(world: World) -> None:
    world.guardian.phone = "+15550123"
    world.guardian.save(update_fields=["phone"])
    NotificationPreference.objects.create(user=world.guardian, email=True, sms=True)
    with time_machine.travel(NOON_NY, tick=False):
        presence.touch(world.co_guardian.pk)  # the co-guardian has the app open
        thread = data.start_thread(world, body="Adaline Canaryfeather MRN-CANARY-0042 has a fever").json()
        data.reply(world, thread["id"], body="Give Adaline Canaryfeather fluids, MRN-CANARY-0042")
    assert [m.to for m in mail.outbox] == [[world.guardian.email]]
    assert [s.to for s in sms.LocmemSmsBackend.outbox] == ["+15550123"]
    assert mail.outbox[0].body.startswith("You have a new message from the care team")
    skipped = Notification.objects.get(user=world.co_guardian)
    assert skipped.status == "skipped" and skipped.last_error == "connected"
    text = _all_texts()
    assert not any(canary in text for canary in CANARIES)
    assert "fever" not in text and "fluids" not in text and "Endocrinology" not in text


def test_opted_out_users_get_nothing_and_sms_needs_a_phone(world: World) -> None:
    NotificationPreference.objects.create(user=world.guardian, email=False, sms=True)  # no phone on file
    thread = data.start_thread(world).json()
    data.reply(world, thread["id"])
    assert not Notification.objects.filter(user=world.guardian).exists()


def test_quiet_hours_defer_until_they_end(world: World) -> None:
    world.guardian.time_zone = "America/New_York"
    world.guardian.save(update_fields=["time_zone"])
    NotificationPreference.objects.create(user=world.guardian, quiet_start=time(22, 0), quiet_end=time(7, 0))
    night = datetime(2027, 6, 10, 3, 0, tzinfo=UTC)  # 23:00 New York
    with time_machine.travel(night, tick=False):
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    held = Notification.objects.get(user=world.guardian)
    assert held.status == "pending" and held.not_before == datetime(2027, 6, 10, 11, 0, tzinfo=UTC)
    assert mail.outbox == [] or all(m.to != [world.guardian.email] for m in mail.outbox)
    assert notify.send_due(now=night + timedelta(hours=1)) == 0
    assert notify.send_due(now=datetime(2027, 6, 10, 11, 0, tzinfo=UTC)) == 1
    held.refresh_from_db()
    assert held.status == "sent"


def test_quiet_hours_do_not_hold_back_an_urgent_page(world: World) -> None:
    NotificationPreference.objects.create(
        user=world.clinician, email=True, quiet_start=time(0, 0), quiet_end=time(23, 59)
    )
    with time_machine.travel(NOON_NY, tick=False):
        data.start_thread(world, body="she is not breathing")
    page = Notification.objects.get(user=world.clinician, kind="urgent_message")
    assert page.status == "sent" and page.urgent


def test_failed_sends_are_retried_with_backoff_then_given_up(world: World, monkeypatch, settings) -> None:
    settings.PORTAL_NOTIFICATION_MAX_ATTEMPTS = 3
    world.guardian.phone = "+15550123"
    world.guardian.save(update_fields=["phone"])
    NotificationPreference.objects.create(user=world.guardian, email=False, sms=True)
    failures = {"left": 1}

    def flaky(self, to: str, body: str) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise sms.SmsError("provider said 503 for +15550123")
        sms.LocmemSmsBackend.outbox.append(sms.SentSms(to=to, body=body))

    monkeypatch.setattr(sms.LocmemSmsBackend, "send", flaky)
    with time_machine.travel(NOON_NY, tick=False):
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    row = Notification.objects.get(user=world.guardian)
    assert row.status == "pending" and row.attempts == 1 and row.last_error == "SmsError"
    assert row.not_before == NOON_NY + timedelta(seconds=30)
    assert notify.send_due(now=NOON_NY + timedelta(seconds=31)) == 1
    row.refresh_from_db()
    assert row.status == "sent" and len(sms.LocmemSmsBackend.outbox) == 1
    # A provider that keeps failing: given up after the maximum number of attempts.
    failures["left"] = 99
    with time_machine.travel(NOON_NY, tick=False):
        data.reply(world, thread["id"])
    later = Notification.objects.exclude(pk=row.pk).get(user=world.guardian)
    for attempt in range(2):
        notify.send_due(now=NOON_NY + timedelta(hours=attempt + 1))
    later.refresh_from_db()
    assert later.status == "failed" and later.attempts == 3
    assert "+15550123" not in later.last_error


def test_preferences_endpoint(world: World) -> None:
    client = world.client("guardian")
    assert client.get("/api/v1/me/notification-preferences").json() == {
        "email": True,
        "sms": False,
        "quiet_start": None,
        "quiet_end": None,
    }
    response = client.patch(
        "/api/v1/me/notification-preferences",
        data='{"sms": true, "quiet_start": "21:30", "quiet_end": "06:45"}',
        content_type="application/json",
    )
    assert response.json() == {"email": True, "sms": True, "quiet_start": "21:30:00", "quiet_end": "06:45:00"}
    bad = client.patch("/api/v1/me/notification-preferences", data='{"pager": true}', content_type="application/json")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


def test_notification_task_runs_on_the_configured_queue(world: World) -> None:
    from messaging.notify import deliver_notification

    [row] = notify.schedule([world.guardian.pk], "new_message")
    result = deliver_notification.enqueue(str(row.pk))
    assert result.return_value == "sent"
