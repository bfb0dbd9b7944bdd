"""The account pages of the web app: redeem an invitation (and why it is refused), verify a phone
number by a texted code, see and end one's sessions. Each is the account's own: no persona reaches
another's invitation, number or session, and no page shows a child's data to a refused account."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from allauth.usersessions.models import UserSession
from django.test import Client
from django.utils import timezone

from interop.context import import_actor
from messaging.sms import LocmemSmsBackend
from portal import services
from portal.crypto import keyring
from portal.models import AuditEvent, GuardianLink, Invitation, User
from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import World

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
NUMBER = "+13125550142"


@pytest.fixture(autouse=True)
def clock() -> Any:
    LocmemSmsBackend.outbox.clear()
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def browser(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def invite_by_phone(world: World, phone: str = NUMBER, hours: int = 72) -> tuple[Invitation, str]:
    return services.invitation_create_for_system(
        actor=import_actor(),
        child=world.ada,
        relationship="mother",
        recipient_phone=phone,
        reason="ehr_import",
        expires_in_hours=hours,
    )


def verified(user: User, phone: str = NUMBER) -> User:
    user.phone, user.phone_verified_at = phone, timezone.now()
    user.save(update_fields=["phone", "phone_verified_at"])
    return user


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert ADA_NAME not in body and ADA_MRN not in body


# -- redeem an invitation -------------------------------------------------------------------------


def test_the_recipient_with_the_verified_number_redeems(world: World) -> None:
    invitation, code = invite_by_phone(world)
    client = browser(world, "stranger")
    verified(world.stranger)
    page = client.get("/account/invitation/")
    assert page.status_code == 200 and 'name="code"' in page.content.decode()
    assert_private(page)
    answer = client.post("/account/invitation/", {"code": code.lower().replace("-", " ")})
    assert answer.status_code == 302
    link = GuardianLink.objects.get(pk=invitation.link_id)
    assert (link.guardian, link.status) == (world.stranger, GuardianLink.Status.ACTIVE)
    assert ADA_NAME in client.get(answer["Location"], follow=True).content.decode()


def test_an_unverified_number_is_told_to_verify_it(world: World) -> None:
    _, code = invite_by_phone(world)
    world.stranger.phone = NUMBER
    world.stranger.save(update_fields=["phone"])
    answer = browser(world, "stranger").post("/account/invitation/", {"code": code})
    assert answer.status_code == 403
    body = answer.content.decode()
    assert "verify the phone number it was sent to" in body and 'href="/account/phone/"' in body
    assert_private(answer)


def test_an_expired_invitation_says_so(world: World, clock: Any) -> None:
    _, code = invite_by_phone(world, hours=1)
    verified(world.stranger)
    clock.shift(timedelta(hours=2))
    answer = browser(world, "stranger").post("/account/invitation/", {"code": code})
    assert answer.status_code == 410 and "has expired" in answer.content.decode()


def test_a_refusal_in_spanish(world: World) -> None:
    _, code = invite_by_phone(world)
    world.stranger.preferred_language = "es"
    world.stranger.save(update_fields=["preferred_language"])
    answer = browser(world, "stranger").post("/account/invitation/", {"code": code})
    assert "Agregue y verifique el número de teléfono" in answer.content.decode()


def test_an_empty_code_is_a_form_error(world: World) -> None:
    answer = browser(world, "guardian").post("/account/invitation/", {"code": ""})
    assert answer.status_code == 400 and "Enter the invitation code." in answer.content.decode()


@pytest.mark.parametrize("persona", ["other_guardian", "revoked_guardian", "clinician", "stranger"])
@pytest.mark.parametrize("phone", ["", "+16175550100"])
def test_other_personas_are_refused_without_phi_and_audited(world: World, persona: str, phone: str) -> None:
    invitation, code = invite_by_phone(world)
    if phone:
        verified(world.users[persona], phone)
    answer = browser(world, persona).post("/account/invitation/", {"code": code})
    assert answer.status_code == 403
    assert_private(answer)
    assert NUMBER not in answer.content.decode()
    link = GuardianLink.objects.get(pk=invitation.link_id)
    assert link.guardian is None and link.status == GuardianLink.Status.INVITED
    row = AuditEvent.objects.get(actor_id=world.users[persona].pk, outcome="failure", entity_type="Invitation")
    assert row.reason == ("wrong_recipient" if phone else "phone_not_verified")


def test_redeeming_is_rate_limited(world: World, settings: Any) -> None:
    settings.PORTAL_INVITATION_REDEEM_RATE = "2/m"
    client = browser(world, "stranger")
    statuses = [client.post("/account/invitation/", {"code": "AAAA-BBBB-CCCC"}).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]


# -- verify my phone ------------------------------------------------------------------------------


def _code() -> str:
    found = re.search(r"\b(\d{6})\b", LocmemSmsBackend.outbox[-1].body)
    assert found
    return found.group(1)


def test_a_guardian_verifies_a_phone(world: World, django_capture_on_commit_callbacks: Any) -> None:
    client = browser(world, "guardian")
    assert client.get("/account/phone/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/account/phone/", {"phone": "(312) 555-0142"})
    assert answer.status_code == 302 and answer["Location"] == "/account/phone/verify/"
    assert [t.to for t in LocmemSmsBackend.outbox] == [NUMBER]
    page = client.get("/account/phone/verify/")
    assert "+13125550142" in page.content.decode()
    assert_private(page)
    wrong = client.post("/account/phone/verify/", {"code": "000000" if _code() != "000000" else "111111"})
    assert wrong.status_code == 422 and "This code is not right" in wrong.content.decode()
    done = client.post("/account/phone/verify/", {"code": _code()})
    assert done.status_code == 302
    world.guardian.refresh_from_db()
    assert world.guardian.phone == NUMBER and world.guardian.phone_verified_at is not None
    assert "verified" in client.get("/account/phone/").content.decode()


def test_a_new_code_can_be_asked_for(world: World, django_capture_on_commit_callbacks: Any) -> None:
    client = browser(world, "guardian")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/account/phone/", {"phone": NUMBER})
        answer = client.post("/account/phone/code/")
    assert answer.status_code == 302 and len(LocmemSmsBackend.outbox) == 2
    assert client.post("/account/phone/verify/", {"code": _code()}).status_code == 302


def test_a_bad_number_is_refused_in_words(world: World) -> None:
    answer = browser(world, "guardian").post("/account/phone/", {"phone": "+1 555 010 0142"})
    assert answer.status_code == 400 and "not a valid phone number" in answer.content.decode()
    assert LocmemSmsBackend.outbox == []
    assert User.objects.get(pk=world.guardian.pk).phone == ""


def test_changing_the_number_asks_to_verify_it_again(world: World, django_capture_on_commit_callbacks: Any) -> None:
    verified(world.guardian)
    client = browser(world, "guardian")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/account/phone/", {"phone": "+16175550100"})
    world.guardian.refresh_from_db()
    assert world.guardian.phone == "+16175550100" and world.guardian.phone_verified_at is None
    assert "not verified" in client.get("/account/phone/").content.decode()


def test_another_accounts_code_verifies_nothing(world: World, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        browser(world, "guardian").post("/account/phone/", {"phone": NUMBER})
    code = _code()
    for persona in ("other_guardian", "revoked_guardian", "clinician", "stranger"):
        client = browser(world, persona)
        assert client.get("/account/phone/verify/").status_code == 302  # no number: back to the phone page
        assert client.post("/account/phone/verify/", {"code": code}).status_code == 302
        assert User.objects.get(pk=world.users[persona].pk).phone_verified_at is None
    assert User.objects.get(pk=world.guardian.pk).phone_verified_at is None


# -- my sessions ----------------------------------------------------------------------------------


def _tracked(client: Client) -> Client:
    client.get("/account/sessions/", REMOTE_ADDR="10.0.0.1", HTTP_USER_AGENT="Phone Browser")
    return client


def test_a_guardian_lists_and_ends_another_session(world: World) -> None:
    phone = _tracked(browser(world, "guardian"))
    desk = _tracked(browser(world, "guardian"))
    phone.get("/account/sessions/", HTTP_USER_AGENT="Phone Browser")
    page = desk.get("/account/sessions/", HTTP_USER_AGENT="Desk Browser")
    body = page.content.decode()
    assert page.status_code == 200 and "Phone Browser" in body and "Desk Browser" in body and "this device" in body
    assert_private(page)
    handles = re.findall(r'name="session" value="([0-9a-f]+)"', body)
    assert len(handles) == 1  # only the other session has a button
    assert str(phone.session.session_key) not in body and str(desk.session.session_key) not in body
    answer = desk.post("/account/sessions/end/", {"session": handles[0]})
    assert answer.status_code == 302
    assert phone.get("/account/sessions/").status_code == 302  # signed out: sent to sign in
    assert desk.get("/account/sessions/").status_code == 200
    assert AuditEvent.objects.filter(actor_id=world.guardian.pk, reason="ended_from_another_session").count() == 1


def test_sign_out_all_other_sessions(world: World) -> None:
    others = [_tracked(browser(world, "guardian")) for _ in range(2)]
    mine = _tracked(browser(world, "guardian"))
    bystander = _tracked(browser(world, "co_guardian"))
    assert mine.post("/account/sessions/end/").status_code == 302
    assert all(c.get("/account/sessions/").status_code == 302 for c in others)
    assert mine.get("/account/sessions/").status_code == 200
    assert bystander.get("/account/sessions/").status_code == 200
    assert UserSession.objects.filter(user=world.guardian).count() == 1


@pytest.mark.parametrize("persona", ["co_guardian", "other_guardian", "revoked_guardian", "clinician", "stranger"])
def test_no_persona_sees_or_ends_anothers_session(world: World, persona: str) -> None:
    victim = _tracked(browser(world, "guardian"))
    own = _tracked(browser(world, "guardian"))
    handle = re.findall(r'name="session" value="([0-9a-f]+)"', own.get("/account/sessions/").content.decode())[0]
    attacker = _tracked(browser(world, persona))
    page = attacker.get("/account/sessions/").content.decode()
    assert handle not in page
    assert attacker.post("/account/sessions/end/", {"session": handle}).status_code == 404
    assert victim.get("/account/sessions/").status_code == 200


def test_the_current_session_is_ended_by_signing_out_only(world: World) -> None:
    client = _tracked(browser(world, "guardian"))
    handle = keyring().blind_index(str(client.session.session_key), purpose="portal.user_session")[:32]
    answer = client.post("/account/sessions/end/", {"session": handle}, follow=True)
    assert "Use Sign out to end this session." in answer.content.decode()
    assert client.get("/account/sessions/").status_code == 200


# -- every page ----------------------------------------------------------------------------------

PAGES = ["/account/invitation/", "/account/phone/", "/account/phone/verify/", "/account/sessions/"]
POSTS = [
    ("/account/invitation/", {"code": "AAAA-BBBB-CCCC"}),
    ("/account/phone/", {"phone": NUMBER}),
    ("/account/phone/verify/", {"code": "123456"}),
    ("/account/phone/code/", {}),
    ("/account/sessions/end/", {}),
]


@pytest.mark.parametrize("url", PAGES)
def test_a_signed_out_visitor_is_sent_to_sign_in(db: Any, url: str) -> None:
    answer = Client().get(url)
    assert answer.status_code == 302 and answer["Location"] == "/sign-in/"


@pytest.mark.parametrize(("url", "data"), POSTS)
def test_every_form_needs_the_csrf_token(world: World, url: str, data: dict[str, str]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.guardian)
    assert client.post(url, data).status_code == 403
    world.guardian.refresh_from_db()
    assert world.guardian.phone == ""
    assert not AuditEvent.objects.filter(actor_id=world.guardian.pk, entity_type__in=["Invitation", "Person"])


def test_the_navigation_links_the_account_pages(world: World) -> None:
    body = browser(world, "guardian").get("/account/phone/").content.decode()
    for url in ("/account/invitation/", "/account/phone/", "/account/sessions/"):
        assert f'href="{url}"' in body
