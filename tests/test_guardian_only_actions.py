"""Guardian-only actions: confirming attendance, asking to move or cancel a visit, requesting a refill and
submitting insurance speak for the family. The care team (and staff) cannot take them: 404, audited
as a denial, and nothing changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from care.models import Appointment, Coverage, RefillRequest
from portal.models import AuditEvent
from tests import care_data
from tests.conftest import World


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def _calls(world: World) -> dict[str, tuple[str, dict[str, Any]]]:
    base = f"/api/v1/children/{world.ada.pk}"
    appointment = care_data.appointment(world.ada, world.clinician)
    plan = care_data.plan(world.ada, world.clinician)
    return {
        "confirm": (f"{base}/appointments/{appointment.pk}/confirm", {}),
        "change_request": (f"{base}/appointments/{appointment.pk}/change-request", {"action": "cancel"}),
        "refill": (f"{base}/medications/{plan.pk}/refills", {"note": "running low"}),
        "coverage": (f"{base}/coverage", {"payer": "Acme Health", "member_id": "NEW-123"}),
    }


@pytest.mark.parametrize("persona", ["clinician", "admin"])
def test_care_team_and_staff_cannot_act_for_the_family(world: World, persona: str) -> None:
    calls = _calls(world)
    for name, (url, body) in calls.items():
        denials = AuditEvent.objects.filter(action="deny", actor_id=world.users[persona].pk).count()
        response = post(world.client(persona), url, body)
        assert response.status_code == 404, (name, response.status_code, response.content)
        assert response.json()["code"] == "not_found"
        after = AuditEvent.objects.filter(action="deny", actor_id=world.users[persona].pk).count()
        assert after == denials + 1, name
    assert not Appointment.objects.filter(guardian_confirmed_at__isnull=False).exists()
    assert not Appointment.objects.exclude(change_request="").exists()
    assert not RefillRequest.objects.exists()
    assert not Coverage.objects.exists()


def test_the_guardian_still_can(world: World) -> None:
    for name, (url, body) in _calls(world).items():
        response = post(world.client("guardian"), url, body)
        assert response.status_code in (200, 201), (name, response.content)
