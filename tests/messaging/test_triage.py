"""Red-flag triage (English and Spanish) and the after-hours automatic reply, on a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from care.models import ScheduleException
from messaging import sms, triage
from messaging.models import Message, Notification, UserEvent
from tests.canaries import CANARIES
from tests.conftest import World, enrol_mfa, make_user
from tests.messaging import data

WEDNESDAY_10 = datetime(2027, 6, 9, 14, 0, tzinfo=UTC)  # 10:00 New York
WEDNESDAY_23 = datetime(2027, 6, 10, 3, 0, tzinfo=UTC)  # 23:00 New York
HOURS = {"time_zone": "America/New_York", "weekdays": [0, 1, 2, 3, 4], "opens": "08:00", "closes": "17:00"}


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PORTAL_BUSINESS_HOURS = HOURS
    sms.LocmemSmsBackend.outbox.clear()


@pytest.mark.parametrize(
    "text",
    [
        "My son is NOT breathing properly",
        "she had a seizure ten minutes ago",
        "He has blue lips",
        "blood sugar 35 and shaky",
        "Glucose reading 520!!",
        "no respira bien desde anoche",
        "Tuvo una convulsión",
        "está inconsciente",
        "tiene los labios azules",
        "la glucosa está en 480",
    ],
)
def test_red_flags_in_english_and_spanish(text: str) -> None:
    assert triage.check(text) is not None


@pytest.mark.parametrize(
    "text", ["She is breathing fine now", "Blood sugar 120 this morning", "Any news about the refill?", "Respira bien"]
)
def test_ordinary_messages_are_not_flagged(text: str) -> None:
    assert triage.check(text) is None


def _on_call(world: World):
    doctor = make_user("oncall@example.org", "Dr. On Call", phone="+15550100")
    enrol_mfa(doctor)
    from portal.models import CareTeamMembership

    CareTeamMembership.objects.create(child=world.ada, clinician=doctor, department=world.department, role="specialist")
    ScheduleException.objects.create(
        clinician=doctor,
        department=world.department,
        kind="on_call",
        start=WEDNESDAY_10 - timedelta(hours=12),
        end=WEDNESDAY_10 + timedelta(hours=24),
    )
    return doctor


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Adaline Canaryfeather is not breathing and has blue lips", "en", "call 911"),
        ("Adaline Canaryfeather tuvo una convulsión y no despierta", "es", "llame ahora al 911"),
    ],
)
def test_red_flag_marks_urgent_replies_at_once_and_pages_the_on_call_clinician(
    world: World, text: str, language: str, expected: str
) -> None:
    doctor = _on_call(world)
    world.guardian.preferred_language = language
    world.guardian.save(update_fields=["preferred_language"])
    with time_machine.travel(WEDNESDAY_10, tick=False):
        created = data.start_thread(world, body=text)
    body = created.json()
    assert body["priority"] == "urgent"
    # Urgent: one hour around the clock.
    assert datetime.fromisoformat(body["reply_by"]) == WEDNESDAY_10 + timedelta(hours=1)
    automatic = [m for m in body["messages"] if m["automatic"]]
    assert len(automatic) == 1 and automatic[0]["automatic_reason"] == "emergency"
    assert automatic[0]["author_role"] == "automatic" and automatic[0]["author_name"] == "Automatic reply"
    assert expected in automatic[0]["body"]
    # The on-call clinician is paged by email and SMS (urgent: regardless of preferences), PHI-free.
    pages = Notification.objects.filter(user=doctor, kind="urgent_message")
    assert {p.channel for p in pages} == {"email", "sms"} and {p.status for p in pages} == {"sent"}
    assert [m.to for m in mail.outbox if "URGENT" in m.subject] == [[doctor.email]]
    assert [s.to for s in sms.LocmemSmsBackend.outbox] == [doctor.phone]
    texts = [f"{m.subject} {m.body}" for m in mail.outbox] + [s.body for s in sms.LocmemSmsBackend.outbox]
    assert not any(canary in text for text in texts for canary in CANARIES)
    assert "not breathing" not in " ".join(texts) and "convulsi" not in " ".join(texts)
    assert UserEvent.objects.filter(user=doctor, type="notification").exists()


def test_without_anyone_on_call_the_pool_lead_is_paged(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        data.start_thread(world, body="he is unconscious")
    assert Notification.objects.filter(user=world.clinician, kind="urgent_message").exists()


def test_after_hours_automatic_reply_on_a_frozen_clock(world: World) -> None:
    with time_machine.travel(WEDNESDAY_23, tick=False):
        first = data.start_thread(world, body="Can we change the appointment?").json()
        data.reply(world, first["id"], persona="guardian", body="Also, a refill question")
    automatic = Message.objects.filter(thread_id=first["id"], kind="automatic")
    assert [m.automatic_reason for m in automatic] == ["after_hours"]  # once per night, not per message
    # The reply-by is Thursday 17:00 New York (9 business hours from 08:00), in the guardian's zone.
    world.guardian.refresh_from_db()
    text = automatic[0].body
    assert text.startswith("Automatic reply") and "2027-06-10 21:00 UTC" in text and "911" in text
    shown = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/threads/{first['id']}").json()
    assert [m["automatic"] for m in shown["messages"]] == [False, True, False], shown["messages"]
    # The next evening brings a new automatic reply; business hours bring none. (New sign-ins: the
    # clock jumps further than the idle timeout.)
    for moment, text in ((WEDNESDAY_10 + timedelta(days=1), "Any news?"), (WEDNESDAY_23 + timedelta(days=1), "Still")):
        with time_machine.travel(moment, tick=False):
            world.clients.clear()
            assert data.reply(world, first["id"], persona="guardian", body=text).status_code == 201
    assert Message.objects.filter(thread_id=first["id"], kind="automatic").count() == 2


def test_spanish_speakers_get_the_after_hours_reply_in_spanish(world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.time_zone = "America/New_York"
    world.guardian.save(update_fields=["preferred_language", "time_zone"])
    with time_machine.travel(WEDNESDAY_23, tick=False):
        thread = data.start_thread(world, body="¿Podemos cambiar la cita?").json()
    text = Message.objects.get(thread_id=thread["id"], kind="automatic").body
    assert text.startswith("Respuesta automática") and "2027-06-10 17:00 EDT" in text


def test_no_automatic_reply_during_business_hours(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        thread = data.start_thread(world, body="A routine question").json()
    assert not Message.objects.filter(thread_id=thread["id"], kind="automatic").exists()
