"""Invitations: staff create single-use, expiring codes; guardians redeem them; staff revoke links."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import time_machine
from django.test import Client
from django.utils import timezone

from portal.models import AuditEvent, GuardianLink, Invitation
from tests.conftest import ADA_NAME, World, app_client, make_user


def post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def invite(world: World, persona: str = "clinician", **body: Any) -> dict[str, Any]:
    response = post(
        world.client(persona),
        f"/api/v1/children/{world.ada.pk}/invitations",
        {"relationship": "legal_guardian", "recipient_email": "stranger@example.org", **body},
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_invite_redeem_and_see_the_child(world: World) -> None:
    created = invite(world, recipient_email="newguardian@example.org")
    assert len(created["code"]) == 14
    stored = Invitation.objects.get(pk=created["id"])
    assert created["code"] not in json.dumps([stored.code_hash, str(stored.pk)])
    newcomer = app_client(make_user("newguardian@example.org", "Nora New"))
    assert newcomer.get("/api/v1/children").json()["items"] == []
    redeemed = post(newcomer, "/api/v1/invitations/redeem", {"code": created["code"].lower().replace("-", " ")})
    assert redeemed.status_code == 201, redeemed.content
    assert redeemed.json()["status"] == "active"
    assert [c["name"] for c in newcomer.get("/api/v1/children").json()["items"]] == [ADA_NAME]
    # Split custody: the first two guardians keep their own links.
    assert world.client("guardian").get(f"/api/v1/children/{world.ada.pk}").status_code == 200
    assert world.client("co_guardian").get(f"/api/v1/children/{world.ada.pk}").status_code == 200


def test_used_code_is_refused_and_grants_nothing(world: World) -> None:
    code = invite(world)["code"]
    assert post(world.client("stranger"), "/api/v1/invitations/redeem", {"code": code}).status_code == 201
    late = app_client(make_user("late@example.org", "Late Comer"))
    response = post(late, "/api/v1/invitations/redeem", {"code": code})
    assert response.status_code == 409 and response.json()["code"] == "invitation_used"
    assert late.get("/api/v1/children").json()["items"] == []


def test_expired_code_is_refused_and_grants_nothing(world: World) -> None:
    code = invite(world, expires_in_hours=1)["code"]
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        response = post(world.client("stranger"), "/api/v1/invitations/redeem", {"code": code})
        assert response.status_code == 410 and response.json()["code"] == "invitation_expired"
        assert world.client("stranger").get("/api/v1/children").json()["items"] == []


def test_unknown_code_is_refused(world: World) -> None:
    response = post(world.client("stranger"), "/api/v1/invitations/redeem", {"code": "ZZZZ-ZZZZ-ZZZZ"})
    assert response.status_code == 404
    assert response.json()["code"] == "invitation_not_found"
    assert AuditEvent.objects.filter(reason="unknown_code", outcome="failure").exists()


def test_withdrawn_invitation_cannot_be_redeemed(world: World) -> None:
    created = invite(world)
    link_id = Invitation.objects.get(pk=created["id"]).link_id
    revoked = post(world.client("clinician"), f"/api/v1/children/{world.ada.pk}/guardian-links/{link_id}/revoke")
    assert revoked.status_code == 200
    response = post(world.client("stranger"), "/api/v1/invitations/redeem", {"code": created["code"]})
    assert response.status_code == 409


def test_twenty_wrong_codes_in_a_minute_are_rate_limited(world: World) -> None:
    client = world.client("stranger")
    code = invite(world)["code"]
    with time_machine.travel(timezone.now(), tick=False):  # one instant: one rate-limit window
        statuses = [
            post(client, "/api/v1/invitations/redeem", {"code": f"WRNG-CODE-{i:04d}"}).status_code for i in range(20)
        ]
        # Even the right code is refused while limited: guessing cannot continue.
        limited = post(client, "/api/v1/invitations/redeem", {"code": code})
    assert statuses[:10] == [404] * 10
    assert set(statuses[10:]) == {429}
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert client.get("/api/v1/children").json()["items"] == []
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert post(client, "/api/v1/invitations/redeem", {"code": code}).status_code == 201


def test_already_linked_guardian_gets_conflict(world: World) -> None:
    code = invite(world, recipient_email="guardian@example.org")["code"]
    response = post(world.client("guardian"), "/api/v1/invitations/redeem", {"code": code})
    assert response.status_code == 409 and response.json()["code"] == "already_linked"


def test_revoking_a_link_ends_access(world: World) -> None:
    link = world.links["co_guardian"]
    response = post(world.client("clinician"), f"/api/v1/children/{world.ada.pk}/guardian-links/{link.pk}/revoke")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert world.client("co_guardian").get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    assert world.client("co_guardian").get("/api/v1/children").json()["items"] == []
    again = post(world.client("clinician"), f"/api/v1/children/{world.ada.pk}/guardian-links/{link.pk}/revoke")
    assert again.status_code == 409


def test_staff_list_links_and_record_exception(world: World) -> None:
    links = world.client("admin").get(f"/api/v1/children/{world.ada.pk}/guardian-links").json()["items"]
    assert {link["status"] for link in links} == {"active", "revoked"}
    link = world.links["guardian"]
    response = world.client("admin").patch(
        f"/api/v1/children/{world.ada.pk}/guardian-links/{link.pk}",
        data=json.dumps({"adolescent_exception": True}),
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["adolescent_exception"] is True
    empty = world.client("admin").patch(
        f"/api/v1/children/{world.ada.pk}/guardian-links/{link.pk}", data="{}", content_type="application/json"
    )
    assert empty.status_code == 422 and empty.json()["code"] == "no_changes"


def test_care_team_add_and_end(world: World) -> None:
    from portal.models import DepartmentMembership

    nurse = make_user("nurse@example.org", "Nina Nurse")
    DepartmentMembership.objects.create(department=world.department, clinician=nurse, role="nurse")
    added = post(
        world.client("clinician"),
        f"/api/v1/children/{world.ada.pk}/care-team",
        {"clinician_id": str(nurse.pk), "role": "nurse"},
    )
    assert added.status_code == 201
    team = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/care-team").json()["items"]
    assert {member["clinician_name"] for member in team} == {"Dr. Cleo Clinician", "Nina Nurse"}
    not_clinician = post(
        world.client("clinician"),
        f"/api/v1/children/{world.ada.pk}/care-team",
        {"clinician_id": str(world.stranger.pk), "role": "nurse"},
    )
    assert not_clinician.status_code == 422 and not_clinician.json()["code"] == "not_a_clinician"
    ended = world.client("clinician").delete(f"/api/v1/children/{world.ada.pk}/care-team/{added.json()['id']}")
    assert ended.status_code == 204
    team = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/care-team").json()["items"]
    assert {member["clinician_name"] for member in team} == {"Dr. Cleo Clinician"}


def test_invited_link_is_not_access(world: World) -> None:
    invite(world)
    assert GuardianLink.objects.filter(status="invited", guardian__isnull=True).count() == 1
    assert world.client("stranger").get(f"/api/v1/children/{world.ada.pk}").status_code == 404
