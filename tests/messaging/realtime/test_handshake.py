"""A socket's handshake reads the database on the event loop's thread pool, not on the one thread per
process that every other socket shares, and gives its connections back (PostgreSQL: the in-memory
SQLite test database keeps to one thread)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from messaging.realtime.consumer import on_any_thread
from portal.asgi import application
from tests.conftest import build_world

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections() -> Any:
    yield
    await database_sync_to_async(connections.close_all)()


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


async def _open(token: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/v1/events", headers=[(b"x-session-token", token.encode())])
    connected, _ = await asyncio.wait_for(communicator.connect(), timeout=15)
    assert connected
    return communicator


async def test_a_socket_opens_while_the_shared_database_thread_is_busy(needs_postgres: None) -> None:
    world = await sync_to_async(build_world)()
    token = await sync_to_async(_session_key)(world.guardian)
    release = threading.Event()
    # Holds the process's one shared sync thread (where ``database_sync_to_async`` runs), as a slow
    # query of another socket would.
    busy = asyncio.ensure_future(sync_to_async(release.wait)())
    await asyncio.sleep(0.2)
    try:
        communicator = await _open(token)
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await communicator.disconnect()
    finally:
        release.set()
        await busy


async def test_database_work_gives_its_connection_back(needs_postgres: None) -> None:
    """The connection a socket's database work opened is closed (given back to the pool) when the
    work is done: kept, it would be held by nothing that ever closes it, one more per handshake,
    until the pool is exhausted."""
    await sync_to_async(build_world)()

    def query() -> Any:
        connection = connections["default"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return connection

    used = [await on_any_thread(query)() for _ in range(3)]
    assert all(connection.connection is None for connection in used)
