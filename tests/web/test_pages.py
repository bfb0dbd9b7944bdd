"""The family web app: sign-in (password, then the second factor where the account has one), the
"today" page, one-tap dose recording and refill requests, each behind the JSON API's access policy."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from care.models import DoseLog, RefillRequest
from portal.audit import AuditEvent
from portal.models import GuardianLink
from tests import care_data
from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import PASSWORD, World, totp_code

# Tuesday 10 March 2026, 14:00 UTC = 10:00 in New York (Ada's zone): the 08:00 dose is overdue.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
EIGHT_AM = "2026-03-10T12:00:00+00:00"
PHI = (ADA_NAME, ADA_MRN, care_data.INSULIN)


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def care(clock: Any, world: World) -> dict[str, Any]:
    plan = care_data.plan(world.ada, world.clinician)
    visit = care_data.appointment(world.ada, world.clinician)
    return {"plan": plan, "visit": visit}


def browser(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def today_url(world: World) -> str:
    return f"/children/{world.ada.pk}/"


def dose_url(world: World, plan: Any) -> str:
    return f"/children/{world.ada.pk}/medicines/{plan.pk}/doses/"


def refill_url(world: World, plan: Any) -> str:
    return f"/children/{world.ada.pk}/medicines/{plan.pk}/refill/"


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]
    assert response["Pragma"] == "no-cache"


def assert_no_phi(response: Any) -> None:
    body = response.content.decode()
    for value in PHI:
        assert value not in body


# -- signing in ------------------------------------------------------------------------------------


def test_sign_in_page_has_a_strict_policy_and_no_inline_code(db: Any) -> None:
    response = Client().get("/sign-in/")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    body = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # every script is a file
    assert "<style" not in body and "style=" not in body
    assert_private(response)


def test_a_guardian_signs_in_with_a_password_and_lands_on_today(care: dict[str, Any], world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/sign-in/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/sign-in/", {"login": "guardian@example.org", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 302 and home["Location"] == today_url(world)  # one child: straight to it
    page = client.get(today_url(world))
    assert page.status_code == 200 and ADA_NAME in page.content.decode()


def test_a_wrong_password_is_refused_in_words(world: World) -> None:
    client = Client()
    response = client.post("/sign-in/", {"login": "guardian@example.org", "password": "wrong"})
    assert response.status_code == 400
    assert "not correct" in response.content.decode()
    assert client.get("/").status_code == 302


def test_sign_in_without_the_csrf_token_is_refused(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/sign-in/", {"login": "guardian@example.org", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/")["Location"] == "/sign-in/"


def test_an_account_with_mfa_is_asked_for_its_code(world: World) -> None:
    client = Client()
    response = client.post("/sign-in/", {"login": "clinician@example.org", "password": PASSWORD})
    assert response["Location"] == "/sign-in/code/"
    assert client.get("/")["Location"] == "/sign-in/"  # not signed in before the second factor
    assert client.post("/sign-in/code/", {"code": "000000"}).status_code == 400
    response = client.post("/sign-in/code/", {"code": totp_code()})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_code_page_without_a_password_step_goes_back_to_sign_in(db: Any) -> None:
    assert Client().get("/sign-in/code/")["Location"] == "/sign-in/"


def test_sign_out_ends_the_session_and_clears_the_browser(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    assert client.get(today_url(world)).status_code == 200
    assert client.get("/sign-out/").status_code == 405  # only a POST (with its CSRF token) signs out
    response = client.post("/sign-out/")
    assert response["Location"] == "/sign-in/"
    assert '"cache"' in response["Clear-Site-Data"]
    assert client.get(today_url(world))["Location"] == "/sign-in/"


def test_an_idle_session_ends(care: dict[str, Any], world: World, clock: Any) -> None:
    client = browser(world, "guardian")
    assert client.get(today_url(world)).status_code == 200
    clock.shift(timedelta(hours=9))  # families: 8 hours idle
    response = client.get(today_url(world))
    assert response.status_code == 302 and response["Location"] == "/sign-in/"


# -- today ------------------------------------------------------------------------------------------


def test_today_shows_visits_doses_refills_and_messages(care: dict[str, Any], world: World) -> None:
    care_data.refill(care_data.plan(world.ada, world.clinician, medication="Glucagon pen"), world.guardian)
    response = browser(world, "guardian").get(today_url(world))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Follow-up" in body and "clinician@example.org" in body  # the next visit
    assert care_data.INSULIN in body and 'value="given"' in body and 'value="skipped"' in body
    assert EIGHT_AM in body  # the overdue 08:00 dose can be answered
    assert "Glucagon pen" in body and "Requested" in body  # the open refill
    assert "0 unread messages" in body
    assert refill_url(world, care["plan"]) in body


def test_a_limited_scope_guardian_is_told_why_medicines_are_missing(care: dict[str, Any], world: World) -> None:
    GuardianLink.objects.filter(pk=world.links["guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    body = browser(world, "guardian").get(today_url(world)).content.decode()
    assert "is limited" in body
    assert care_data.INSULIN not in body and "Follow-up" not in body  # neutral label at limited scope


def test_a_revoked_guardian_is_told_why_nothing_is_shown(care: dict[str, Any], world: World) -> None:
    response = browser(world, "revoked_guardian").get("/")
    assert response.status_code == 200
    assert "ended by the care team" in response.content.decode()
    assert_no_phi(response)


def test_a_spanish_speaking_guardian_sees_spanish(care: dict[str, Any], world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    response = browser(world, "guardian").get(today_url(world))
    body = response.content.decode()
    assert response["Content-Language"] == "es"
    assert "Dosis pendientes" in body and "Administrada" in body and "Cerrar sesión" in body


def test_the_browser_language_is_used_before_sign_in(db: Any) -> None:
    body = Client(headers={"Accept-Language": "es"}).get("/sign-in/").content.decode()
    assert 'lang="es"' in body and "Iniciar sesión" in body


# -- recording a dose -------------------------------------------------------------------------------


def test_one_tap_records_a_dose_given_once(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    form = {"client_id": str(uuid.uuid4()), "scheduled_for": EIGHT_AM, "status": "given"}
    response = client.post(dose_url(world, care["plan"]), form)
    assert response.status_code == 302 and response["Location"] == today_url(world)
    assert client.post(dose_url(world, care["plan"]), form).status_code == 302  # a double tap
    dose = DoseLog.objects.get(plan=care["plan"])
    assert dose.status == "given" and dose.recorded_by == world.guardian
    assert dose.scheduled_for == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    page = client.get(today_url(world)).content.decode()
    assert "Dose recorded as given." in page and EIGHT_AM not in page


def test_a_dose_skipped_and_a_refusal_in_words(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    url = dose_url(world, care["plan"])
    client.post(url, {"client_id": str(uuid.uuid4()), "scheduled_for": EIGHT_AM, "status": "skipped"})
    assert DoseLog.objects.get(plan=care["plan"]).status == "skipped"
    client.post(url, {"client_id": str(uuid.uuid4()), "scheduled_for": EIGHT_AM, "status": "given"})
    assert DoseLog.objects.filter(plan=care["plan"]).count() == 1
    assert "already recorded" in client.get(today_url(world)).content.decode()


def test_a_dose_form_that_is_not_whole_records_nothing(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    client.post(dose_url(world, care["plan"]), {"client_id": "x", "status": "given"})
    client.post(dose_url(world, care["plan"]), {"client_id": str(uuid.uuid4()), "status": "taken"})
    assert not DoseLog.objects.exists()
    assert "form was incomplete" in client.get(today_url(world)).content.decode()


def test_recording_a_dose_needs_the_csrf_token(care: dict[str, Any], world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.guardian)
    form = {"client_id": str(uuid.uuid4()), "scheduled_for": EIGHT_AM, "status": "given"}
    assert client.post(dose_url(world, care["plan"]), form).status_code == 403
    assert not DoseLog.objects.exists()


# -- refills ----------------------------------------------------------------------------------------


def test_a_guardian_requests_a_refill(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    page = client.get(refill_url(world, care["plan"]))
    assert page.status_code == 200 and "Main Street Pharmacy" in page.content.decode()
    assert_private(page)
    key = str(uuid.uuid4())
    response = client.post(refill_url(world, care["plan"]), {"pharmacy": "Corner Pharmacy", "note": "", "key": key})
    assert response.status_code == 302 and response["Location"] == today_url(world)
    refill = RefillRequest.objects.get(plan=care["plan"])
    assert refill.pharmacy == "Corner Pharmacy" and refill.requested_by == world.guardian
    # The same form sent again asks once; a new request while one is open is refused in words.
    assert client.post(refill_url(world, care["plan"]), {"pharmacy": "Corner Pharmacy", "key": key}).status_code == 302
    again = client.post(refill_url(world, care["plan"]), {"pharmacy": "", "key": str(uuid.uuid4())})
    assert again.status_code == 400
    assert "already open" in again.content.decode()
    assert RefillRequest.objects.count() == 1


def test_a_refill_refusal_is_in_spanish_for_a_spanish_speaker(care: dict[str, Any], world: World) -> None:
    care["plan"].refills_remaining = 0
    care["plan"].save(update_fields=["refills_remaining"])
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    response = browser(world, "guardian").post(refill_url(world, care["plan"]), {"key": str(uuid.uuid4())})
    assert response.status_code == 400
    assert "No quedan renovaciones" in response.content.decode()
    assert not RefillRequest.objects.exists()


def test_control_characters_in_a_refill_note_are_refused(care: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").post(
        refill_url(world, care["plan"]), {"note": "call me\x00", "key": str(uuid.uuid4())}
    )
    assert response.status_code == 400
    assert not RefillRequest.objects.exists()


# -- access: the API's policy, its 404s and its audited denials ------------------------------------

DENIED = ("other_guardian", "revoked_guardian", "other_clinician", "stranger")


def _requests(world: World, care: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    plan = care["plan"]
    dose = {"client_id": str(uuid.uuid4()), "scheduled_for": EIGHT_AM, "status": "given"}
    return [
        ("get", today_url(world), {}),
        ("post", dose_url(world, plan), dose),
        ("get", refill_url(world, plan), {}),
        ("post", refill_url(world, plan), {"pharmacy": "X", "key": str(uuid.uuid4())}),
    ]


@pytest.mark.parametrize("persona", DENIED)
def test_others_get_404_without_phi_and_the_denial_is_audited(care: dict[str, Any], world: World, persona: str) -> None:
    client = browser(world, persona)
    for method, url, data in _requests(world, care):
        before = AuditEvent.objects.filter(action="deny").count()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, method, url)
        assert_no_phi(response)
        assert_private(response)
        assert AuditEvent.objects.filter(action="deny").count() == before + 1, (persona, url)
    assert not DoseLog.objects.exists() and not RefillRequest.objects.exists()


def test_the_care_team_cannot_ask_for_a_refill_in_the_familys_name(care: dict[str, Any], world: World) -> None:
    enrolled = browser(world, "clinician")
    response = enrolled.post(refill_url(world, care["plan"]), {"key": str(uuid.uuid4())})
    assert response.status_code == 404
    assert not RefillRequest.objects.exists()


def test_a_signed_out_visitor_is_sent_to_sign_in(care: dict[str, Any], world: World) -> None:
    for method, url, data in _requests(world, care):
        response = getattr(Client(), method)(url, data)
        assert response.status_code == 302 and response["Location"] == "/sign-in/", url
        assert_no_phi(response)
    assert not DoseLog.objects.exists() and not RefillRequest.objects.exists()


def test_an_unknown_child_is_a_404(care: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(f"/children/{uuid.uuid4()}/")
    assert response.status_code == 404


def test_a_staff_account_without_mfa_is_told_to_enrol(world: World) -> None:
    from allauth.mfa.models import Authenticator

    Authenticator.objects.filter(user=world.clinician).delete()
    response = browser(world, "clinician").get("/")
    assert response.status_code == 403
    assert "two-factor" in response.content.decode()
