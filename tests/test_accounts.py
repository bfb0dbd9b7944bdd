"""Signing in through allauth's headless API with both clients, MFA enforcement, the error format."""

from __future__ import annotations

import json
import re
from typing import Any

from allauth.mfa.models import Authenticator
from django.test import Client

from portal.models import GuardianLink
from tests.conftest import ADA_NAME, BEN_NAME, PASSWORD, TOTP_SECRET, World, make_user, totp_code


def post_json(client: Client, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def app_login(email: str, password: str = PASSWORD) -> tuple[Client, Any]:
    client = Client()
    response = post_json(client, "/_allauth/app/v1/auth/login", {"email": email, "password": password})
    return client, response


def test_guardian_signs_in_with_app_client_and_sees_only_own_children(world: World) -> None:
    client, response = app_login("guardian@example.org")
    assert response.status_code == 200, response.content
    token = response.json()["meta"]["session_token"]
    children = client.get("/api/v1/children", headers={"X-Session-Token": token})
    assert children.status_code == 200
    assert [child["name"] for child in children.json()["items"]] == [ADA_NAME]
    assert children.json()["items"][0]["mrn"] is None  # MRN is for the care team
    me = client.get("/api/v1/me", headers={"X-Session-Token": token}).json()
    assert [c["name"] for c in me["children_as_guardian"]] == [ADA_NAME]
    assert me["children_as_clinician"] == [] and me["permissions"] == []


def test_app_token_is_never_turned_into_a_cookie(world: World) -> None:
    client = world.client("guardian")
    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/children").status_code == 200
    assert not client.cookies


def test_guardian_signs_in_with_browser_client_and_csrf(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/_allauth/browser/v1/config")
    csrf = client.cookies["csrftoken"].value
    refused = post_json(
        client, "/_allauth/browser/v1/auth/login", {"email": "guardian@example.org", "password": PASSWORD}
    )
    assert refused.status_code == 403  # no CSRF token
    response = post_json(
        client,
        "/_allauth/browser/v1/auth/login",
        {"email": "guardian@example.org", "password": PASSWORD},
        **{"X-CSRFToken": csrf},
    )
    assert response.status_code == 200, response.content
    children = client.get("/api/v1/children")
    assert [child["name"] for child in children.json()["items"]] == [ADA_NAME]
    # Unsafe API calls with the session cookie need the CSRF token too.
    redeem = post_json(client, "/api/v1/invitations/redeem", {"code": "AAAA-BBBB-CCCC"})
    assert redeem.status_code == 403
    redeem = post_json(
        client,
        "/api/v1/invitations/redeem",
        {"code": "AAAA-BBBB-CCCC"},
        **{"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert redeem.status_code == 404 and redeem.json()["code"] == "invitation_not_found"


def test_clinician_with_totp_must_pass_second_factor_and_sees_only_care_team(world: World) -> None:
    client, response = app_login("clinician@example.org")
    assert response.status_code == 401
    flows = {flow["id"]: flow for flow in response.json()["data"]["flows"]}
    assert flows["mfa_authenticate"]["is_pending"]
    token = response.json()["meta"]["session_token"]
    assert client.get("/api/v1/children", headers={"X-Session-Token": token}).status_code == 401
    wrong = post_json(
        client, "/_allauth/app/v1/auth/2fa/authenticate", {"code": "000000"}, **{"X-Session-Token": token}
    )
    assert wrong.status_code == 400
    done = post_json(
        client, "/_allauth/app/v1/auth/2fa/authenticate", {"code": totp_code()}, **{"X-Session-Token": token}
    )
    assert done.status_code == 200, done.content
    token = done.json()["meta"].get("session_token", token)
    children = client.get("/api/v1/children", headers={"X-Session-Token": token}).json()["items"]
    assert [(c["name"], c["access"], c["mrn"]) for c in children] == [(ADA_NAME, "clinician", world.ada.mrn)]
    assert BEN_NAME not in json.dumps(children)


def test_clinician_without_mfa_gets_mfa_required_until_enrolled(world: World) -> None:
    from portal.models import CareTeamMembership, DepartmentMembership

    newcomer = make_user("newdoc@example.org", "Dr. New")
    DepartmentMembership.objects.create(department=world.department, clinician=newcomer, role="doctor")
    CareTeamMembership.objects.create(child=world.ben, clinician=newcomer, role="specialist")
    client, response = app_login("newdoc@example.org")
    assert response.status_code == 200  # no second factor to ask for yet
    headers = {"X-Session-Token": response.json()["meta"]["session_token"]}
    for path in ("/api/v1/me", "/api/v1/children", f"/api/v1/children/{world.ben.pk}"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "mfa_required"
        assert BEN_NAME not in refused.content.decode()

    # allauth asks for the password again before a second factor can be added.
    reauth = post_json(client, "/_allauth/app/v1/auth/reauthenticate", {"password": PASSWORD}, **headers)
    assert reauth.status_code == 200, reauth.content
    setup = client.get("/_allauth/app/v1/account/authenticators/totp", headers=headers)
    assert setup.status_code == 404
    secret = setup.json()["meta"]["secret"]
    enrolled = post_json(client, "/_allauth/app/v1/account/authenticators/totp", {"code": totp_code(secret)}, **headers)
    assert enrolled.status_code == 200, enrolled.content
    children = client.get("/api/v1/children", headers=headers)
    assert children.status_code == 200
    assert [c["name"] for c in children.json()["items"]] == [BEN_NAME]


def test_administrator_needs_mfa_and_sees_no_clinical_content(world: World) -> None:
    me = world.client("admin").get("/api/v1/me").json()
    assert sorted(me["permissions"]) == ["manage_portal", "view_metrics"]
    assert me["mfa_required"] and me["mfa_enrolled"]
    assert world.client("admin").get("/api/v1/children").json()["items"] == []
    assert world.client("admin").get(f"/api/v1/children/{world.ada.pk}").status_code == 404
    Authenticator.objects.filter(user=world.admin).delete()
    refused = world.client("admin").get("/api/v1/me")
    assert refused.status_code == 403 and refused.json()["code"] == "mfa_required"


def test_totp_secret_is_stored_encrypted(world: World) -> None:
    stored = Authenticator.objects.get(user=world.clinician, type=Authenticator.Type.TOTP)
    assert TOTP_SECRET not in json.dumps(stored.data)
    assert stored.data["secret"].startswith("pe1:")


def test_error_format_for_unauthenticated_unknown_and_invalid(world: World) -> None:
    anonymous = Client().get("/api/v1/me")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"code": "not_authenticated", "message": "Sign in first."}
    client = world.client("admin")
    unknown_field = post_json(
        client,
        f"/api/v1/children/{world.ada.pk}/care-team".replace(str(world.ada.pk), str(world.ada.pk)),
        {"clinician_id": str(world.clinician.pk), "role": "nurse", "colour": "blue"},
    )
    # The admin cannot manage Ada without manage_portal? The admin has it: the body is what is wrong.
    assert unknown_field.status_code == 422
    body = unknown_field.json()
    assert body["code"] == "invalid_input"
    assert any(err["loc"][-1] == "colour" for err in body["errors"])
    malformed = client.post("/api/v1/invitations/redeem", data="{not json", content_type="application/json")
    assert malformed.status_code in (400, 422)
    assert "code" in malformed.json()


def test_redeem_rejects_unknown_fields(world: World) -> None:
    response = post_json(world.client("stranger"), "/api/v1/invitations/redeem", {"code": "X", "child": "y"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_input"


def test_signup_then_email_verification_by_code(world: World) -> None:
    from django.core import mail

    client = Client()
    response = post_json(
        client,
        "/_allauth/app/v1/auth/signup",
        {"email": "newparent@example.org", "password": "a long enough passphrase"},
    )
    assert response.status_code == 401  # pending email verification
    token = response.json()["meta"]["session_token"]
    assert len(mail.outbox) == 1
    code = re.search(r"^([A-Z0-9]{4}-[A-Z0-9]{4})$", str(mail.outbox[0].body), re.MULTILINE)
    assert code is not None
    verified = post_json(
        client, "/_allauth/app/v1/auth/email/verify", {"key": code.group(1)}, **{"X-Session-Token": token}
    )
    assert verified.status_code == 200, verified.content
    me = client.get("/api/v1/me", headers={"X-Session-Token": verified.json()["meta"]["session_token"]})
    assert me.status_code == 200 and me.json()["children_as_guardian"] == []


def test_sessions_list_and_revoke(world: World) -> None:
    first, response = app_login("guardian@example.org")
    token = response.json()["meta"]["session_token"]
    second, response2 = app_login("guardian@example.org")
    token2 = response2.json()["meta"]["session_token"]
    sessions = first.get("/_allauth/app/v1/auth/sessions", headers={"X-Session-Token": token})
    assert sessions.status_code == 200
    rows = sessions.json()["data"]
    assert len(rows) == 2
    other = next(row for row in rows if not row["is_current"])
    ended = first.delete(
        "/_allauth/app/v1/auth/sessions",
        data=json.dumps({"sessions": [other["id"]]}),
        content_type="application/json",
        headers={"X-Session-Token": token},
    )
    assert ended.status_code == 200
    assert second.get("/api/v1/children", headers={"X-Session-Token": token2}).status_code == 401


def test_revoked_guardian_sees_nothing(world: World) -> None:
    assert world.client("revoked_guardian").get("/api/v1/children").json()["items"] == []
    assert world.links["revoked_guardian"].status == GuardianLink.Status.REVOKED


def test_health_is_public_and_reports_components(db: Any) -> None:
    response = Client().get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "components": {"database": "ok", "cache": "ok", "channel_layer": "ok", "worker": "inline"},
        "degraded": [],
    }


def test_openapi_docs_are_served(db: Any) -> None:
    assert Client().get("/api/v1/docs").status_code == 200
    schema = Client().get("/api/v1/openapi.json").json()
    assert "/api/v1/children/{child_id}" in schema["paths"]


def _mailed_code(message_body: str) -> str:
    found = re.search(r"^\s*([A-Z0-9]{4,}(?:-[A-Z0-9]{4,})*)\s*$", message_body, re.MULTILINE)
    assert found is not None, message_body
    return found.group(1)


def test_login_by_emailed_code(world: World) -> None:
    from django.core import mail

    client = Client()
    requested = post_json(client, "/_allauth/app/v1/auth/code/request", {"email": "guardian@example.org"})
    assert requested.status_code == 401  # pending: the code was sent
    token = requested.json()["meta"]["session_token"]
    code = _mailed_code(str(mail.outbox[-1].body))
    confirmed = post_json(client, "/_allauth/app/v1/auth/code/confirm", {"code": code}, **{"X-Session-Token": token})
    assert confirmed.status_code == 200, confirmed.content
    headers = {"X-Session-Token": confirmed.json()["meta"]["session_token"]}
    assert [c["name"] for c in client.get("/api/v1/children", headers=headers).json()["items"]] == [ADA_NAME]


def test_password_reset_by_code(world: World) -> None:
    from django.core import mail

    client = Client()
    requested = post_json(client, "/_allauth/app/v1/auth/password/request", {"email": "guardian@example.org"})
    assert requested.status_code == 401
    token = requested.json()["meta"]["session_token"]
    code = _mailed_code(str(mail.outbox[-1].body))
    headers = {"X-Session-Token": token}
    checked = client.get("/_allauth/app/v1/auth/password/reset", headers={**headers, "X-Password-Reset-Key": code})
    assert checked.status_code == 200, checked.content
    reset = post_json(
        client, "/_allauth/app/v1/auth/password/reset", {"key": code, "password": "a brand new passphrase"}, **headers
    )
    assert reset.status_code in (200, 401), reset.content
    _, old = app_login("guardian@example.org")
    assert old.status_code == 400
    _, new = app_login("guardian@example.org", "a brand new passphrase")
    assert new.status_code == 200


def _error_codes(response: Any) -> set[str]:
    return {error.get("code", "") for error in response.json().get("errors", [])}


def test_failed_logins_are_rate_limited(world: World) -> None:
    responses = [app_login("guardian@example.org", "wrong password")[1] for _ in range(6)]
    assert [r.status_code for r in responses] == [400] * 6
    assert all("too_many_login_attempts" not in _error_codes(r) for r in responses[:5])
    assert "too_many_login_attempts" in _error_codes(responses[5])
    # The right password is refused too while the account's limit holds.
    assert "too_many_login_attempts" in _error_codes(app_login("guardian@example.org")[1])


def test_mfa_code_entry_is_rate_limited(world: World) -> None:
    client, response = app_login("clinician@example.org")
    headers = {"X-Session-Token": response.json()["meta"]["session_token"]}
    responses = [
        post_json(client, "/_allauth/app/v1/auth/2fa/authenticate", {"code": "000000"}, **headers) for _ in range(6)
    ]
    assert "too_many_login_attempts" in _error_codes(responses[-1])
    late = post_json(client, "/_allauth/app/v1/auth/2fa/authenticate", {"code": totp_code()}, **headers)
    assert late.status_code == 400 and "too_many_login_attempts" in _error_codes(late)
