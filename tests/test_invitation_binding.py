"""Invitations are bound to their recipient; staff cannot make themselves guardians.

An invitation names the email address it was sent to and only an account that has verified that
address may redeem it; its creator never may; an account with any staff role gets a link that waits
for a second staff member (with ``manage_portal``, not the holder and not the invitation's creator) to
approve it. ``manage_portal`` never reads clinical content.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from portal.models import AuditEvent, CareTeamMembership, DepartmentMembership, GuardianLink, Invitation, User
from tests import care_data
from tests.conftest import World, app_client, enrol_mfa, make_user


def post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def invite(world: World, persona: str, email: str, **body: Any) -> Any:
    return post(
        world.client(persona),
        f"/api/v1/children/{world.ada.pk}/invitations",
        {"relationship": "other", "scope": "full", "recipient_email": email, **body},
    )


def redeem(client: Client, code: str) -> Any:
    return post(client, "/api/v1/invitations/redeem", {"code": code})


def medications(world: World, client: Client) -> int:
    care_data.plan(world.ada, world.clinician) if not world.ada.medication_plans.exists() else None
    return int(client.get(f"/api/v1/children/{world.ada.pk}/medications").status_code)


def second_admin() -> tuple[User, Client]:
    user = make_user("admin2@example.org", "Adrian Second", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_portal"))
    enrol_mfa(user)
    return user, app_client(user)


def test_an_invitation_must_name_its_recipient(world: World) -> None:
    response = post(world.client("admin"), f"/api/v1/children/{world.ada.pk}/invitations", {"relationship": "other"})
    assert response.status_code == 422
    bad = invite(world, "admin", "not an address")
    assert bad.status_code == 422
    assert not Invitation.objects.exists()


def test_staff_self_invitation_is_refused(world: World) -> None:
    """The probe's path: an administrator invites herself and reads the child's medicines."""
    response = invite(world, "admin", world.admin.email.upper())
    assert response.status_code == 422 and response.json()["code"] == "invitation_to_self"
    assert medications(world, world.client("admin")) == 404


def test_the_creator_can_never_redeem(world: World) -> None:
    created = invite(world, "admin", "second.address@example.org")
    assert created.status_code == 201, created.content
    assert created.json()["recipient_email"] == "second.address@example.org"
    # The creator later verifies that address on her own account: still not hers to redeem.
    EmailAddress.objects.create(user=world.admin, email="second.address@example.org", verified=True)
    response = redeem(world.client("admin"), created.json()["code"])
    assert response.status_code == 403 and response.json()["code"] == "invitation_own"
    assert AuditEvent.objects.filter(reason="own_invitation", outcome="failure").exists()
    assert not GuardianLink.objects.filter(guardian=world.admin).exists()
    assert medications(world, world.client("admin")) == 404


def test_only_the_verified_recipient_may_redeem(world: World) -> None:
    created = invite(world, "clinician", "Nora.New@Example.org")
    assert created.status_code == 201
    code = created.json()["code"]
    # Someone else who got hold of the code.
    refused = redeem(world.client("stranger"), code)
    assert refused.status_code == 403 and refused.json()["code"] == "invitation_wrong_recipient"
    assert "nora" not in refused.content.decode().lower()
    # The address on the account, but not verified.
    unverified = User.objects.create_user("nora.new@example.org", "pw-unverified-123", display_name="Nora New")
    EmailAddress.objects.create(user=unverified, email="nora.new@example.org", verified=False, primary=True)
    assert redeem(app_client(unverified), code).status_code == 403
    EmailAddress.objects.filter(user=unverified).update(verified=True)
    accepted = redeem(app_client(unverified), code)
    assert accepted.status_code == 201 and accepted.json()["status"] == "active"
    assert Invitation.objects.get(pk=created.json()["id"]).redeemed_by == unverified


def test_a_staff_account_waits_for_a_second_staff_member(world: World) -> None:
    """Staff who are also parents exist: their link is a visible, audited two-person step."""
    world.other_clinician.user_permissions.add(Permission.objects.get(codename="manage_portal"))
    created = invite(world, "admin", world.other_clinician.email)
    assert created.status_code == 201
    other = world.client("other_clinician")
    redeemed = redeem(other, created.json()["code"])
    assert redeemed.status_code == 201, redeemed.content
    assert redeemed.json()["status"] == "pending_approval"
    link_id = redeemed.json()["id"]
    assert other.get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    # The waiting link is visible to manage_portal, with its holder and the invitation's creator.
    queue = world.client("admin").get("/api/v1/guardian-links/pending-approval")
    assert queue.status_code == 200
    assert [(row["id"], row["guardian_id"], row["invited_by_id"]) for row in queue.json()["items"]] == [
        (link_id, str(world.other_clinician.pk), str(world.admin.pk))
    ]
    assert "Canary" not in queue.content.decode()
    for persona in ("guardian", "clinician", "stranger"):
        denials = AuditEvent.objects.filter(action="deny").count()
        assert world.client(persona).get("/api/v1/guardian-links/pending-approval").status_code == 404, persona
        assert AuditEvent.objects.filter(action="deny").count() == denials + 1
    # A second invitation while the first waits is a conflict, not a second waiting link.
    second = redeem(other, invite(world, "clinician", world.other_clinician.email).json()["code"])
    assert second.status_code == 409 and second.json()["code"] == "already_linked"
    approve_url = f"/api/v1/children/{world.ada.pk}/guardian-links/{link_id}/approve"
    # Neither the invitation's creator nor the holder may approve it.
    by_creator = post(world.client("admin"), approve_url)
    assert by_creator.status_code == 403 and by_creator.json()["code"] == "second_person_required"
    by_holder = post(other, approve_url)  # the holder has manage_portal too
    assert by_holder.status_code == 403 and by_holder.json()["code"] == "second_person_required"
    assert AuditEvent.objects.filter(entity_id=link_id, reason="second_person_required").count() == 2
    # A care-team clinician without manage_portal may not approve either.
    assert post(world.client("clinician"), approve_url).status_code == 404
    assert GuardianLink.objects.get(pk=link_id).status == "pending_approval"
    _, approver = second_admin()
    approved = post(approver, approve_url)
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "active" and approved.json()["approved_at"]
    assert AuditEvent.objects.filter(entity_id=link_id, reason="staff_link_approved").exists()
    assert other.get(f"/api/v1/children/{world.ada.pk}").status_code == 200
    assert world.client("admin").get("/api/v1/guardian-links/pending-approval").json()["items"] == []
    again = post(approver, approve_url)
    assert again.status_code == 409


def test_clinician_after_removal_keeps_no_access(world: World) -> None:
    """nurse.lee's path: invite herself, be removed from the care team, keep reading as a 'guardian'."""
    nurse = make_user("nurse@example.org", "Nina Nurse")
    enrol_mfa(nurse)
    DepartmentMembership.objects.create(department=world.department, clinician=nurse, role="nurse")
    membership = CareTeamMembership.objects.create(child=world.ada, clinician=nurse, role="nurse")
    client = app_client(nurse)
    assert invite_as(client, world, nurse.email).status_code == 422
    # A colleague's invitation for her: she is staff, so it waits for a second staff member.
    created = invite(world, "clinician", nurse.email)
    assert redeem(client, created.json()["code"]).json()["status"] == "pending_approval"
    ended = client.delete(f"/api/v1/children/{world.ada.pk}/care-team/{membership.pk}")
    assert ended.status_code == 204
    assert client.get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    assert medications(world, client) == 404


def invite_as(client: Client, world: World, email: str) -> Any:
    return post(
        client,
        f"/api/v1/children/{world.ada.pk}/invitations",
        {"relationship": "other", "recipient_email": email},
    )


def test_breach_report_names_links_against_the_rules(world: World) -> None:
    # A link its own creator took up, and a staff member's link nobody approved (made as on the old code).
    link = GuardianLink.objects.create(
        child=world.ada, guardian=world.admin, relationship="other", status="active", granted_by=world.admin
    )
    Invitation.objects.create(
        link=link,
        code_hash="x" * 64,
        created_by=world.admin,
        expires_at=link.granted_at,
        redeemed_by=world.admin,
        redeemed_at=link.granted_at,
    )
    nurse_link = GuardianLink.objects.create(
        child=world.ben, guardian=world.clinician, relationship="mother", status="active", granted_by=world.admin
    )
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("guardian_link_report", stdout=out)
    report = out.getvalue()
    assert f"{link.pk}" in report and "redeemed_by_creator" in report and "staff_unapproved" in report
    assert f"{nurse_link.pk}" in report
    assert f"{world.links['guardian'].pk}" not in report
    assert "Canary" not in report and "@" not in report
    # --suspend sends the staff links back to the two-person step, audited.
    call_command("guardian_link_report", "--suspend", stdout=io.StringIO())
    assert GuardianLink.objects.get(pk=nurse_link.pk).status == "pending_approval"
    assert AuditEvent.objects.filter(entity_id=str(nurse_link.pk), reason="suspended_for_approval").exists()
    assert world.client("clinician").get(f"/api/v1/children/{world.ben.pk}").status_code == 404


def test_breach_report_is_quiet_when_all_is_well(world: World) -> None:
    out = io.StringIO()
    call_command("guardian_link_report", stdout=out)
    assert "0 links" in out.getvalue()


def test_staff_decline_a_waiting_link(world: World) -> None:
    created = invite(world, "admin", world.other_clinician.email)
    link_id = redeem(world.client("other_clinician"), created.json()["code"]).json()["id"]
    declined = post(world.client("clinician"), f"/api/v1/children/{world.ada.pk}/guardian-links/{link_id}/revoke")
    assert declined.status_code == 200 and declined.json()["status"] == "revoked"
    _, approver = second_admin()
    late = post(approver, f"/api/v1/children/{world.ada.pk}/guardian-links/{link_id}/approve")
    assert late.status_code == 409 and late.json()["code"] == "not_pending_approval"
    assert world.client("other_clinician").get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    assert approver.get("/api/v1/guardian-links/pending-approval").json()["items"] == []
