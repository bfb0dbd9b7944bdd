"""The Django admin's login asks for a second factor and is rate-limited."""

from __future__ import annotations

from django.test import Client

from tests.conftest import PASSWORD, World, totp_code


def _login(client: Client, email: str, code: str, password: str = PASSWORD) -> int:
    response = client.post("/admin/login/?next=/admin/", {"username": email, "password": password, "code": code})
    return response.status_code


def test_admin_login_needs_password_and_totp(world: World) -> None:
    client = Client()
    assert _login(client, "admin@example.org", "000000") == 200  # form shown again
    assert client.get("/admin/").status_code == 302
    assert _login(client, "admin@example.org", totp_code()) == 302
    assert client.get("/admin/").status_code == 200


def test_admin_login_refuses_staff_without_mfa(world: World) -> None:
    world.stranger.is_staff = True
    world.stranger.save(update_fields=["is_staff"])
    client = Client()
    response = client.post(
        "/admin/login/", {"username": "stranger@example.org", "password": PASSWORD, "code": "123456"}
    )
    assert b"two-factor" in response.content
    assert client.get("/admin/").status_code == 302


def test_admin_login_is_rate_limited(world: World) -> None:
    client = Client()
    for _ in range(10):
        _login(client, "admin@example.org", "000000", password="wrong password")
    response = client.post(
        "/admin/login/", {"username": "admin@example.org", "password": PASSWORD, "code": totp_code()}
    )
    assert b"Too many sign-in attempts" in response.content
    assert client.get("/admin/").status_code == 302
