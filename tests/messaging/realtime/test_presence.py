"""Presence across processes: each socket counts on its own, in Redis when configured, so a guardian
connected on any daphne is not emailed or texted for what reaches their socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings

from messaging.conf import presence_seconds
from messaging.models import Notification, NotificationPreference
from messaging.realtime import presence
from tests.conftest import World, build_world
from tests.messaging.realtime.test_scale_out import _database_url, _free_port, _post, _start, _token, _wait_healthy

MOMENT = datetime(2027, 6, 9, 17, 0, tzinfo=UTC)


def test_each_socket_counts_until_it_closes_or_expires(world: World) -> None:
    with time_machine.travel(MOMENT, tick=False):
        assert not presence.is_connected(world.guardian.pk)
        presence.touch(world.guardian.pk, "phone")
        presence.touch(world.guardian.pk, "laptop")
        presence.leave(world.guardian.pk, "phone")
        assert presence.is_connected(world.guardian.pk)  # the laptop is still open
        assert not presence.is_connected(world.co_guardian.pk)
        presence.leave(world.guardian.pk, "laptop")
        assert not presence.is_connected(world.guardian.pk)
        presence.touch(world.guardian.pk, "tablet")
    # A socket whose process died never says goodbye: it stops counting after a few heartbeats.
    with time_machine.travel(MOMENT + timedelta(seconds=presence_seconds() - 1), tick=False):
        assert presence.is_connected(world.guardian.pk)
    with time_machine.travel(MOMENT + timedelta(seconds=presence_seconds() + 1), tick=False):
        assert not presence.is_connected(world.guardian.pk)


def test_one_beat_refreshes_many_sockets_and_a_dead_one_still_expires() -> None:
    phone_user, laptop_user = uuid.uuid4(), uuid.uuid4()
    with time_machine.travel(MOMENT, tick=False):
        presence.touch_many([(phone_user, "phone"), (phone_user, "tablet"), (laptop_user, "laptop")])
        assert presence.is_connected(phone_user) and presence.is_connected(laptop_user)
    # Later beats refresh only the sockets still open: the laptop's process died.
    for beat in range(1, 6):
        with time_machine.travel(MOMENT + timedelta(seconds=beat * 5), tick=False):
            presence.touch_many([(phone_user, "phone")])
    with time_machine.travel(MOMENT + timedelta(seconds=25), tick=False):
        assert presence.is_connected(phone_user)
        assert not presence.is_connected(laptop_user)  # expired within a few heartbeats
        presence.leave(phone_user, "phone")
        assert not presence.is_connected(phone_user)  # the tablet expired as well


def test_with_redis_presence_is_a_sorted_set_per_user_trimmed_on_each_beat(needs_redis: None) -> None:
    from django.core.cache import cache

    client = presence.redis_client()
    assert client is not None  # the default cache is Redis (not its local-memory stand-in)
    user = uuid.uuid4()
    key = cache.make_key(presence._key(user))
    with time_machine.travel(MOMENT, tick=False):
        presence.touch_many([(user, "phone"), (user, "laptop")])
        assert sorted(member.decode() for member in client.zrange(key, 0, -1)) == ["laptop", "phone"]
    with time_machine.travel(MOMENT + timedelta(seconds=presence_seconds() + 1), tick=False):
        presence.touch_many([(user, "phone")])
        # The laptop's expired entry is gone from the set, and the set itself expires when nobody beats.
        assert [member.decode() for member in client.zrange(key, 0, -1)] == ["phone"]
        assert 0 < client.ttl(key) <= int(presence_seconds()) + 1


async def _connected_while(port: int, token: str, send: Any, timeout: float = 15) -> dict[str, Any]:
    import websockets

    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/v1/events", additional_headers={"X-Session-Token": token}
    ) as ws:
        await asyncio.sleep(0.3)  # connected and marked present
        posted = await asyncio.to_thread(send)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
            if message["type"] == "event" and message["event"]["type"] == "message.created":
                return {"event": message["event"], "posted": posted}
    raise AssertionError("no event")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
def test_a_guardian_on_daphne_a_is_not_emailed_for_a_message_sent_through_daphne_b(
    needs_postgres: None, needs_redis: None, tmp_path: Path
) -> None:
    world = build_world()
    for persona in ("guardian", "co_guardian"):
        world.users[persona].phone = "+1555012" + str(len(persona))
        world.users[persona].save(update_fields=["phone"])
        NotificationPreference.objects.create(user=world.users[persona], email=True, sms=True)
    guardian_token, clinician_token = _token(world.guardian), _token(world.clinician)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": f"presence-{uuid.uuid4().hex[:8]}",
        "PORTAL_TEST_CACHE_PREFIX": f"presence-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    ports = [_free_port(), _free_port()]
    processes = [_start(port, env, tmp_path / f"daphne-{port}.log") for port in ports]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            _wait_healthy(port, deadline)
        url = f"/children/{world.ada.pk}/threads"
        body = {"subject": "Cross", "topic": "medical", "body": "From the care team", "client_id": str(uuid.uuid4())}
        # The guardian's socket is on daphne A; the clinician writes through daphne B.
        result = asyncio.run(
            _connected_while(ports[0], guardian_token, lambda: _post(ports[1], url, clinician_token, body))
        )
        assert result["event"]["data"]["thread_id"] == result["posted"]["id"]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    guardian = Notification.objects.filter(user=world.guardian, kind="new_message")
    assert guardian.count() == 2  # email and SMS, both skipped: the socket got it
    assert set(guardian.values_list("status", "last_error")) == {("skipped", "connected")}
    co_guardian = Notification.objects.filter(user=world.co_guardian, kind="new_message")
    assert set(co_guardian.values_list("channel", "status")) == {("email", "sent"), ("sms", "sent")}
