"""``invitation_create_for_system``: what the EHR import invites families with. Not held to a
person's create rate, but only for a system account, and recipient-bound and audited like any other."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress

from interop.context import import_actor
from portal import services
from portal.errors import ApiError
from portal.models import AuditEvent, GuardianLink, Invitation
from tests.conftest import World, make_user


def test_a_system_account_invites_past_the_per_person_rate(world: World, settings) -> None:
    settings.PORTAL_INVITATION_CREATE_RATE = "2/h"
    system = import_actor()
    made = [
        services.invitation_create_for_system(
            actor=system,
            child=world.ben,
            relationship="mother",
            recipient_email=f"Parent{n}@Families.example ",
            reason="ehr_import",
        )
        for n in range(4)
    ]
    assert len({code for _, code in made}) == 4
    invitations = Invitation.objects.filter(created_by=system).order_by("recipient_email")
    assert [i.recipient_email for i in invitations] == [f"parent{n}@families.example" for n in range(4)]
    assert all(i.link.status == GuardianLink.Status.INVITED and i.link.granted_by == system for i in invitations)
    audits = AuditEvent.objects.filter(actor_id=system.pk, entity_type="Invitation", action="create")
    assert sorted(audits.values_list("reason", flat=True)) == ["ehr_import"] * 4
    assert {a.child_id for a in audits} == {world.ben.pk}
    # Only the hash of each code is kept.
    assert not any(code in i.code_hash for (_, code), i in zip(made, invitations, strict=True))


@pytest.mark.parametrize("persona", ["admin", "clinician", "guardian"])
def test_a_person_cannot_issue_system_invitations(world: World, persona: str) -> None:
    with pytest.raises(ApiError) as refused:
        services.invitation_create_for_system(
            actor=world.users[persona],
            child=world.ada,
            relationship="other",
            recipient_email="someone@families.example",
            reason="ehr_import",
        )
    assert refused.value.code == "not_a_system_account"
    assert not Invitation.objects.exists()


def test_a_system_invitation_is_bound_to_its_recipient(world: World) -> None:
    invitation, code = services.invitation_create_for_system(
        actor=import_actor(),
        child=world.ben,
        relationship="father",
        recipient_email="dad@families.example",
        reason="ehr_import",
    )
    with pytest.raises(ApiError) as refused:
        services.invitation_redeem(actor=world.stranger, code=code)
    assert refused.value.code == "invitation_wrong_recipient"
    dad = make_user("dad@families.example", "Dan Dad")
    EmailAddress.objects.filter(user=dad).update(verified=True)
    if not EmailAddress.objects.filter(user=dad, verified=True).exists():
        EmailAddress.objects.create(user=dad, email="dad@families.example", verified=True, primary=True)
    link = services.invitation_redeem(actor=dad, code=code)
    assert (link.pk, link.guardian, link.status) == (invitation.link_id, dad, GuardianLink.Status.ACTIVE)
