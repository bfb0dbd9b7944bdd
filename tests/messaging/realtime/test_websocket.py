"""The per-user socket: who may connect, origin validation, and closing on logout or idle."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from messaging.realtime.consumer import CLOSE_MFA_REQUIRED, CLOSE_UNAUTHENTICATED
from portal.asgi import application
from portal.models import DepartmentMembership
from tests.conftest import build_world, make_user

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections() -> Any:
    """database_sync_to_async runs on a worker thread whose connection would outlive the test."""
    yield
    await database_sync_to_async(connections.close_all)()


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    """The close code of the socket, passing over the few heartbeats the process may send first."""
    for _ in range(40):  # heartbeats come every 0.2 s in tests: about 8 s
        output = await communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return int(output["code"])
        assert output == {"type": "websocket.send", "text": '{"type": "heartbeat"}'}
    raise AssertionError("the socket was not closed")


async def _connect(headers: list[tuple[bytes, bytes]]) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(application, "/ws/v1/events", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_app_token_connects_and_answers_ping() -> None:
    world = await sync_to_async(build_world)()
    token = await sync_to_async(_session_key)(world.guardian)
    communicator, connected, _ = await _connect([(b"x-session-token", token.encode())])
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to({"type": "subscribe", "child": "x"})
    assert (await communicator.receive_json_from())["code"] == "unknown_type"
    await communicator.disconnect()


async def test_browser_cookie_needs_an_allowed_origin() -> None:
    world = await sync_to_async(build_world)()
    key = await sync_to_async(_session_key)(world.guardian)
    cookie = f"sessionid={key}".encode()
    communicator, connected, _ = await _connect([(b"cookie", cookie), (b"origin", b"http://localhost")])
    assert connected
    await communicator.disconnect()
    # A foreign page cannot ride the guardian's cookie.
    _, connected, _ = await _connect([(b"cookie", cookie), (b"origin", b"https://evil.example")])
    assert not connected
    # Without an Origin header a cookie is not enough (only the app token is accepted).
    _, connected, code = await _connect([(b"cookie", cookie)])
    assert not connected and code == CLOSE_UNAUTHENTICATED


async def test_stranger_without_credentials_and_bad_token_are_refused() -> None:
    await sync_to_async(build_world)()
    for headers in ([], [(b"x-session-token", b"not-a-session")]):
        _, connected, code = await _connect(headers)
        assert not connected and code == CLOSE_UNAUTHENTICATED


async def test_clinician_without_mfa_is_refused() -> None:
    world = await sync_to_async(build_world)()

    def newcomer() -> Any:
        user = make_user("nomfa@example.org", "Dr. No MFA")
        DepartmentMembership.objects.create(department=world.department, clinician=user, role="doctor")
        return user

    user = await sync_to_async(newcomer)()
    token = await sync_to_async(_session_key)(user)
    _, connected, code = await _connect([(b"x-session-token", token.encode())])
    assert not connected and code == CLOSE_MFA_REQUIRED


async def test_logout_closes_the_socket() -> None:
    world = await sync_to_async(build_world)()
    client = Client()
    await sync_to_async(client.force_login)(world.guardian)
    key = await sync_to_async(lambda: client.session.session_key)()
    communicator, connected, _ = await _connect([(b"x-session-token", str(key).encode())])
    assert connected
    response = await sync_to_async(client.delete)("/_allauth/browser/v1/auth/session")
    assert response.status_code == 401  # allauth answers "signed out" with 401
    assert await _closed_with(communicator) == CLOSE_UNAUTHENTICATED


async def test_deactivating_the_account_closes_its_sockets() -> None:
    world = await sync_to_async(build_world)()
    token = await sync_to_async(_session_key)(world.guardian)
    kept_token = await sync_to_async(_session_key)(world.co_guardian)
    communicator, connected, _ = await _connect([(b"x-session-token", token.encode())])
    kept, kept_connected, _ = await _connect([(b"x-session-token", kept_token.encode())])
    assert connected and kept_connected

    def deactivate() -> None:
        world.guardian.is_active = False
        world.guardian.save(update_fields=["is_active"])

    await sync_to_async(deactivate)()
    assert await _closed_with(communicator) == CLOSE_UNAUTHENTICATED
    # Another account's socket stays open and answers.
    await kept.send_json_to({"type": "ping"})
    while (reply := await kept.receive_json_from()) == {"type": "heartbeat"}:
        pass
    assert reply == {"type": "pong"}
    await kept.disconnect()


async def test_deleted_session_is_noticed_by_the_heartbeat() -> None:
    from django.contrib.sessions.backends.cached_db import SessionStore

    world = await sync_to_async(build_world)()
    token = await sync_to_async(_session_key)(world.guardian)
    communicator, connected, _ = await _connect([(b"x-session-token", token.encode())])
    assert connected
    # Ended elsewhere (another device's "sign out everywhere", an administrator): the session is gone.
    await sync_to_async(lambda: SessionStore(token).delete())()
    messages = []
    while True:
        output = await communicator.receive_output(timeout=3)
        messages.append(output)
        if output["type"] == "websocket.close":
            break
    assert messages[-1]["code"] == CLOSE_UNAUTHENTICATED


async def test_link_revocation_closes_the_guardians_sockets_only() -> None:
    import json as _json

    from messaging.realtime.consumer import CLOSE_ACCESS_REVOKED

    world = await sync_to_async(build_world)()
    revoked_token = await sync_to_async(_session_key)(world.co_guardian)
    kept_token = await sync_to_async(_session_key)(world.guardian)
    revoked, connected, _ = await _connect([(b"x-session-token", revoked_token.encode())])
    kept, connected_too, _ = await _connect([(b"x-session-token", kept_token.encode())])
    assert connected and connected_too
    staff = await sync_to_async(Client)(headers={"X-Session-Token": await sync_to_async(_session_key)(world.clinician)})
    link = world.links["co_guardian"]
    response = await sync_to_async(staff.post)(
        f"/api/v1/children/{world.ada.pk}/guardian-links/{link.pk}/revoke",
        data=_json.dumps({}),
        content_type="application/json",
    )
    assert response.status_code == 200
    while True:
        output = await revoked.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == CLOSE_ACCESS_REVOKED
    # The other guardian keeps receiving heartbeats on an open socket.
    assert (await kept.receive_json_from(timeout=2))["type"] == "heartbeat"
    await kept.disconnect()
