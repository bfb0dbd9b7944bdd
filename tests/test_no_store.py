"""Responses that may carry PHI are never kept by a browser or shared cache."""

from __future__ import annotations

import pytest
from django.test import Client

from care import services as care
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _assert_no_store(response: object, what: str) -> None:
    cache_control = response["Cache-Control"]  # type: ignore[index]
    assert "no-store" in cache_control and "max-age=0" in cache_control, (what, cache_control)
    assert "public" not in cache_control
    assert response["Pragma"] == "no-cache", what  # type: ignore[index]


def test_phi_responses_carry_no_store(world: World) -> None:
    client = world.client("guardian")
    for path in ("/api/v1/me", "/api/v1/children", f"/api/v1/children/{world.ada.pk}"):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_no_store(response, path)
    # Refusals and errors too: a 404 for another family's child, a 401 without a session.
    _assert_no_store(world.client("other_guardian").get(f"/api/v1/children/{world.ada.pk}"), "denied")
    _assert_no_store(Client().get("/api/v1/children"), "anonymous")
    _assert_no_store(Client().get("/_allauth/app/v1/auth/session"), "allauth")


def test_the_calendar_feed_carries_no_store(world: World) -> None:
    _feed, token = care.calendar_feed_issue(actor=world.guardian)
    response = Client().get(f"/api/v1/calendar/{token}.ics")
    assert response.status_code == 200
    _assert_no_store(response, "calendar")
    _assert_no_store(Client().get("/api/v1/calendar/nope.ics"), "unknown feed")


def test_other_pages_keep_their_own_caching(world: World) -> None:
    assert "Pragma" not in Client().get("/admin/login/")
