"""A scripted client learns it must sign in (401) before anything about CSRF: a request without a
live session is never a CSRF 403. A signed-in browser session without its token is 403
``csrf_failed``; an app token is never judged by CSRF."""

from __future__ import annotations

import json

from django.conf import settings
from django.test import Client

from tests.conftest import World, app_client

BODY = json.dumps({"payer": "P", "member_id": "M"})


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["message"]


def test_an_unauthenticated_unsafe_request_is_401_whatever_cookie_it_carries(world: World) -> None:
    url = f"/api/v1/children/{world.ada.pk}/coverage"
    # No cookie at all.
    _error(
        Client(enforce_csrf_checks=True).post(url, data=BODY, content_type="application/json"), 401, "not_authenticated"
    )
    # A session cookie naming no session (expired, flushed, or made up).
    stale = Client(enforce_csrf_checks=True)
    stale.cookies[settings.SESSION_COOKIE_NAME] = "no-such-session"
    _error(stale.post(url, data=BODY, content_type="application/json"), 401, "not_authenticated")
    # An anonymous session (the web app's sign-in page makes one), and after signing out.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.guardian)
    browser.logout()
    browser.cookies[settings.SESSION_COOKIE_NAME] = "signed-out-session-key"
    _error(browser.post(url, data=BODY, content_type="application/json"), 401, "not_authenticated")
    _error(browser.delete("/api/v1/me/calendar-feed"), 401, "not_authenticated")
    language = json.dumps({"language": "es"})
    _error(browser.patch("/api/v1/me", data=language, content_type="application/json"), 401, "not_authenticated")


def test_a_signed_in_browser_session_without_its_csrf_token_is_403_csrf_failed(world: World) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.guardian)
    url = f"/api/v1/children/{world.ada.pk}/coverage"
    _error(browser.post(url, data=BODY, content_type="application/json"), 403, "csrf_failed")
    _error(
        browser.patch("/api/v1/me", data=json.dumps({"language": "es"}), content_type="application/json"),
        403,
        "csrf_failed",
    )
    world.guardian.refresh_from_db()
    assert world.guardian.preferred_language != "es"  # nothing written
    assert browser.get(url).status_code == 200  # safe methods need no token


def test_an_app_token_is_not_subject_to_csrf(world: World) -> None:
    client = app_client(world.guardian)
    client.handler.enforce_csrf_checks = True
    url = f"/api/v1/children/{world.ada.pk}/coverage"
    created = client.post(url, data=BODY, content_type="application/json")
    assert created.status_code == 201, created.content
    changed = client.patch("/api/v1/me", data=json.dumps({"language": "es"}), content_type="application/json")
    assert changed.status_code == 200 and changed.json()["language"] == "es"
