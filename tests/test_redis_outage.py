"""Redis dies and comes back while signed-in requests flow through a real daphne process.

The test starts its own redis-server on a free port (the shared one is never touched), points a daphne
subprocess at it and at the test database, keeps guardian and clinician reads and writes going, stops
Redis, starts it again: not one answer is 5xx, a socket opens during the outage, and sockets opened
before, during and after it receive every event written meanwhile (caught up from the database).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

from messaging.models import UserEvent
from portal import resilience
from tests.conftest import app_client, build_world
from tests.messaging.realtime.test_scale_out import ROOT, _database_url, _free_port, _start, _wait_healthy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


def _redis(port: int, log: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    assert server, "redis-server is needed for this test"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import redis

            if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                return process
        except Exception:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def _token(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


def _call(port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "X-Session-Token": token},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, None


class Load:
    """Guardian and clinician reads and writes in two threads until stopped; counts every status."""

    def __init__(self, port: int, tokens: dict[str, str], child: str, thread: str) -> None:
        self.port, self.tokens, self.child, self.thread = port, tokens, child, thread
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._run, args=(who,)) for who in ("guardian", "clinician")]

    def _run(self, who: str) -> None:
        token = self.tokens[who]
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", "/children", None),
            ("GET", "/me", None),
            ("GET", f"/children/{self.child}/threads/{self.thread}", None),
            ("POST", f"/children/{self.child}/threads/{self.thread}/messages", {}),
        ]
        turn = 0
        while not self.stop.is_set():
            method, path, body = calls[turn % len(calls)]
            turn += 1
            if body is not None:
                body = {"body": f"Update {turn}", "client_id": str(uuid.uuid4())}
            try:
                status, _ = _call(self.port, method, path, token, body)
            except OSError as error:  # no answer at all counts as a failure too
                with self.lock:
                    self.failures.append(type(error).__name__)
                continue
            with self.lock:
                self.statuses[status] += 1

    def __enter__(self) -> Load:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=30)


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result
    except urllib.error.HTTPError as error:
        return {"status": f"http {error.code}"}


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _collect(port: int, token: str, after: int | None, stop: asyncio.Event, ids: set[int]) -> None:
    import websockets

    query = f"?after={after}" if after is not None else ""
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/v1/events{query}", additional_headers={"X-Session-Token": token}
    ) as ws:
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except TimeoutError:
                continue
            if message["type"] == "event":
                ids.add(int(message["event"]["id"]))


def test_redis_outage_while_requests_flow(needs_postgres: None, needs_redis: None, tmp_path: Path) -> None:
    world = build_world()
    tokens = {"guardian": _token(world.guardian), "clinician": _token(world.clinician)}
    redis_port, daphne_port = _free_port(), _free_port()
    redis_server = _redis(redis_port, tmp_path / "redis.log")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CHANNEL_PREFIX": f"outage-{uuid.uuid4().hex[:8]}",
        "PORTAL_CACHE_RETRY_SECONDS": "1",
        "PORTAL_MESSAGE_RATE": "100000/m",
        "PYTHONPATH": str(ROOT),
    }
    daphne = _start(daphne_port, env, tmp_path / "daphne.log")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    received: dict[str, set[int]] = {"before": set(), "during": set(), "after": set()}
    sockets: list[asyncio.Task[None]] = []
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def open_socket(name: str, after: int | None) -> None:
        async def start() -> None:
            task = _collect(daphne_port, tokens["guardian"], after, stop, received[name])
            sockets.append(asyncio.ensure_future(task))

        asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)

    try:
        _wait_healthy(daphne_port, time.monotonic() + 30)
        assert _health(daphne_port)["status"] == "ok"
        status, thread = _call(
            daphne_port,
            "POST",
            f"/children/{world.ada.pk}/threads",
            tokens["guardian"],
            {"subject": "Outage", "topic": "medical", "body": "Before", "client_id": str(uuid.uuid4())},
        )
        assert status == 201, status
        start_id = max(UserEvent.objects.filter(user=world.guardian).values_list("id", flat=True))
        open_socket("before", start_id)
        with Load(daphne_port, tokens, str(world.ada.pk), thread["id"]) as load:
            time.sleep(2)
            redis_server.terminate()
            redis_server.wait(timeout=10)
            _wait_for(lambda: _health(daphne_port)["status"] == "degraded", 20, "degraded health")
            assert set(_health(daphne_port)["degraded"]) == {"cache", "channel_layer"}
            open_socket("during", start_id)
            time.sleep(4)
            redis_server = _redis(redis_port, tmp_path / "redis.log")
            _wait_for(lambda: _health(daphne_port)["status"] == "ok", 20, "health ok again")
            open_socket("after", start_id)
            time.sleep(3)
        written = set(UserEvent.objects.filter(user=world.guardian, id__gt=start_id).values_list("id", flat=True))
        time.sleep(2)  # the last catch-up beat
        loop.call_soon_threadsafe(stop.set)
        asyncio.run_coroutine_threadsafe(asyncio.wait(sockets, timeout=10), loop).result(timeout=15)
        for task in sockets:
            assert task.done() and task.exception() is None, task
        assert load.failures == []
        assert not [status for status in load.statuses if status >= 500], load.statuses
        assert load.statuses[200] > 20 and load.statuses[201] > 5, load.statuses
        assert len(written) > 10, len(written)
        for name, ids in received.items():
            assert written <= ids, (name, len(written - ids))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        daphne.terminate()
        redis_server.terminate()
        for process in (daphne, redis_server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_session_ended_while_redis_was_unreachable_does_not_come_back(needs_redis: None, tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP: it keeps its data but answers nothing) while the user logs out; when it
    thaws, its copy of the session must not sign the token in again."""
    port = _free_port()
    server = _redis(port, tmp_path / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    options = {"socket_connect_timeout": 0.2, "socket_timeout": 0.2, "RETRY_SECONDS": 0.3}
    caches = {
        alias: {
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "frozen",
            "OPTIONS": {**options, "FALLBACK": fallback},
        }
        for alias, fallback in (("default", "local"), ("sessions", "none"))
    }
    resilience._outages.clear()
    try:
        with override_settings(CACHES=caches, SESSION_CACHE_ALIAS="sessions"):
            world = build_world()
            client = app_client(world.guardian)
            assert client.get("/api/v1/children").status_code == 200
            import redis

            def session_keys() -> list[bytes]:
                return [key for key in redis.Redis(port=port).scan_iter("frozen:*") if b"cached_db" in key]

            assert session_keys()
            os.kill(server.pid, signal.SIGSTOP)
            try:
                assert client.delete("/_allauth/app/v1/auth/session").status_code == 401
                assert client.get("/api/v1/children").status_code == 401
            finally:
                os.kill(server.pid, signal.SIGCONT)
            time.sleep(0.5)
            assert client.get("/api/v1/children").status_code == 401
            assert session_keys() == []
    finally:
        resilience._outages.clear()
        server.terminate()
        server.wait(timeout=10)


def test_a_hung_redis_does_not_hang_publishing_or_handshakes(needs_redis: None, tmp_path: Path) -> None:
    """Redis frozen (it accepts connections, answers nothing): publishing fails within the operation
    timeout, then at once until the next probe; joining a group (a socket's handshake) does not hang."""
    from portal.cache import REDIS_DOWN
    from portal.channel_layer import LayerUnavailable, ResilientRedisChannelLayer, layer_outage

    port = _free_port()
    server = _redis(port, tmp_path / "redis.log")
    resilience._outages.clear()
    layer = ResilientRedisChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{port}/0"}], prefix="hung", operation_timeout=0.5, retry_seconds=0.2
    )

    async def scenario() -> None:
        first = await layer.new_channel()
        await layer.group_add("family", first)
        assert layer.subscribed(first)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(REDIS_DOWN):
                await layer.group_send("family", {"type": "stream.event"})
            assert time.monotonic() - began < 2
            began = time.monotonic()
            with pytest.raises(LayerUnavailable):
                await layer.group_send("family", {"type": "stream.event"})
            assert time.monotonic() - began < 0.1
            second = await layer.new_channel()
            began = time.monotonic()
            await layer.group_add("family", second)  # kept for later, not raised
            assert time.monotonic() - began < 2
            assert not layer.subscribed(second)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await asyncio.sleep(1.2)  # past the next probe
        await layer.group_send("family", {"type": "stream.event"})
        assert not layer_outage().down
        await layer.close_pools()

    try:
        asyncio.run(scenario())
    finally:
        resilience._outages.clear()
        server.terminate()
        server.wait(timeout=10)
