"""Idle timeouts: 30 minutes for clinicians and administrators, longer for families."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.test import Client
from django.utils import timezone

from portal.models import AuditEvent
from tests.conftest import World, app_client


def test_clinician_token_times_out_after_thirty_idle_minutes(world: World) -> None:
    client = app_client(world.clinician)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert client.get("/api/v1/me").status_code == 200
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert client.get("/api/v1/me").status_code == 200  # activity resets the clock
    with time_machine.travel(start + timedelta(minutes=60), tick=False):
        assert client.get("/api/v1/me").status_code == 401
    assert AuditEvent.objects.filter(actor_id=world.clinician.pk, reason="idle_timeout").exists()
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        assert client.get("/api/v1/me").status_code == 401  # the session is gone, not just refused once


def test_guardian_session_outlives_a_clinicians_timeout(world: World) -> None:
    client = app_client(world.guardian)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert client.get("/api/v1/me").status_code == 200
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        assert client.get("/api/v1/me").status_code == 200
    with time_machine.travel(start + timedelta(hours=11), tick=False):
        assert client.get("/api/v1/me").status_code == 401


def test_browser_session_times_out_too(world: World) -> None:
    client = Client()
    client.force_login(world.admin)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert client.get("/api/v1/me").status_code == 200
    with time_machine.travel(start + timedelta(minutes=45), tick=False):
        assert client.get("/api/v1/me").status_code == 401
