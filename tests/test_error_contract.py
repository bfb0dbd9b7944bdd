"""Every error under /api/v1 is JSON {code, message} with a fitting status, whoever answers it (an
unknown path, a wrong method, a bad or expired app token, a failed CSRF check), and the OpenAPI
document declares the Error schema and each operation's 4xx answers."""

from __future__ import annotations

import json
from datetime import timedelta

import time_machine
from django.test import Client
from django.utils import timezone

from portal.apiroot import api
from tests.conftest import World


def _is_error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]


def test_unknown_paths_are_json_404(world: World) -> None:
    for client in (Client(), world.client("guardian")):
        _is_error(client.get("/api/v1/no/such/thing"), 404, "not_found")
        _is_error(client.post("/api/v1/nothing-here", data="{}", content_type="application/json"), 404, "not_found")
    _is_error(world.client("guardian").get("/api/v1/children/not-a-uuid-at-all/x/y"), 404, "not_found")


def test_a_wrong_method_is_json_405_with_allow(world: World) -> None:
    response = world.client("guardian").put("/api/v1/me", data="{}", content_type="application/json")
    _is_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
    _is_error(Client().delete("/api/v1/health"), 405, "method_not_allowed")


def test_a_bad_or_expired_app_token_is_401_not_a_csrf_403(world: World) -> None:
    body = json.dumps({"payer": "P", "member_id": "M"})
    url = f"/api/v1/children/{world.ada.pk}/coverage"
    # CSRF is enforced as in production: the test client skips it unless asked.
    bad = Client(enforce_csrf_checks=True, headers={"X-Session-Token": "no-such-token"})
    _is_error(bad.post(url, data=body, content_type="application/json"), 401, "not_authenticated")
    _is_error(bad.get(url), 401, "not_authenticated")
    browser = Client()
    browser.force_login(world.guardian)
    client = Client(enforce_csrf_checks=True, headers={"X-Session-Token": browser.session.session_key})
    assert client.get("/api/v1/me").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):  # past the idle timeout
        _is_error(client.post(url, data=body, content_type="application/json"), 401, "not_authenticated")
    _is_error(
        Client(enforce_csrf_checks=True).post(url, data=body, content_type="application/json"), 401, "not_authenticated"
    )


def test_a_browser_post_without_csrf_is_json_403(world: World) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.guardian)
    url = f"/api/v1/children/{world.ada.pk}/coverage"
    body = json.dumps({"payer": "P", "member_id": "M"})
    _is_error(browser.post(url, data=body, content_type="application/json"), 403, "csrf_failed")
    assert browser.get(url).status_code == 200
    browser.get("/_allauth/browser/v1/auth/session")  # sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    done = browser.post(url, data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert done.status_code == 201


def test_a_browser_session_with_an_app_token_header_is_judged_by_the_token(world: World) -> None:
    browser = Client(enforce_csrf_checks=True, headers={"X-Session-Token": "stale"})
    browser.force_login(world.guardian)
    _is_error(browser.get("/api/v1/me"), 401, "not_authenticated")


def test_the_openapi_document_declares_errors_for_every_operation() -> None:
    document = api.get_openapi_schema()
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message"}
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operations += 1
            responses = operation["responses"]
            for status in ("400", "404", "422", "429"):
                assert status in responses, (method, path, status)
                assert responses[status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), (method, path)
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                assert {"413", "415"} <= set(responses), (method, path)
    assert operations > 50


def test_the_openapi_document_is_served_with_the_errors() -> None:
    served = Client().get("/api/v1/openapi.json").json()
    assert "Error" in served["components"]["schemas"]
