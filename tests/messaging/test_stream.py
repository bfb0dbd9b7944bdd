"""The persisted per-user event stream: written in the transaction of the change (outbox), scoped by
the access policy, delivering care's domain events, and readable over HTTP for polling clients."""

from __future__ import annotations

import uuid

import pytest
import time_machine
from django.db import transaction
from django.test import TestCase

from care import services as care_services
from messaging import services, stream
from messaging.models import UserEvent
from portal import events
from portal.access import Capability, child_for
from portal.vocabulary import EventType, Resource
from tests import care_data
from tests.conftest import PERSONAS, World
from tests.matrix import phi_strings
from tests.messaging import data

RECEIVERS = {"guardian", "co_guardian", "clinician"}


def test_events_are_written_in_the_changes_transaction(world: World) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        data.thread(world)
        stream.emit(
            users=[world.guardian.pk],
            type=EventType.MESSAGE_CREATED,
            child_id=world.ada.pk,
            entity_type=Resource.COMMUNICATION,
            entity_id=None,
        )
        raise RuntimeError("the change fails")
    assert not UserEvent.objects.exists()
    with TestCase.captureOnCommitCallbacks() as callbacks:
        with transaction.atomic():
            stream.emit(
                users=[world.guardian.pk],
                type=EventType.MESSAGE_CREATED,
                child_id=world.ada.pk,
                entity_type=Resource.COMMUNICATION,
                entity_id=None,
            )
        assert UserEvent.objects.filter(user=world.guardian).count() == 1
    assert len(callbacks) == 1  # the push waits for the commit


def test_care_domain_events_reach_guardians_and_care_team_only(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    access = child_for(world.guardian, world.ada.pk, Capability.CLINICAL)
    care_services.refill_request(actor=world.guardian, access=access, plan_id=plan.pk, note="")
    got = {
        persona: list(UserEvent.objects.filter(user=world.users[persona]).values_list("type", flat=True))
        for persona in PERSONAS
    }
    assert {p for p, types in got.items() if types} == RECEIVERS
    assert got["guardian"] == ["refill.changed"]
    # Limited-scope guardians do not get clinical events; schedule events they do.
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    with transaction.atomic():
        events.publish(
            events.DomainEvent(EventType.MEDICATION_CHANGED, world.ada.pk, Resource.MEDICATION_REQUEST, plan.pk)
        )
        events.publish(
            events.DomainEvent(
                EventType.APPOINTMENT_CHANGED,
                world.ada.pk,
                Resource.APPOINTMENT,
                plan.pk,
                capability=Capability.SCHEDULE,
            )
        )
        events.publish(
            events.DomainEvent(
                EventType.APPOINTMENT_CHANGED,
                world.ada.pk,
                Resource.APPOINTMENT,
                plan.pk,
                Capability.SCHEDULE,
                confidential=True,
            )
        )
    co = list(UserEvent.objects.filter(user=world.co_guardian).values_list("type", flat=True))
    assert co == ["refill.changed", "appointment.changed"]
    assert UserEvent.objects.filter(user=world.clinician).count() == 4


@time_machine.travel(data.IN_BUSINESS_HOURS, tick=True)
def test_http_stream_persona_matrix_over_500_events(world: World, settings) -> None:
    settings.PORTAL_MESSAGE_RATE = "1000/m"
    thread = data.start_thread(world).json()
    client = world.client("clinician")
    staff = child_for(world.clinician, world.ada.pk, Capability.MESSAGE)
    for index in range(249):  # two events each (message.created, thread.changed), after the thread's two
        services.message_send(
            actor=world.clinician, access=staff, thread_id=thread["id"], body=f"answer {index}", client_id=uuid.uuid4()
        )
    assert UserEvent.objects.filter(user=world.guardian).count() == 500
    for persona in PERSONAS:
        seen: list[int] = []
        after = 0
        while True:
            page = world.client(persona).get(f"/api/v1/events?after={after}&limit=200").json()
            new = [e["id"] for e in page["events"] if e["id"] > after]
            seen += new
            if page["last_id"] == after:
                break
            after = page["last_id"]
            text = str(page)
            assert not any(secret in text for secret in phi_strings(world))
        if persona in RECEIVERS:
            assert len(seen) == len(set(seen)) >= 500, persona
        else:
            assert seen == [], persona
    assert client.get("/api/v1/events?after=-1").json()["code"] == "invalid_range"


def test_revoked_guardian_no_longer_reads_the_stream(world: World) -> None:
    thread = data.start_thread(world).json()
    data.reply(world, thread["id"])
    assert world.client("co_guardian").get("/api/v1/events").json()["events"]
    link = world.links["co_guardian"]
    link.status = "revoked"
    link.save(update_fields=["status"])
    assert world.client("co_guardian").get("/api/v1/events").json()["events"] == []


@time_machine.travel(data.IN_BUSINESS_HOURS, tick=True)
def test_http_api_keeps_working_when_the_channel_layer_is_down(world: World, monkeypatch) -> None:
    class DownLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(stream, "get_channel_layer", lambda: DownLayer())
    thread = data.start_thread(world).json()
    response = data.reply(world, thread["id"])
    assert response.status_code == 201
    # Nothing is lost: the events wait in the database for the socket's replay.
    types = [e["type"] for e in world.client("guardian").get("/api/v1/events").json()["events"]]
    assert types.count("message.created") == 2
