"""Redis as a degradable dependency, on any database: the cache and the channel layer point at a port
where nothing listens (a real, failing Redis client, no mocks). Signed-in calls, sign-in and its rate
limits, the portal's own limits, /health and sockets keep working; the outage is logged once."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction
from django.test import Client, override_settings

from portal import ratelimit, resilience
from portal.asgi import application
from portal.errors import RateLimited
from portal.vocabulary import EventType, Resource
from tests.conftest import PASSWORD, World


def _dead_redis_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def _dead_caches(url: str) -> dict[str, Any]:
    options = {"socket_connect_timeout": 0.2, "socket_timeout": 0.2, "RETRY_SECONDS": 60}
    return {
        "default": {
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "dead",
            "OPTIONS": {**options, "FALLBACK": "local"},
        },
        "sessions": {
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "dead",
            "OPTIONS": {**options, "FALLBACK": "none"},
        },
    }


@pytest.fixture
def dead_redis() -> Iterator[str]:
    url = _dead_redis_url()
    resilience._outages.clear()
    with override_settings(CACHES=_dead_caches(url), SESSION_CACHE_ALIAS="sessions"):
        yield url
    resilience._outages.clear()


def _post(client: Client, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "portal.resilience" and "unavailable" in r.getMessage()]


def test_signed_in_reads_and_writes_work_and_the_outage_is_logged_once(
    world: World, dead_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = Client()
    login = _post(client, "/_allauth/app/v1/auth/login", {"email": "guardian@example.org", "password": PASSWORD})
    assert login.status_code == 200, login.content
    assert login["Content-Type"].startswith("application/json")
    token = login.json()["meta"]["session_token"]
    for _ in range(3):
        assert client.get("/api/v1/children", headers={"X-Session-Token": token}).status_code == 200
    body = {"subject": "Sleep", "topic": "medical", "body": "A question", "client_id": str(uuid.uuid4())}
    created = _post(client, f"/api/v1/children/{world.ada.pk}/threads", body, **{"X-Session-Token": token})
    assert created.status_code == 201, created.content
    assert client.get("/api/v1/me", headers={"X-Session-Token": token}).status_code == 200
    # The cache's two aliases (shared counters, sessions) each note the outage once, not per request.
    assert len(_outage_warnings(caplog)) == 2
    # Logging out ends the session in the database: the token stops working.
    assert client.delete("/_allauth/app/v1/auth/session", headers={"X-Session-Token": token}).status_code == 401
    assert client.get("/api/v1/children", headers={"X-Session-Token": token}).status_code == 401


def test_browser_session_resolves_from_the_database(world: World, dead_redis: str) -> None:
    client = Client()
    login = _post(client, "/_allauth/browser/v1/auth/login", {"email": "guardian@example.org", "password": PASSWORD})
    assert login.status_code == 200, login.content
    assert client.get("/api/v1/children").status_code == 200


def test_sign_in_rate_limits_fall_back_to_a_per_process_limiter(world: World, dead_redis: str) -> None:
    # ACCOUNT_RATE_LIMITS["login_failed"] allows 5 failures per 300 s for one account.
    codes = []
    for _ in range(7):
        answer = _post(Client(), "/_allauth/app/v1/auth/login", {"email": "guardian@example.org", "password": "wrong"})
        assert answer.status_code == 400
        assert answer["Content-Type"].startswith("application/json")
        codes.append(answer.json()["errors"][0]["code"])
    assert "too_many_login_attempts" not in codes[:5]
    assert codes[5:] == ["too_many_login_attempts"] * 2


def test_portal_rate_limits_keep_counting_per_process(db: Any, dead_redis: str) -> None:
    assert ratelimit.hit("resilience", "user-1", "2/m")
    assert ratelimit.hit("resilience", "user-1", "2/m")
    assert not ratelimit.hit("resilience", "user-1", "2/m")
    with pytest.raises(RateLimited):
        ratelimit.enforce("resilience", ["user-1"], "2/m")


def test_health_names_the_degraded_component(db: Any, dead_redis: str) -> None:
    answer = Client().get("/api/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "degraded",
        "components": {"database": "ok", "cache": "unavailable", "channel_layer": "ok", "worker": "inline"},
        "degraded": ["cache"],
    }


def test_health_is_down_without_the_database(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal import api

    monkeypatch.setitem(api.HEALTH_COMPONENTS, "database", api.HealthComponent(lambda: "unavailable", critical=True))
    answer = Client().get("/api/v1/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "down"
    assert answer.json()["components"]["database"] == "unavailable"
    assert answer.json()["degraded"] == []


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_socket_opens_without_the_channel_layer_and_catches_up_from_the_database(dead_redis: str) -> None:
    from messaging import stream
    from tests.conftest import build_world

    layers = {
        "default": {
            "BACKEND": "portal.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {"hosts": [{"address": dead_redis, "socket_connect_timeout": 0.2}], "retry_seconds": 0.2},
        }
    }
    world = await database_sync_to_async(build_world)()

    def token() -> str:
        client = Client()
        client.force_login(world.guardian)
        return str(client.session.session_key)

    def emit() -> None:
        with transaction.atomic():
            stream.emit(
                users={world.guardian.pk},
                type=EventType.THREAD_CHANGED,
                child_id=world.ada.pk,
                entity_type=Resource.MESSAGE_THREAD,
                entity_id=uuid.uuid4(),
                confidential=False,
                data={},
            )

    with override_settings(CHANNEL_LAYERS=layers):
        key = await database_sync_to_async(token)()
        communicator = WebsocketCommunicator(application, "/ws/v1/events", headers=[(b"x-session-token", key.encode())])
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        await database_sync_to_async(emit)()
        received = None
        for _ in range(40):
            message = await communicator.receive_json_from(timeout=5)
            if message["type"] == "event":
                received = message["event"]
                break
        assert received is not None and received["type"] == "thread.updated"
        await communicator.disconnect()
    await asyncio.sleep(0)
    await database_sync_to_async(connections.close_all)()
