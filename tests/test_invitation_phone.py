"""Invitations bound to a phone number (the EHR lists no email address): only an account whose
*verified* phone is that number redeems them; every refusal is explained by its code, audited and
counted against the redemption rate. Email-bound invitations are unchanged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from interop.context import import_actor
from portal import services
from portal.errors import ApiError
from portal.models import AuditEvent, GuardianLink, Invitation, User
from tests.conftest import World, make_user

NUMBER = "+13125550142"


def issue(world: World, phone: str = "(312) 555-0142", **extra: Any) -> tuple[Invitation, str]:
    return services.invitation_create_for_system(
        actor=import_actor(),
        child=world.ben,
        relationship="mother",
        recipient_phone=phone,
        reason="ehr_import",
        **extra,
    )


def redeem(client: Client, code: str) -> Any:
    return client.post("/api/v1/invitations/redeem", data=json.dumps({"code": code}), content_type="application/json")


def with_phone(user: User, phone: str = NUMBER, *, verified: bool = True) -> User:
    user.phone = phone
    user.phone_verified_at = timezone.now() if verified else None
    user.save(update_fields=["phone", "phone_verified_at"])
    return user


def test_the_number_is_normalised_and_only_one_recipient_is_kept(world: World) -> None:
    invitation, _ = issue(world)
    assert (invitation.recipient_phone, invitation.recipient_email) == (NUMBER, "")
    both, _ = issue(world, recipient_email="Mum@Families.example")
    assert (both.recipient_email, both.recipient_phone) == ("mum@families.example", "")


@pytest.mark.parametrize(("email", "phone", "code"), [("", "", "no_recipient"), ("", "12", "invalid_phone")])
def test_an_invitation_needs_a_usable_recipient(world: World, email: str, phone: str, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        services.invitation_create_for_system(
            actor=import_actor(),
            child=world.ben,
            relationship="mother",
            reason="ehr_import",
            recipient_email=email,
            recipient_phone=phone,
        )
    assert refused.value.code == code
    assert not Invitation.objects.exists() and not GuardianLink.objects.filter(child=world.ben, status="invited")


def test_the_account_with_the_verified_number_redeems(world: World) -> None:
    invitation, code = issue(world)
    mum = with_phone(make_user("mum@families.example", "Mona Mum"))
    answer = redeem(Client(headers={"X-Session-Token": _token(mum)}), code)
    assert answer.status_code == 201
    link = GuardianLink.objects.get(pk=invitation.link_id)
    assert (link.guardian, link.status) == (mum, GuardianLink.Status.ACTIVE)
    assert AuditEvent.objects.filter(actor_id=mum.pk, reason="invitation_redeemed", child_id=world.ben.pk).exists()


def _token(user: User) -> str:
    browser = Client()
    browser.force_login(user)
    return str(browser.session.session_key)


@pytest.mark.parametrize(
    ("phone", "verified", "code", "reason"),
    [
        ("", False, "invitation_phone_not_verified", "phone_not_verified"),
        (NUMBER, False, "invitation_phone_not_verified", "phone_not_verified"),
        ("+16175550100", True, "invitation_wrong_recipient", "wrong_recipient"),
    ],
)
def test_without_the_verified_number_it_is_refused(
    world: World, phone: str, verified: bool, code: str, reason: str
) -> None:
    invitation, invitation_code = issue(world)
    person = with_phone(make_user("someone@families.example", "Sol Someone"), phone, verified=verified)
    answer = redeem(Client(headers={"X-Session-Token": _token(person)}), invitation_code)
    assert answer.status_code == 403
    body = answer.json()
    assert body["code"] == code and "phone" in body["message"]
    assert NUMBER not in body["message"] and "0142" not in body["message"]
    link = GuardianLink.objects.get(pk=invitation.link_id)
    assert (link.guardian, link.status) == (None, GuardianLink.Status.INVITED)
    row = AuditEvent.objects.get(actor_id=person.pk, outcome="failure")
    assert (row.entity_type, row.entity_id, row.reason) == ("Invitation", str(invitation.pk), reason)


@pytest.mark.parametrize(
    "persona", ["guardian", "other_guardian", "revoked_guardian", "clinician", "stranger", "admin"]
)
def test_no_persona_redeems_a_phone_invitation_without_that_number(world: World, persona: str) -> None:
    _, code = issue(world)
    answer = redeem(world.client(persona), code)
    assert answer.status_code == 403
    assert "Ben" not in answer.content.decode() and str(world.ben.pk) not in answer.content.decode()


def test_an_email_invitation_is_not_redeemed_by_a_phone(world: World) -> None:
    _, code = services.invitation_create_for_system(
        actor=import_actor(),
        child=world.ben,
        relationship="father",
        recipient_email="dad@families.example",
        reason="ehr_import",
    )
    person = with_phone(make_user("phone.only@families.example", "Pat Phone"))
    answer = redeem(Client(headers={"X-Session-Token": _token(person)}), code)
    assert answer.status_code == 403 and answer.json()["code"] == "invitation_wrong_recipient"
    assert "email" in answer.json()["message"]


def test_expired_and_used_phone_invitations(world: World) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _, code = issue(world, expires_in_hours=1)
    mum = with_phone(make_user("mum@families.example", "Mona Mum"))
    client = Client(headers={"X-Session-Token": _token(mum)})
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        assert redeem(client, code).json()["code"] == "invitation_expired"
    with time_machine.travel(start, tick=False):
        _, fresh = issue(world)
        assert redeem(client, fresh).status_code == 201
        assert redeem(client, fresh).json()["code"] == "invitation_used"


def test_attempts_are_rate_limited(world: World, settings) -> None:
    settings.PORTAL_INVITATION_REDEEM_RATE = "3/m"
    _, code = issue(world)
    client = world.client("stranger")
    with time_machine.travel(timezone.now(), tick=False):
        statuses = [redeem(client, code).status_code for _ in range(4)]
    assert statuses == [403, 403, 403, 429]


def test_the_breach_report_checks_the_verified_number(world: World) -> None:
    invitation, code = issue(world)
    mum = with_phone(make_user("mum@families.example", "Mona Mum"))
    services.invitation_redeem(actor=mum, code=code)
    assert [b.link_id for b in services.link_breaches()] == []
    # The number changes after redemption (never through the services, which unverify it): reported.
    User.objects.filter(pk=mum.pk).update(phone="+16175550100")
    [breach] = services.link_breaches()
    assert (breach.link_id, breach.reasons) == (invitation.link_id, ("recipient_not_verified",))
