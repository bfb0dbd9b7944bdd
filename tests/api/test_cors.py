"""CORS for the configured app origins only, on the JSON API only, never with credentials."""

from __future__ import annotations

from typing import Any

from django.test import Client, override_settings

from tests.conftest import World

APP = "https://app.example.org"


def _preflight(path: str, origin: str) -> Any:
    return Client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-session-token",
        },
    )


@override_settings(CORS_ALLOWED_ORIGINS=[APP])
def test_an_allowed_origin_may_call_the_api_with_its_token(world: World) -> None:
    preflight = _preflight("/api/v1/children", APP)
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == APP
    allowed = {name.strip() for name in preflight["Access-Control-Allow-Headers"].split(",")}
    assert {"x-session-token", "content-type", "if-none-match", "idempotency-key"} <= allowed
    assert "Access-Control-Allow-Credentials" not in preflight
    answer = world.client("guardian").get("/api/v1/children", headers={"Origin": APP})
    assert answer.status_code == 200 and answer["Access-Control-Allow-Origin"] == APP
    assert "ETag" in answer["Access-Control-Expose-Headers"]
    assert "origin" in answer["Vary"].lower()
    assert "Access-Control-Allow-Credentials" not in answer
    # Errors carry it too, so the app can read the code.
    refused = Client().get("/api/v1/children", headers={"Origin": APP})
    assert refused.status_code == 401 and refused["Access-Control-Allow-Origin"] == APP


@override_settings(CORS_ALLOWED_ORIGINS=[APP])
def test_another_origin_and_other_paths_get_no_cors_headers(world: World) -> None:
    for path, origin in (
        ("/api/v1/children", "https://evil.example.com"),
        ("/api/v1/children", "http://app.example.org"),  # the scheme is part of the origin
        ("/sign-in/", APP),  # the web app is same-origin only
        ("/_allauth/browser/v1/auth/session", APP),
    ):
        assert "Access-Control-Allow-Origin" not in _preflight(path, origin), (path, origin)
        answer = world.client("guardian").get(path, headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in answer, (path, origin)


def test_no_origin_is_allowed_by_default(world: World) -> None:
    assert "Access-Control-Allow-Origin" not in _preflight("/api/v1/children", APP)
