"""The process's heartbeat: idle sockets beat from the cache alone (no database), live events go
out without a database read, and the safety nets still hold (a lost event is caught up, an idle
session closes the socket)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import time_machine
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from messaging.models import UserEvent
from messaging.realtime import heartbeat, stream
from messaging.realtime.consumer import CLOSE_UNAUTHENTICATED
from messaging.realtime.control import user_group
from portal.asgi import application
from portal.vocabulary import EventType, Resource
from tests.conftest import World, build_world

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections() -> Any:
    yield
    await database_sync_to_async(connections.close_all)()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


class DatabaseGuard:
    """Counts every cursor opened on any connection, in any thread, while it is on."""

    def __init__(self) -> None:
        self.on = False
        self.cursors = 0


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseGuard]:
    watch = DatabaseGuard()
    original = BaseDatabaseWrapper.cursor

    def counted(self: BaseDatabaseWrapper) -> Any:
        if watch.on:
            watch.cursors += 1
        return original(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "cursor", counted)
    yield watch


def _token(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


async def _socket(token: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/v1/events", headers=[(b"x-session-token", token.encode())])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _next(communicator: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    for _ in range(100):
        message: dict[str, Any] = await communicator.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind}")


async def test_idle_sockets_beat_and_receive_live_events_without_the_database(guard: DatabaseGuard) -> None:
    world: World = await sync_to_async(build_world)()
    people = ("guardian", "co_guardian", "clinician", "other_guardian")
    sockets = [await _socket(await sync_to_async(_token)(world.users[p])) for p in people]
    guard.on = True
    for _ in range(5):  # five beats on every socket (0.2 s apart in the tests)
        for communicator in sockets:
            await _next(communicator, "heartbeat")
    # A live event reaches the socket as it is: its recipients were decided when it was written.
    layer = get_channel_layer()
    event = {"id": 10**9, "type": "message.created", "child_id": str(world.ada.pk), "data": {}}
    await layer.group_send(user_group(world.guardian.pk), {"type": stream.STREAM_MESSAGE, "event": event})
    assert (await _next(sockets[0], "event"))["event"]["id"] == 10**9
    guard.on = False
    assert guard.cursors == 0
    for communicator in sockets:
        await communicator.disconnect()


async def test_an_event_lost_on_the_way_is_caught_up_on_the_next_beat() -> None:
    world: World = await sync_to_async(build_world)()
    socket = await _socket(await sync_to_async(_token)(world.guardian))
    await _next(socket, "heartbeat")

    def write_without_push() -> UserEvent:
        # The row commits but its push never reaches the socket (a full channel drops it): only the
        # user's stream head says there is more.
        with transaction.atomic():
            row = UserEvent.objects.create(
                user=world.guardian,
                type=EventType.MESSAGE_CREATED,
                child_id=world.ada.pk,
                entity_type=Resource.COMMUNICATION,
                capability="message",
            )
        stream._record_heads([row])
        return row

    row = await sync_to_async(write_without_push)()
    assert (await _next(socket, "event"))["event"]["id"] == row.pk
    await socket.disconnect()


async def test_an_idle_session_closes_the_socket_and_activity_keeps_it_open() -> None:
    with time_machine.travel("2026-06-01 15:00:00Z", tick=True) as traveller:
        world: World = await sync_to_async(build_world)()
        client = Client()
        await sync_to_async(client.force_login)(world.guardian)
        token = await sync_to_async(lambda: str(client.session.session_key))()
        socket = await _socket(token)
        await _next(socket, "heartbeat")
        # Seven hours without activity: within the families' eight, the socket stays.
        traveller.shift(timedelta(hours=7))
        await _next(socket, "heartbeat")
        await _next(socket, "heartbeat")
        # An API call (activity) moves the session's deadline on; the socket reads it when its own
        # deadline passes.
        response = await sync_to_async(client.get)("/api/v1/me", headers={"X-Session-Token": token})
        assert response.status_code == 200
        traveller.shift(timedelta(hours=2))
        for _ in range(5):
            assert (await socket.receive_json_from(timeout=5))["type"] == "heartbeat"
        # Then nine hours of nothing: the next beat closes it.
        traveller.shift(timedelta(hours=9))
        while True:
            output = await socket.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == CLOSE_UNAUTHENTICATED


async def test_one_beat_serves_every_socket_of_the_process() -> None:
    world: World = await sync_to_async(build_world)()
    first = await _socket(await sync_to_async(_token)(world.guardian))
    second = await _socket(await sync_to_async(_token)(world.guardian))
    beat = heartbeat.heartbeat()
    assert len(beat.sockets) == 2 and beat.task is not None
    await first.disconnect()
    assert len(beat.sockets) == 1
    await second.disconnect()
    # The last socket gone, the process stops beating.
    assert not beat.sockets and beat.task is None
    await asyncio.sleep(0)


class FakeSocket:
    """A socket on the heartbeat that notes when its pulses arrive."""

    def __init__(self, name: str, pulsed: list[tuple[str, float]]) -> None:
        self.channel_name = name
        self.pulsed = pulsed

    def pulse_key(self) -> tuple[Any, str | None]:
        return uuid.uuid4(), None

    async def on_pulse(self, pulse: heartbeat.Pulse) -> None:
        self.pulsed.append((self.channel_name, asyncio.get_running_loop().time()))


async def test_a_beat_takes_its_sockets_in_groups_spread_over_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "GROUP", 3)
    groups: list[int] = []

    def pulse(sockets: list[Any]) -> list[heartbeat.Pulse]:
        groups.append(len(sockets))
        return [heartbeat.Pulse(session=True, head=0) for _ in sockets]

    monkeypatch.setattr(heartbeat, "pulse", pulse)
    beat = heartbeat.Heartbeat()
    pulsed: list[tuple[str, float]] = []
    for index in range(7):
        socket = FakeSocket(f"socket-{index}", pulsed)
        beat.sockets[socket.channel_name] = socket
    # Something else on the loop (a live event) notes how many pulses went out each time it runs.
    seen: list[int] = []
    done = False

    async def other_work() -> None:
        while not done:
            seen.append(len(pulsed))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await beat.beat(spread=0.6)
    done = True
    await other
    # One hop off the loop per group of three, each group a third of the interval after the previous.
    assert groups == [3, 3, 1]
    assert [name for name, _ in pulsed] == [f"socket-{index}" for index in range(7)]
    firsts = [pulsed[0][1], pulsed[3][1], pulsed[6][1]]
    for index, at in enumerate(firsts):
        assert at - started >= index * 0.2 - 0.01
    assert firsts[-1] - started < 0.6
    # The loop ran other work between every pulse and the next, not only between groups.
    assert set(range(1, 8)) <= set(seen)


async def test_a_socket_that_left_during_the_beat_gets_no_pulse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "GROUP", 2)
    monkeypatch.setattr(heartbeat, "pulse", lambda sockets: [heartbeat.Pulse(session=True, head=0) for _ in sockets])
    beat = heartbeat.Heartbeat()
    pulsed: list[tuple[str, float]] = []
    sockets = [FakeSocket(f"socket-{index}", pulsed) for index in range(4)]
    for socket in sockets:
        beat.sockets[socket.channel_name] = socket

    async def leave_soon() -> None:
        while not pulsed:
            await asyncio.sleep(0)
        await beat.leave(sockets[3])  # closes while the first group is being served

    leaving = asyncio.create_task(leave_soon())
    await beat.beat(spread=0.2)
    await leaving
    assert [name for name, _ in pulsed] == ["socket-0", "socket-1", "socket-2"]


async def test_the_client_gets_a_heartbeat_frame_less_often_than_the_socket_beats(settings: Any) -> None:
    settings.PORTAL_WS_CLIENT_HEARTBEAT_SECONDS = 1.0  # five beats of 0.2 s
    world: World = await sync_to_async(build_world)()
    socket = await _socket(await sync_to_async(_token)(world.guardian))
    (consumer,) = heartbeat.heartbeat().sockets.values()
    await asyncio.sleep(2.1)
    frames = 0
    while not await socket.receive_nothing(timeout=0.05):
        assert (await socket.receive_json_from())["type"] == "heartbeat"
        frames += 1
    beats = getattr(consumer, "beats")  # noqa: B009
    assert beats >= 8  # the socket's own checks ran on every beat
    assert 1 <= frames <= 3  # the client heard from it about once a second
    await socket.disconnect()


async def test_the_server_process_collects_its_old_objects_rarely() -> None:
    # Full collections stop the event loop for the whole heap, which grows with the open sockets.
    import gc

    import portal.asgi  # noqa: F401

    young, middle, old = gc.get_threshold()
    assert young >= 10_000 and middle == 10 and old >= 100
