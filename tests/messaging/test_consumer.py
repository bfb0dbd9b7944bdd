"""The socket's event stream: live delivery, the persona matrix over 500 events, resume after a drop,
the access re-check on every event, and 2,000 messages over randomly dropped sockets."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import pytest_asyncio
import time_machine
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction
from django.test import Client

from messaging import services, stream
from portal import events
from portal.access import Capability, child_for
from portal.asgi import application
from portal.vocabulary import EventType, Resource
from tests.conftest import PERSONAS, World, build_world
from tests.messaging import data

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

RECEIVERS = {"guardian", "co_guardian", "clinician"}


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections() -> Any:
    yield
    await database_sync_to_async(connections.close_all)()
    # The in-memory layer's queues belong to this test's event loop: leave none behind for later tests.
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


def _token(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


async def _socket(token: str, after: int | None = None) -> WebsocketCommunicator:
    path = "/ws/v1/events" + (f"?after={after}" if after is not None else "")
    communicator = WebsocketCommunicator(application, path, headers=[(b"x-session-token", token.encode())])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _events_until(communicator: WebsocketCommunicator, last_id: int, timeout: float = 5) -> list[dict[str, Any]]:
    """Read until the event with ``last_id`` (or a later one) arrives; heartbeats are skipped."""
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20  # heartbeats keep the socket busy: fail instead of waiting forever
    while True:
        assert loop.time() < deadline, f"event {last_id} never arrived"
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == "event":
            got.append(message["event"])
            if message["event"]["id"] >= last_id:
                return got


async def _drain(communicator: WebsocketCommunicator, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every event that arrives until none has for ``quiet`` seconds (heartbeats keep coming).
    ``receive_nothing`` peeks without cancelling the application, unlike a receive that times out."""
    loop = asyncio.get_running_loop()
    got = []
    deadline = loop.time() + quiet
    while loop.time() < deadline:
        if await communicator.receive_nothing(timeout=0.05):
            continue
        message = await communicator.receive_json_from()
        if message["type"] == "event":
            got.append(message["event"])
            deadline = loop.time() + quiet
    return got


def _emit(world: World, count: int, confidential: bool = False) -> list[int]:
    crowd = stream.audience(world.ada.pk, Capability.MESSAGE, confidential)
    ids = []
    for _ in range(count):
        with transaction.atomic():
            rows = stream.emit(
                users=crowd.everyone | {world.revoked_guardian.pk, world.other_guardian.pk},
                type=EventType.MESSAGE_CREATED,
                child_id=world.ada.pk,
                entity_type=Resource.COMMUNICATION,
                entity_id=None,
                confidential=confidential,
            )
        ids += [row.pk for row in rows if row.user_id == world.guardian.pk]
    return ids


@time_machine.travel(data.IN_BUSINESS_HOURS, tick=True)
async def test_socket_persona_matrix_over_500_events() -> None:
    """Guardians of the child and its care team get all 500; a guardian of another family, a revoked
    guardian and a clinician of another team get none (even when a row is written for them by
    mistake: the socket re-checks access on every event)."""
    world = await sync_to_async(build_world)()
    sockets = {p: await _socket(await sync_to_async(_token)(world.users[p])) for p in PERSONAS}

    def generate() -> int:
        thread, _ = services.thread_create(
            actor=world.guardian,
            access=child_for(world.guardian, world.ada.pk, Capability.MESSAGE),
            subject="S",
            topic="medical",
            body="First",
            client_id=__import__("uuid").uuid4(),
        )
        staff = child_for(world.clinician, world.ada.pk, Capability.MESSAGE)
        from django.test import override_settings

        with override_settings(PORTAL_MESSAGE_RATE="10000/m"):
            for index in range(100):
                services.message_send(
                    actor=world.clinician,
                    access=staff,
                    thread_id=thread.pk,
                    body=f"a{index}",
                    client_id=__import__("uuid").uuid4(),
                )
        with transaction.atomic():
            for _ in range(100):
                events.publish(
                    events.DomainEvent(
                        EventType.APPOINTMENT_CHANGED,
                        world.ada.pk,
                        Resource.APPOINTMENT,
                        thread.pk,
                        Capability.SCHEDULE,
                    )
                )
        _emit(world, 198)
        from messaging.models import UserEvent

        return int(UserEvent.objects.filter(user=world.guardian).count())

    generated = await sync_to_async(generate)()
    assert generated == 500
    from messaging.models import UserEvent

    def last_of(persona: str) -> int:
        return int(UserEvent.objects.filter(user=world.users[persona]).order_by("-id").values_list("id", flat=True)[0])

    counts = {}
    for persona, socket in sockets.items():
        if persona in RECEIVERS:
            received = await _events_until(socket, await sync_to_async(last_of)(persona))
        else:
            received = await _drain(socket)
        if persona in RECEIVERS:
            received += await _drain(socket, quiet=0.3)
        counts[persona] = len({e["id"] for e in received})
        await socket.disconnect()
    assert {p: n for p, n in counts.items() if p not in RECEIVERS} == dict.fromkeys(set(PERSONAS) - RECEIVERS, 0)
    assert all(counts[p] == 500 for p in RECEIVERS), counts


async def test_resume_replays_what_was_missed() -> None:
    world = await sync_to_async(build_world)()
    token = await sync_to_async(_token)(world.guardian)
    socket = await _socket(token)
    first = await sync_to_async(_emit)(world, 3)
    got = await _events_until(socket, first[-1])
    assert [e["id"] for e in got] == first and got[0]["type"] == "message.created"
    await socket.disconnect()
    missed = await sync_to_async(_emit)(world, 5)  # while offline
    again = await _socket(token)
    await again.send_json_to({"type": "resume", "after": first[-1]})
    replay = await _events_until(again, missed[-1])
    assert {e["id"] for e in replay} >= set(missed)
    assert (await again.receive_json_from())["type"] == "resumed"
    live = await sync_to_async(_emit)(world, 1)
    assert [e["id"] for e in await _events_until(again, live[-1])] == live
    await again.send_json_to({"type": "resume", "after": "x"})
    assert (await again.receive_json_from())["code"] == "invalid_after"
    await again.disconnect()


async def test_a_revoked_guardian_receives_nothing_more() -> None:
    world = await sync_to_async(build_world)()
    socket = await _socket(await sync_to_async(_token)(world.co_guardian))
    await sync_to_async(_emit)(world, 1)
    assert len(await _drain(socket)) == 1

    def revoke_quietly() -> None:
        # Revoked in the database without the access.revoked message: the per-event check holds.
        link = world.links["co_guardian"]
        link.status = "revoked"
        link.save(update_fields=["status"])

    await sync_to_async(revoke_quietly)()
    crowd_before = {world.co_guardian.pk}

    def emit_to_them() -> None:
        with transaction.atomic():
            stream.emit(
                users=crowd_before,
                type=EventType.MESSAGE_CREATED,
                child_id=world.ada.pk,
                entity_type=Resource.COMMUNICATION,
                entity_id=None,
            )

    await sync_to_async(emit_to_them)()
    assert await _drain(socket) == []
    await socket.disconnect()
    # A reconnect with resume gets nothing either.
    again = await _socket(await sync_to_async(_token)(world.co_guardian), after=0)
    assert await _drain(again) == []
    await again.disconnect()


async def test_two_thousand_messages_over_random_socket_drops() -> None:
    """Every message arrives at least once and, after the client drops duplicates by id, exactly once."""
    world = await sync_to_async(build_world)()
    token = await sync_to_async(_token)(world.guardian)
    rng = random.Random(20_260_611)
    socket = await _socket(token)
    sent: list[int] = []
    raw: list[int] = []
    seen: dict[int, dict[str, Any]] = {}
    drops = 0

    def take(batch: list[dict[str, Any]]) -> None:
        for event in batch:
            raw.append(event["id"])
            seen.setdefault(event["id"], event)

    while len(sent) < 2000:
        batch = await sync_to_async(_emit)(world, min(rng.randint(1, 25), 2000 - len(sent)))
        sent += batch
        if rng.random() < 0.15:
            # The socket drops with events in flight, more arrive while offline, then it resumes.
            await socket.disconnect()
            drops += 1
            if rng.random() < 0.5 and len(sent) < 2000:
                sent += await sync_to_async(_emit)(world, min(rng.randint(1, 10), 2000 - len(sent)))
            last_seen = max(seen, default=0)
            socket = await _socket(token, after=last_seen)
        take(await _events_until(socket, sent[-1]))
    await socket.disconnect()
    assert drops >= 10
    assert set(seen) == set(sent) and len(sent) == 2000
    assert sorted(seen) == sorted(set(raw))  # dedup by id leaves each message exactly once
