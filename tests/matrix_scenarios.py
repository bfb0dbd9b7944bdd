"""Persona scenarios: ways around the access policy that a single call per persona (``tests.matrix``)
cannot show, and the scan of every GET operation for what a reader must not see."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.test import Client

from portal.models import CareTeamMembership, DepartmentMembership, GuardianLink
from tests.conftest import World, make_user
from tests.matrix import ENDPOINTS, GUARDIANS, assert_matrix


def _get_paths() -> list[str]:
    from portal.apiroot import api

    return [
        path
        for bound in api._get_bound_routers()
        for path, path_view in bound.path_operations.items()
        for operation in path_view.operations
        if "GET" in operation.methods
    ]


def _fill(path: str, ids: dict[str, str]) -> str:
    missing = [name for name in re.findall(r"\{(\w+)\}", path) if name not in ids]
    assert not missing, f"give the scan a value for {missing} in {path}"
    return "/api/v1" + path.format(**ids)


def scan_gets(
    client: Client, stranger: Client, ids: dict[str, str], check: Callable[[str], list[str]]
) -> tuple[dict[str, list[str]], int]:
    """GET every operation of the API as ``client`` (the calendar feed without credentials) and return,
    per path, what ``check`` found in the answer. Group routes must answer exactly as they do for
    ``stranger``: listed groups are named after conditions for everyone, so the guardian's view may
    differ in nothing (no match, no order). Also returns how many calls were made."""
    found: dict[str, list[str]] = {}
    walked = 0
    for path in _get_paths():
        url = _fill(path, ids)
        reader = Client() if path.startswith("/calendar/") else client
        for suffix in ("", "?when=past") if path.endswith("/appointments") else ("",):
            response = reader.get(url + suffix)
            walked += 1
            if path.startswith("/groups"):
                if response.content != stranger.get(url + suffix).content:
                    found[path] = ["differs from a stranger's view"]
                continue
            hit = check(response.content.decode(errors="replace"))
            if hit:
                found[path + suffix] = hit
    return found, walked


SCENARIOS: list[Callable[[World], None]] = []


def scenario(function: Callable[[World], None]) -> Callable[[World], None]:
    SCENARIOS.append(function)
    return function


def _post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def _invite(client: Client, world: World, email: str) -> Any:
    return _post(
        client,
        f"/api/v1/children/{world.ada.pk}/invitations",
        {"relationship": "other", "scope": "full", "recipient_email": email},
    )


def _medicines(world: World, client: Client) -> int:
    from tests import care_data

    if not world.ada.medication_plans.exists():
        care_data.plan(world.ada, world.clinician)
    return int(client.get(f"/api/v1/children/{world.ada.pk}/medications").status_code)


@scenario
def staff_self_invitation(world: World) -> None:
    """An administrator (manage_portal) invites herself to read a child's medicines: refused."""
    admin = world.client("admin")
    refused = _invite(admin, world, world.admin.email)
    assert refused.status_code == 422 and refused.json()["code"] == "invitation_to_self"
    assert _medicines(world, admin) == 404


@scenario
def creator_redemption(world: World) -> None:
    """The creator redeems her own invitation (sent to an address she then verifies): refused."""
    from allauth.account.models import EmailAddress

    clinician = world.client("clinician")
    created = _invite(clinician, world, "private.mail@example.org")
    assert created.status_code == 201
    EmailAddress.objects.create(user=world.clinician, email="private.mail@example.org", verified=True)
    refused = _post(clinician, "/api/v1/invitations/redeem", {"code": created.json()["code"]})
    assert refused.status_code == 403 and refused.json()["code"] == "invitation_own"
    assert not GuardianLink.objects.filter(guardian=world.clinician).exists()


@scenario
def clinician_after_removal(world: World) -> None:
    """A nurse on the care team gets herself a guardian link, then leaves the care team: no access."""
    from tests.conftest import app_client, enrol_mfa

    nurse = make_user(f"nurse{uuid.uuid4().hex[:8]}@example.org", "Nina Nurse")
    enrol_mfa(nurse)
    DepartmentMembership.objects.create(department=world.department, clinician=nurse, role="nurse")
    membership = CareTeamMembership.objects.create(child=world.ada, clinician=nurse, role="nurse")
    client = app_client(nurse)
    assert _invite(client, world, nurse.email).status_code == 422
    colleague = _invite(world.client("clinician"), world, nurse.email).json()["code"]
    waiting = _post(client, "/api/v1/invitations/redeem", {"code": colleague})
    assert waiting.status_code == 201 and waiting.json()["status"] == "pending_approval"
    assert client.delete(f"/api/v1/children/{world.ada.pk}/care-team/{membership.pk}").status_code == 204
    assert client.get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    assert _medicines(world, client) == 404


@scenario
def limited_scope_diagnosis_scan(world: World) -> None:
    """The co-guardian at limited scope: no GET names Ada's condition, its department or clinic."""
    from portal.conditions import CONDITIONS
    from tests import care_data
    from tests.care import results_data

    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    appointment = care_data.appointment(
        world.ada,
        world.clinician,
        department=world.department,
        location="Diabetes clinic, 3rd floor",
        visit_type="Diabetes review",
        preparation="Bring the glucose meter",
    )
    plan = care_data.plan(world.ada, world.clinician)
    result = results_data.result(world.ada, world.clinician)
    summary = results_data.summary(world.ada, world.clinician)
    words = ["46635009", CONDITIONS["46635009"], "diabet", "glucose", world.department.name, care_data.INSULIN]

    def check(text: str) -> list[str]:
        return [word for word in words if word.lower() in text.lower()]

    client = world.client("co_guardian")
    ids = {
        "child_id": str(world.ada.pk),
        "appointment_id": str(appointment.pk),
        "plan_id": str(plan.pk),
        "thread_id": str(uuid.uuid4()),
        "attachment_id": str(uuid.uuid4()),
        "result_id": str(result.pk),
        "summary_id": str(summary.pk),
        "group_id": str(uuid.uuid4()),
        "token": _post(client, "/api/v1/me/calendar-feed", {"include_doses": True}).json()["url"].split("/")[-1][:-4],
    }
    found, walked = scan_gets(client, world.client("stranger"), ids, check)
    assert walked >= 30 and found == {}


GUARDIAN_ONLY = {
    ("POST", "/children/{child}/appointments/{appointment}/confirm"),
    ("POST", "/children/{child}/appointments/{appointment}/change-request"),
    ("POST", "/children/{child}/medications/{plan}/refills"),
    ("POST", "/children/{child}/coverage"),
}


@scenario
def guardian_only_actions_as_clinicians(world: World) -> None:
    """Confirm, change request, refill request and new insurance speak for the family: the matrix runs
    them with the care team and staff expecting 404 and a deny row (see ``GUARDIANS``)."""
    registered = {(e.method, e.path): e.allowed for e in ENDPOINTS}
    for route in GUARDIAN_ONLY:
        assert registered[route] == GUARDIANS, route
        assert_matrix(world, next(e for e in ENDPOINTS if (e.method, e.path) == route))


@scenario
def results_hidden_while_held_confidential_or_limited(world: World) -> None:
    """Results a guardian may not read answer like missing ones (404, audited) and leave the list:
    held until released, adolescent-confidential, or read at limited scope; released ones appear."""
    from portal.models import AuditEvent
    from tests.care import results_data

    held = results_data.result(world.ada, world.clinician, category="genetic", name="Held CANARYLAB")
    held.hold_until, held.released_at = held.recorded_at + timedelta(hours=72), None
    held.save(update_fields=["hold_until", "released_at"])
    secret = results_data.result(world.ada, world.clinician, confidential=True, name="Confidential CANARYLAB")
    shown = results_data.result(world.ada, world.clinician)
    base = f"/api/v1/children/{world.ada.pk}/results"
    guardian = world.client("guardian")
    listed = [row["id"] for row in guardian.get(base).json()["items"]]
    assert listed == [str(shown.pk)]
    for hidden in (held, secret):
        denials = AuditEvent.objects.filter(action="deny", entity_type="Observation").count()
        refused = guardian.get(f"{base}/{hidden.pk}")
        assert refused.status_code == 404 and "CANARYLAB" not in refused.content.decode()
        assert AuditEvent.objects.filter(action="deny", entity_type="Observation").count() == denials + 1
    clinician = world.client("clinician")
    assert {row["id"] for row in clinician.get(base).json()["items"]} == {str(held.pk), str(secret.pk), str(shown.pk)}
    assert _post(clinician, f"{base}/{held.pk}/release").json()["released"] is True
    assert guardian.get(f"{base}/{held.pk}").status_code == 200
    # At limited scope the family reads no result at all: the child answers 404 (and is audited).
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    limited = world.client("co_guardian")
    for url in (base, f"{base}/{shown.pk}", f"/api/v1/children/{world.ada.pk}/visit-summaries"):
        assert limited.get(url).status_code == 404
