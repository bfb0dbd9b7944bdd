"""The worker's heartbeat and the queue's lag in /health and ``queue_status``, on a frozen clock (the
live worker process is tested in test_worker.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from messaging.notify import deliver_notification
from messaging.worker import PortalWorker, queue_state, worker_health

MOMENT = datetime(2027, 6, 12, 3, 0, tzinfo=UTC)  # Saturday night


@pytest.fixture
def database_queue(settings: Any) -> None:
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.PORTAL_WORKER_STALE_SECONDS = 30
    settings.PORTAL_QUEUE_LAG_SECONDS = 120


def _worker() -> PortalWorker:
    return PortalWorker(
        queue_names=["default"],
        interval=1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="w-test",
    )


def _health() -> dict[str, Any]:
    body: dict[str, Any] = Client().get("/api/v1/health").json()
    return body


@pytest.mark.django_db
def test_inline_tasks_need_no_worker() -> None:
    assert worker_health() == "inline" and _health()["status"] == "ok"


@pytest.mark.django_db
def test_health_follows_the_heartbeat_and_the_queue_lag(database_queue: None) -> None:
    with time_machine.travel(MOMENT, tick=False):
        assert _health()["components"]["worker"] == "down" and _health()["status"] == "degraded"
        _worker().beat()
        assert _health() == {
            "status": "ok",
            "components": {"database": "ok", "cache": "ok", "channel_layer": "ok", "worker": "ok"},
            "degraded": [],
        }
    with time_machine.travel(MOMENT + timedelta(seconds=29), tick=False):
        assert worker_health() == "ok"
    with time_machine.travel(MOMENT + timedelta(seconds=31), tick=False):
        assert worker_health() == "down"
        _worker().beat()
        deliver_notification.enqueue("00000000-0000-0000-0000-000000000000")  # ready at once
        deliver_notification.using(run_after=MOMENT + timedelta(hours=1)).enqueue("x")  # deferred
    with time_machine.travel(MOMENT + timedelta(seconds=31 + 25), tick=False):
        _worker().beat()
        state = queue_state()
        assert (state.ready, state.deferred, state.running, state.lag_seconds) == (1, 1, 0, 25.0)
        assert worker_health() == "ok"
    with time_machine.travel(MOMENT + timedelta(seconds=31 + 121), tick=False):
        _worker().beat()  # alive, but not keeping up
        assert worker_health() == "lagging" and _health()["status"] == "degraded"
        out = StringIO()
        call_command("queue_status", stdout=out)
        assert "worker: lagging" in out.getvalue() and "ready: 1  deferred: 1" in out.getvalue()
        assert "w-test" in out.getvalue()
        with pytest.raises(SystemExit):
            call_command("queue_status", "--fail-unhealthy", stdout=StringIO())
