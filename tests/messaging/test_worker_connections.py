"""The worker's loop keeps its pooled PostgreSQL connections: busy (running tasks) or idle (polling an
empty queue), it opens no new connection per loop. Without the pool every loop would open one
(``close_old_connections`` ends a request-like unit of work)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as default_connection

from messaging.tasks import escalate_overdue_threads
from messaging.worker import PortalWorker

# The PostgreSQL wrapper (``pool``); these tests run on PostgreSQL only.
connection: Any = default_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

BUSY_LOOPS = 6
LOOPS = 30


@pytest.fixture
def database_queue(settings: Any) -> None:
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def test_the_worker_loop_reuses_its_pooled_connections(
    needs_postgres: None, database_queue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(BUSY_LOOPS):
        escalate_overdue_threads.enqueue()
    worker = PortalWorker(
        queue_names=["default"],
        interval=0.001,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="w-connections",
    )
    housekeeping = worker.housekeeping
    backends: list[int] = []

    def counted_housekeeping() -> None:
        housekeeping()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends.append(int(cursor.fetchone()[0]))
        if len(backends) >= LOOPS:
            worker.running = False

    monkeypatch.setattr(worker, "housekeeping", counted_housekeeping)
    connection.ensure_connection()
    pool = connection.pool
    assert pool is not None
    pool.wait(timeout=10)  # its min_size connections are open
    opened = pool.get_stats()["connections_num"]
    worker.serve()
    assert len(backends) == LOOPS
    assert worker._run_tasks == BUSY_LOOPS  # the first loops were busy, the others idle
    # Not one connection opened by the loops: each one borrowed a connection the pool already held.
    assert pool.get_stats()["connections_num"] == opened
    assert len(set(backends)) <= pool.get_stats()["pool_max"]
