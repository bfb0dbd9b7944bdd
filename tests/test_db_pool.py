"""Database connections come from Django's psycopg pool: when none can be had in time the answer is
``503 overloaded`` with ``Retry-After`` (never 500), and a long-running process such as the task
worker keeps its connections between loops instead of reconnecting."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import close_old_connections, connections
from django.db import connection as default_connection
from django.test import Client

from tests.conftest import build_world

# The PostgreSQL wrapper (``pool``, ``close_pool``); these tests run on PostgreSQL only.
connection: Any = default_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def tiny_pool(needs_postgres: None) -> Iterator[dict[str, Any]]:
    """The default database's pool shrunk to two connections and a half-second wait."""
    options = connection.settings_dict["OPTIONS"]
    saved = options.get("pool")
    connections.close_all()
    connection.close_pool()
    options["pool"] = {"min_size": 1, "max_size": 2, "timeout": 0.5}
    try:
        yield options["pool"]
    finally:
        connections.close_all()
        connection.close_pool()
        if saved is None:
            options.pop("pool", None)
        else:
            options["pool"] = saved


def _hold_connections(count: int) -> tuple[list[threading.Thread], threading.Event]:
    """Threads that each take a pooled connection and keep it until released."""
    taken = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        try:
            connection.ensure_connection()
            taken.release()
            release.wait(timeout=30)
        finally:
            connection.close()

    holders = [threading.Thread(target=hold) for _ in range(count)]
    for holder in holders:
        holder.start()
    for _ in holders:
        assert taken.acquire(timeout=10)
    return holders, release


def test_an_exhausted_pool_answers_503_overloaded(tiny_pool: dict[str, Any]) -> None:
    world = build_world()
    browser = Client(raise_request_exception=False)
    browser.force_login(world.guardian)
    app = Client(headers={"X-Session-Token": browser.session.session_key})
    connections.close_all()
    holders, release = _hold_connections(tiny_pool["max_size"])
    try:
        # The app token is resolved inside the API (its error handler); the cookie session in a
        # middleware, before any view (Django's handler500).
        for client in (app, browser):
            answer = client.get("/api/v1/children")
            assert answer.status_code == 503, answer.content
            assert answer["Content-Type"].startswith("application/json")
            assert answer.json()["code"] == "overloaded"
            assert int(answer["Retry-After"]) >= 1
            connections.close_all()
    finally:
        release.set()
        for holder in holders:
            holder.join(timeout=30)
    assert app.get("/api/v1/children").status_code == 200
    assert browser.get("/api/v1/children").status_code == 200
    connections.close_all()


def test_a_long_running_process_keeps_its_pooled_connections(needs_postgres: None) -> None:
    """The task worker calls ``close_old_connections`` on every loop, like a request ending."""

    def query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    query()
    close_old_connections()
    pool = connection.pool
    assert pool is not None
    opened = pool.get_stats()["connections_num"]
    for _ in range(10):
        query()
        close_old_connections()
    assert pool.get_stats()["connections_num"] == opened  # not one new connection
