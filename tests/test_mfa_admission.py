"""The MFA requirement is settled once per session and forgotten in every session of the account when
its authenticators or roles change: the next call asks the database again, and a clinician who loses
their second factor is refused at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.backends.cached_db import SessionStore
from django.test import Client
from django.utils import timezone

from portal import access, admission
from portal.models import CareTeamMembership, DepartmentMembership, User
from tests.conftest import World, app_client, enrol_mfa

MOMENT = datetime(2027, 3, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The accounts whose requirement was asked of the database, in order."""
    calls: list[str] = []
    real = access.requires_mfa

    def counting(user: Any) -> bool:
        calls.append(str(user.pk))
        return real(user)

    monkeypatch.setattr(admission, "requires_mfa", counting)
    return calls


def _status(client: Client) -> int:
    return client.get("/api/v1/children").status_code


def _code(client: Client) -> str:
    return str(client.get("/api/v1/children").json().get("code", ""))


def _token(client: Client) -> str:
    return str(client.defaults["HTTP_X_SESSION_TOKEN"])


def test_the_answer_is_settled_once_per_session(world: World, asked: list[str]) -> None:
    clinician, guardian = world.client("clinician"), world.client("guardian")
    for _ in range(3):
        assert _status(clinician) == 200 and _status(guardian) == 200
    assert asked == [str(world.clinician.pk), str(world.guardian.pk)]
    stored = SessionStore(session_key=_token(clinician))[admission.MFA_KEY]
    assert stored["required"] is True and stored["enrolled"] is True


def test_removing_the_authenticator_refuses_the_clinician_at_once(world: World, asked: list[str]) -> None:
    client = world.client("clinician")
    assert _status(client) == 200
    Authenticator.objects.filter(user=world.clinician, type=Authenticator.Type.TOTP).delete()
    assert _code(client) == "mfa_required"
    assert asked == [str(world.clinician.pk)] * 2


def test_adding_an_authenticator_is_noticed_on_the_next_call(world: World, asked: list[str]) -> None:
    Authenticator.objects.filter(user=world.clinician).delete()
    client = world.client("clinician")
    assert _code(client) == "mfa_required"
    assert _code(client) == "mfa_required"
    assert len(asked) == 1  # the refusal is settled too
    enrol_mfa(world.clinician)
    assert _status(client) == 200
    assert len(asked) == 2


def _group_with_permission(name: str, codename: str, member: User) -> None:
    group = Group.objects.create(name=name)
    group.permissions.add(Permission.objects.get(codename=codename))
    member.groups.add(group)


@pytest.mark.parametrize(
    "make_staff",
    [
        lambda world, user: DepartmentMembership.objects.create(
            department=world.department, clinician=user, role="nurse"
        ),
        lambda world, user: CareTeamMembership.objects.create(
            child=world.ben, clinician=user, department=world.department, role="nurse", start=timezone.now()
        ),
        lambda world, user: user.user_permissions.add(Permission.objects.get(codename="view_metrics")),
        lambda world, user: Permission.objects.get(codename="manage_portal").user_set.add(user),
        lambda world, user: _group_with_permission("managers", "manage_portal", user),
    ],
    ids=["department", "care_team", "permission", "permission_reverse", "group"],
)
def test_a_guardian_given_a_staff_role_must_enrol_first(
    world: World, make_staff: Callable[[World, User], Any], asked: list[str]
) -> None:
    client = world.client("guardian")
    assert _status(client) == 200
    make_staff(world, world.guardian)
    assert _code(client) == "mfa_required"
    assert len(asked) == 2


def test_a_group_gaining_a_permission_reaches_its_members(world: World) -> None:
    group = Group.objects.create(name="analysts")
    world.guardian.groups.add(group)
    client = world.client("guardian")
    assert _status(client) == 200
    group.permissions.add(Permission.objects.get(codename="view_metrics"))
    assert _code(client) == "mfa_required"


def test_made_staff_on_the_user_row_is_read_live(world: World) -> None:
    client = world.client("guardian")
    assert _status(client) == 200
    User.objects.filter(pk=world.guardian.pk).update(is_staff=True)  # no signal: the row itself decides
    assert _code(client) == "mfa_required"


def test_every_session_of_the_account_forgets(world: World) -> None:
    phone, browser = app_client(world.clinician), Client()
    browser.force_login(world.clinician)
    assert _status(phone) == 200 and browser.get("/api/v1/children").status_code == 200
    Authenticator.objects.filter(user=world.clinician).delete()
    assert _code(phone) == "mfa_required"
    assert browser.get("/api/v1/children").json()["code"] == "mfa_required"


def test_a_stored_answer_is_trusted_for_a_bounded_time(world: World, asked: list[str], settings: Any) -> None:
    settings.PORTAL_MFA_RECHECK_SECONDS = 60
    with time_machine.travel(MOMENT, tick=False):
        client = world.client("clinician")
        assert _status(client) == 200
    with time_machine.travel(MOMENT + timedelta(seconds=59), tick=False):
        assert _status(client) == 200
    assert len(asked) == 1
    with time_machine.travel(MOMENT + timedelta(seconds=61), tick=False):
        assert _status(client) == 200
    assert len(asked) == 2


def test_an_answer_stored_for_another_account_is_ignored(world: World, asked: list[str]) -> None:
    client = world.client("clinician")
    session = SessionStore(session_key=_token(client))
    session[admission.MFA_KEY] = {"user": str(world.guardian.pk), "required": False, "enrolled": False, "at": 0}
    session.save()
    Authenticator.objects.filter(user=world.clinician).delete()
    assert _code(client) == "mfa_required"


def test_a_client_without_an_address_is_answered_and_asked_every_time(world: World, asked: list[str]) -> None:
    # allauth will not list a session whose client address it cannot tell; the call is still answered
    # (not a server error) and the requirement is asked of the database on every call instead.
    client = Client(headers={"X-Session-Token": _token(world.client("guardian"))}, REMOTE_ADDR="")
    for _ in range(2):
        assert client.get("/api/v1/children").status_code == 200
    assert asked == [str(world.guardian.pk)] * 2
