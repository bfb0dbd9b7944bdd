"""The settings page's "Notifications on this device" section: the VAPID key for the subscribe button
(static script, no inline code), the account's own devices with a "Turn off" form, another account's
device refused with a 404 and a deny audit row, and Spanish."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from messaging import push
from messaging.models import PushSubscription
from portal.audit import AuditEvent
from tests.conftest import World
from tests.messaging.test_push import TEST_VAPID_PRIVATE, browser_subscription

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def vapid(settings: Any) -> Any:
    settings.PORTAL_VAPID_PRIVATE_KEY = TEST_VAPID_PRIVATE
    push.reset_keys()
    with time_machine.travel(NOW, tick=False):
        yield settings
    push.reset_keys()


def signed_in(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def device(world: World, persona: str = "guardian", n: int = 1) -> PushSubscription:
    body = browser_subscription(n)
    return push.push_subscription_register(
        actor=world.users[persona],
        endpoint=body["endpoint"],
        p256dh=body["keys"]["p256dh"],
        auth=body["keys"]["auth"],
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
    )


def test_the_settings_page_offers_push_and_lists_the_devices(world: World) -> None:
    device(world)
    response = signed_in(world, "guardian").get("/account/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert f'data-push-key="{push.public_key()}"' in body
    assert 'data-push-api="/api/v1/me/push-subscriptions"' in body
    assert '<script src="/static/web/push.js" defer></script>' in body
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # every script is a file
    assert "Notifications on this device" in body and "Safari on iPhone" in body
    assert "push.example.net" not in body  # the endpoint is never shown


def test_without_keys_the_page_says_push_is_not_offered(world: World, vapid: Any) -> None:
    vapid.PORTAL_VAPID_PRIVATE_KEY = ""
    vapid.PORTAL_ALLOW_LOCAL_KEY_FILE = False
    push.reset_keys()
    body = signed_in(world, "guardian").get("/account/").content.decode()
    assert "data-push-key" not in body and "This portal does not send notifications to devices." in body


def test_spanish(world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    device(world)
    body = signed_in(world, "guardian").get("/account/").content.decode()
    assert "Notificaciones en este dispositivo" in body and "Desactivar" in body
    assert "Activar las notificaciones en este dispositivo" in body


def test_turning_a_device_off(world: World) -> None:
    own = device(world)
    client = signed_in(world, "guardian")
    response = client.post(f"/account/devices/{own.pk}/off/")
    assert response.status_code == 302 and response["Location"] == "/account/"
    own.refresh_from_db()
    assert own.revoked_at == NOW and own.revoked_reason == "user"
    assert "Safari on iPhone" not in client.get("/account/").content.decode()
    assert client.get(f"/account/devices/{own.pk}/off/").status_code == 405


@pytest.mark.parametrize(
    "persona", ["co_guardian", "other_guardian", "revoked_guardian", "clinician", "other_clinician", "stranger"]
)
def test_another_accounts_device_is_a_404_and_audited(world: World, persona: str) -> None:
    own = device(world)
    client = signed_in(world, persona)
    assert "Safari on iPhone" not in client.get("/account/").content.decode()
    before = AuditEvent.objects.filter(action="deny", entity_type="PushSubscription").count()
    response = client.post(f"/account/devices/{own.pk}/off/")
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="deny", entity_type="PushSubscription").count() == before + 1
    own.refresh_from_db()
    assert own.revoked_at is None


def test_signed_out_and_without_csrf(world: World) -> None:
    own = device(world)
    assert Client().post(f"/account/devices/{own.pk}/off/")["Location"] == "/sign-in/"
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.users["guardian"])
    assert strict.post(f"/account/devices/{own.pk}/off/").status_code == 403
    own.refresh_from_db()
    assert own.revoked_at is None
