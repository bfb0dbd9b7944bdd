"""The background worker's health and the urgent page surviving it: a real ``portal_worker`` process on
the database queue (PostgreSQL), killed mid-run. /health turns ``degraded`` within the heartbeat window,
and a page that could not be sent at once reaches the on-call clinician once a worker runs again.

The clock is not frozen here: two processes share it, and the outcome (a heartbeat's age) is measured
in real seconds against settings the test chooses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from care.models import ScheduleException
from messaging import notify
from messaging.models import Notification, WorkerHeartbeat
from portal.models import CareTeamMembership
from tests.conftest import build_world, enrol_mfa, make_user
from tests.messaging import data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.5
STALE = 3.0
DATABASE_QUEUE = "django_tasks_db.DatabaseBackend"


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_worker(worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "PORTAL_TEST_TASK_BACKEND": DATABASE_QUEUE,
        "PORTAL_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "PORTAL_WORKER_SWEEP_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "portal_worker", "--interval", "0.2", "--worker-id", worker_id, "-v", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_state() -> str:
    state: str = Client().get("/api/v1/health").json()["components"]["worker"]
    return state


def test_a_killed_worker_makes_health_degraded_and_the_page_arrives_after_restart(
    needs_postgres: None, settings: Any, tmp_path: Path
) -> None:
    settings.TASKS = {"default": {"BACKEND": DATABASE_QUEUE}}
    settings.PORTAL_WORKER_STALE_SECONDS = STALE
    settings.PORTAL_NOTIFICATION_BACKOFF_SECONDS = 1
    world = build_world()
    doctor = make_user("oncall@example.org", "Dr. On Call", phone="+15550100")
    enrol_mfa(doctor)
    CareTeamMembership.objects.create(child=world.ada, clinician=doctor, department=world.department, role="specialist")
    now = timezone.now()
    ScheduleException.objects.create(
        clinician=doctor, kind="on_call", start=now - timedelta(hours=1), end=now + timedelta(hours=2)
    )
    assert _worker_state() == "down"  # never started

    first = _start_worker("worker-one", tmp_path / "worker-one.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: _worker_state() == "ok", 60, "the first heartbeat")
        first.send_signal(signal.SIGKILL)  # killed mid-run, no goodbye
        first.wait(timeout=10)
        noticed = _wait(lambda: _worker_state() == "down", STALE + HEARTBEAT + 5, "/health to notice")
        assert noticed <= STALE + HEARTBEAT + 2
        health = Client().get("/api/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"

        # A red flag while the worker is dead, and the provider fails the first attempt: the page
        # waits in the queue (and as a pending row the sweep finds).
        with mock.patch.object(notify, "_send", side_effect=ConnectionError("provider down")):
            created = data.start_thread(world, body="she is not breathing")
        assert created.status_code == 201, created.content
        pages = Notification.objects.filter(user=doctor, kind="urgent_message")
        assert pages.count() == 2 and set(pages.values_list("status", flat=True)) == {"pending"}
        assert DBTaskResult.objects.filter(status="READY").exists()
        out = _queue_status()
        assert "worker: down" in out and "ready:" in out

        second = _start_worker("worker-two", tmp_path / "worker-two.log")
        _wait(lambda: set(pages.values_list("status", flat=True)) == {"sent"}, 60, "the page to be sent")
        assert _wait(lambda: _worker_state() == "ok", 10, "/health to recover") >= 0
        assert WorkerHeartbeat.objects.filter(worker_id="worker-two").exists()
        # One failed attempt in the request's process, the second by the restarted worker.
        assert set(pages.values_list("attempts", flat=True)) == {2}
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _queue_status() -> str:
    from io import StringIO

    out = StringIO()
    call_command("queue_status", stdout=out)
    return out.getvalue()
