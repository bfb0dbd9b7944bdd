"""Notifications and automatic replies in the recipient's language (Django's i18n catalogues), never
with PHI; the language is a preference on the account, read and changed through /me."""

from __future__ import annotations

import gettext
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core import mail

from care.models import ScheduleException
from messaging import notify, sms
from messaging.models import Message, NotificationPreference
from portal.models import AuditEvent
from tests.canaries import CANARIES
from tests.conftest import World
from tests.messaging import data

NOON_CHICAGO = datetime(2027, 6, 9, 17, 0, tzinfo=UTC)  # a Wednesday
EVENING_CHICAGO = datetime(2027, 6, 10, 1, 0, tzinfo=UTC)  # Wednesday 20:00 in Chicago
LOCALE = Path(__file__).resolve().parents[2] / "messaging" / "locale"


@pytest.fixture(autouse=True)
def _clean() -> None:
    sms.LocmemSmsBackend.outbox.clear()


def _patch_me(world: World, persona: str, body: dict[str, Any]) -> Any:
    return world.client(persona).patch("/api/v1/me", data=json.dumps(body), content_type="application/json")


def test_the_language_is_read_and_changed_on_me(world: World) -> None:
    assert world.client("guardian").get("/api/v1/me").json()["language"] == "en"
    answer = _patch_me(world, "guardian", {"language": "es"})
    assert answer.status_code == 200 and answer.json()["language"] == "es"
    world.guardian.refresh_from_db()
    assert world.guardian.preferred_language == "es"
    assert AuditEvent.objects.filter(actor_id=world.guardian.pk, entity_type="Person", reason="language").exists()
    for bad in ({"language": "xx"}, {"language": "es", "email": "x@example.org"}, {}):
        refused = _patch_me(world, "guardian", bad)
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_input", bad
    assert _patch_me(world, "stranger", {"language": "es"}).status_code == 200  # anyone signed in: their own
    from django.test import Client

    assert Client().patch("/api/v1/me", data="{}", content_type="application/json").status_code == 401


def test_a_spanish_speaking_guardian_gets_spanish_email_and_sms(world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.phone = "+15550123"
    world.guardian.save(update_fields=["preferred_language", "phone"])
    NotificationPreference.objects.create(user=world.guardian, email=True, sms=True)
    with time_machine.travel(NOON_CHICAGO, tick=False):
        thread = data.start_thread(world, body="Adaline Canaryfeather tiene fiebre").json()
        mail.outbox.clear()
        data.reply(world, thread["id"], body="Adaline Canaryfeather: fluids, MRN-CANARY-0042")
    [email] = [m for m in mail.outbox if m.to == [world.guardian.email]]
    assert email.subject == "Nuevo mensaje del equipo médico"
    assert "Inicie sesión en el portal" in email.body
    [text] = [s for s in sms.LocmemSmsBackend.outbox if s.to == "+15550123"]
    assert text.body.startswith("Tiene un mensaje nuevo del equipo médico")
    # The English-speaking co-guardian's notice stays English; nobody's carries PHI.
    co = [m for m in mail.outbox if m.to == [world.co_guardian.email]]
    assert co and co[0].subject == "New message from the care team"
    everything = [f"{m.subject} {m.body}" for m in mail.outbox] + [s.body for s in sms.LocmemSmsBackend.outbox]
    assert not any(canary in t for t in everything for canary in CANARIES)


def test_a_spanish_speaking_guardian_gets_spanish_automatic_replies(world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.time_zone = "America/Chicago"
    world.guardian.save(update_fields=["preferred_language", "time_zone"])
    with time_machine.travel(EVENING_CHICAGO, tick=False):
        after_hours = data.start_thread(world, body="Can we move the appointment?").json()
        # Written in English, read by a Spanish speaker: the emergency reply follows the reader.
        emergency = data.start_thread(world, body="he is not breathing").json()
    [reply] = Message.objects.filter(thread_id=after_hours["id"], kind="automatic")
    assert reply.body.startswith("Respuesta automática: el equipo médico está fuera de su horario")
    assert "2027-06-10 17:00 CDT" in reply.body
    [urgent] = Message.objects.filter(thread_id=emergency["id"], kind="automatic")
    assert urgent.automatic_reason == "emergency" and urgent.body.startswith("Respuesta automática")


def test_a_spanish_speaking_on_call_clinician_is_paged_in_spanish(world: World) -> None:
    world.clinician.preferred_language = "es"
    world.clinician.save(update_fields=["preferred_language"])
    ScheduleException.objects.create(clinician=world.clinician, kind="on_call", start=NOON_CHICAGO, end=EVENING_CHICAGO)
    with time_machine.travel(NOON_CHICAGO, tick=False):
        data.start_thread(world, body="she is unconscious")
    [page] = [m for m in mail.outbox if m.to == [world.clinician.email]]
    assert page.subject == "URGENTE: mensaje marcado por el triaje"


def test_every_text_has_a_spanish_translation_in_the_committed_catalogue() -> None:
    """The compiled .mo is committed (a fresh machine needs no gettext) and matches the .po."""
    po = (LOCALE / "es" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    ids = [
        "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', block))
        for block in re.findall(r'^msgid ((?:".*"\n)+)msgstr', po, flags=re.MULTILINE)
    ]
    ids = [i.replace('\\"', '"') for i in ids if i]
    with (LOCALE / "es" / "LC_MESSAGES" / "django.mo").open("rb") as handle:
        catalogue = gettext.GNUTranslations(handle)
    assert ids and all(catalogue.gettext(i) != i for i in ids), [i for i in ids if catalogue.gettext(i) == i]
    for kind in notify.TEXTS:
        assert notify.texts(kind, "es") != notify.texts(kind, "en"), kind
        assert notify.texts(kind, "fr") == notify.texts(kind, "en")  # no catalogue yet: English
