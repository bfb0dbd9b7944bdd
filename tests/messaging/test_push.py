"""Web push: the VAPID keys (from settings, a generated dev pair, off when unset), each account's
devices (register, list, revoke; another account's device is a 404 and audited), and delivery through
the notification pipeline with the push service mocked: a payload without PHI, 404/410 revoking the
device, retries, presence and quiet hours as for SMS, refill changes pushed to the family."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core import mail
from django.db import connection
from django.test import Client
from pywebpush import WebPushException

from messaging import notify, push
from messaging.models import Notification, NotificationPreference, PushSubscription
from messaging.realtime import presence
from portal.audit import AuditEvent
from tests import care_data
from tests.canaries import CANARIES
from tests.conftest import World
from tests.messaging import data

NOON_NY = datetime(2027, 6, 9, 16, 0, tzinfo=UTC)
ANDROID_CHROME = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile"
# A fixed application-server key for tests only (it protects nothing).
TEST_VAPID_PRIVATE = base64.urlsafe_b64encode(bytes(range(1, 33))).rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_subscription(n: int = 1, *, host: str = "push.example.net") -> dict[str, Any]:
    """What a browser's ``PushSubscription.toJSON()`` gives."""
    device_key = ec.derive_private_key(1000 + n, ec.SECP256R1()).public_key()
    point = device_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {
        "endpoint": f"https://{host}/wpush/v2/device-token-{n:04d}",
        "expirationTime": None,
        "keys": {"p256dh": b64(point), "auth": b64(bytes([n]) * 16)},
    }


@pytest.fixture(autouse=True)
def vapid(settings: Any) -> Any:
    settings.PORTAL_VAPID_PRIVATE_KEY = TEST_VAPID_PRIVATE
    settings.PORTAL_VAPID_PUBLIC_KEY = ""
    settings.PORTAL_VAPID_SUBJECT = "mailto:privacy@hospital.example"
    settings.PORTAL_BUSINESS_HOURS = {"time_zone": "America/New_York"}
    push.reset_keys()
    yield settings
    push.reset_keys()


class FakePushService:
    """Stands in for ``pywebpush.webpush`` (the network call): records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_with: int | None = None

    def __call__(self, **kwargs: Any) -> Any:
        if self.fail_with is not None:
            raise WebPushException("push service refused", response=SimpleNamespace(status_code=self.fail_with))
        self.sent.append(kwargs)
        return SimpleNamespace(status_code=201)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(call["data"]) for call in self.sent]


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> FakePushService:
    fake = FakePushService()
    monkeypatch.setattr(push, "webpush", fake)
    return fake


def register(world: World, persona: str = "guardian", n: int = 1, **extra: Any) -> Any:
    client = world.client(persona)
    body = {**browser_subscription(n), **extra}
    return client.post(
        "/api/v1/me/push-subscriptions",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_USER_AGENT=ANDROID_CHROME,
    )


# -- keys -------------------------------------------------------------------------------------------


def test_push_is_off_without_keys_in_production(world: World, vapid: Any) -> None:
    vapid.PORTAL_VAPID_PRIVATE_KEY = ""
    vapid.PORTAL_ALLOW_LOCAL_KEY_FILE = False
    push.reset_keys()
    assert not push.enabled()
    assert world.client("guardian").get("/api/v1/me/push-config").json() == {"enabled": False, "public_key": None}
    refused = register(world)
    assert refused.status_code == 409 and refused.json()["code"] == "push_disabled"
    assert not PushSubscription.objects.exists()


def test_the_embedded_default_generates_a_key_pair_file(vapid: Any, tmp_path: Any) -> None:
    vapid.PORTAL_VAPID_PRIVATE_KEY = ""
    vapid.PORTAL_ALLOW_LOCAL_KEY_FILE = True
    vapid.PORTAL_VAPID_KEY_FILE = tmp_path / "keys" / "vapid_keys.json"
    push.reset_keys()
    public = push.public_key()
    assert public is not None
    path = vapid.PORTAL_VAPID_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = base64.urlsafe_b64decode(public + "=")
    assert len(raw) == 65 and raw[0] == 4  # an uncompressed P-256 point: the applicationServerKey
    push.reset_keys()
    assert push.public_key() == public  # read back, not generated again
    assert json.loads(path.read_text())["public_key"] == public


def test_keys_from_settings_and_a_public_key_that_does_not_match(world: World, vapid: Any) -> None:
    config = world.client("guardian").get("/api/v1/me/push-config").json()
    assert config["enabled"] is True and config["public_key"] == push.public_key()
    vapid.PORTAL_VAPID_PUBLIC_KEY = b64(b"\x04" + bytes(64))
    push.reset_keys()
    with pytest.raises(ValueError, match="does not belong"):
        push.vapid_keys()


# -- the account's devices ---------------------------------------------------------------------------


def test_a_browser_registers_lists_and_turns_off_its_subscription(world: World) -> None:
    created = register(world)
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "label", "created_at", "last_used_at"}  # never the endpoint or keys
    assert body["label"] == "Chrome on Android"
    assert AuditEvent.objects.filter(action="create", entity_type="PushSubscription", entity_id=body["id"]).exists()
    again = register(world)
    assert again.json()["id"] == body["id"]  # the same browser is the same device
    with connection.cursor() as cursor:
        cursor.execute("SELECT endpoint, p256dh, auth FROM messaging_pushsubscription")
        stored = cursor.fetchone()
    assert all(value.startswith("pe1:") for value in stored)  # encrypted at rest
    assert "push.example.net" not in "".join(stored)
    client = world.client("guardian")
    listed = client.get("/api/v1/me/push-subscriptions").json()
    assert [row["id"] for row in listed["items"]] == [body["id"]]
    assert client.delete(f"/api/v1/me/push-subscriptions/{body['id']}").status_code == 204
    assert client.get("/api/v1/me/push-subscriptions").json() == {"items": [], "next": None}
    row = PushSubscription.objects.get()
    assert row.revoked_at is not None and row.revoked_reason == "user"
    assert AuditEvent.objects.filter(action="delete", entity_type="PushSubscription", entity_id=body["id"]).exists()
    assert client.delete(f"/api/v1/me/push-subscriptions/{body['id']}").status_code == 404


def test_a_shared_device_notifies_only_the_account_that_registered_it_last(world: World) -> None:
    first = register(world, "guardian").json()
    second = register(world, "co_guardian").json()
    assert first["id"] != second["id"]
    assert world.client("guardian").get("/api/v1/me/push-subscriptions").json() == {"items": [], "next": None}
    assert PushSubscription.objects.get(pk=first["id"]).revoked_reason == "replaced"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"endpoint": "http://push.example.net/wpush/v2/plain-http"}, "invalid_push_subscription"),
        ({"endpoint": "https://push.example.net/" + "x" * 1100}, "invalid_input"),
        ({"keys": {"p256dh": "A" * 87, "auth": b64(bytes(16))}}, "invalid_push_subscription"),
        (
            {"keys": {"p256dh": browser_subscription()["keys"]["p256dh"], "auth": "not*base64url!!!!!!"}},
            "invalid_push_subscription",
        ),
        (
            {"keys": {"p256dh": browser_subscription()["keys"]["p256dh"], "auth": b64(bytes(16)), "extra": "x"}},
            "invalid_input",
        ),
        ({"device": "mine"}, "invalid_input"),
    ],
)
def test_bad_subscriptions_are_refused_and_nothing_is_written(world: World, change: dict[str, Any], code: str) -> None:
    response = register(world, **change)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code and response.json()["message"]
    assert not PushSubscription.objects.exists()


def test_registrations_are_rate_limited_and_devices_capped(world: World, vapid: Any) -> None:
    vapid.PORTAL_PUSH_MAX_DEVICES = 2
    assert register(world, n=1).status_code == 201
    assert register(world, n=2).status_code == 201
    capped = register(world, n=3)
    assert capped.status_code == 409 and capped.json()["code"] == "too_many_push_devices"
    vapid.PORTAL_PUSH_SUBSCRIBE_RATE = "3/h"
    limited = register(world, n=4)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert PushSubscription.objects.count() == 2


@pytest.mark.parametrize(
    "persona",
    ["co_guardian", "other_guardian", "revoked_guardian", "clinician", "other_clinician", "admin", "stranger"],
)
def test_another_accounts_device_is_a_404_and_audited(world: World, persona: str) -> None:
    device = register(world).json()
    client = world.client(persona)
    assert client.get("/api/v1/me/push-subscriptions").json() == {"items": [], "next": None}
    before = AuditEvent.objects.filter(action="deny", entity_type="PushSubscription").count()
    response = client.delete(f"/api/v1/me/push-subscriptions/{device['id']}")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert "push.example.net" not in response.content.decode()
    assert AuditEvent.objects.filter(action="deny", entity_type="PushSubscription").count() == before + 1
    assert PushSubscription.objects.get(pk=device["id"]).revoked_at is None


def test_signed_out_the_endpoints_answer_401(world: World) -> None:
    device = register(world).json()
    anonymous = Client()
    assert anonymous.get("/api/v1/me/push-subscriptions").status_code == 401
    assert anonymous.delete(f"/api/v1/me/push-subscriptions/{device['id']}").status_code == 401
    posted = anonymous.post(
        "/api/v1/me/push-subscriptions", data=json.dumps(browser_subscription(2)), content_type="application/json"
    )
    assert posted.status_code == 401
    assert PushSubscription.objects.count() == 1


# -- delivery -----------------------------------------------------------------------------------------


def _everything_pushed(service: FakePushService) -> str:
    return json.dumps(service.payloads(), ensure_ascii=False)


def test_a_care_team_reply_is_pushed_without_phi(world: World, service: FakePushService) -> None:
    NotificationPreference.objects.create(user=world.guardian, email=False, sms=False)
    with time_machine.travel(NOON_NY, tick=False):
        register(world, "guardian", n=1)
        register(world, "co_guardian", n=2)
        presence.touch(world.co_guardian.pk)  # the co-guardian has the app open: no push
        thread = data.start_thread(world, body="Adaline Canaryfeather MRN-CANARY-0042 has a fever").json()
        data.reply(world, thread["id"], body="Give Adaline Canaryfeather fluids, MRN-CANARY-0042")
    assert len(service.sent) == 1
    call = service.sent[0]
    assert call["subscription_info"]["endpoint"].endswith("device-token-0001")
    assert call["vapid_claims"] == {"sub": "mailto:privacy@hospital.example"}
    assert call["ttl"] > 0 and call["timeout"] > 0
    assert service.payloads() == [
        {
            "title": "New message from the care team",
            "body": "You have a new message from the care team. Sign in to the family care portal to read it.",
            "url": "/messages/",
            "tag": "new_message",
        }
    ]
    text = _everything_pushed(service)
    assert not any(canary in text for canary in CANARIES)
    assert "fever" not in text and "fluids" not in text and str(world.ada.pk) not in text
    assert mail.outbox == []  # email is off for this guardian; push is per device
    sent = Notification.objects.get(user=world.guardian, channel="push")
    assert sent.status == "sent"
    assert PushSubscription.objects.get(user=world.guardian).last_used_at == NOON_NY
    skipped = Notification.objects.get(user=world.co_guardian, channel="push")
    assert skipped.status == "skipped" and skipped.last_error == "connected"


def test_a_spanish_speaking_guardian_gets_spanish(world: World, service: FakePushService) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    with time_machine.travel(NOON_NY, tick=False):
        register(world)
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    assert service.payloads()[0]["title"] == "Nuevo mensaje del equipo médico"


def test_a_gone_subscription_is_revoked_and_not_retried(world: World, service: FakePushService) -> None:
    service.fail_with = 410
    with time_machine.travel(NOON_NY, tick=False):
        device = register(world).json()
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    row = Notification.objects.get(user=world.guardian, channel="push")
    assert row.status == "failed" and row.last_error == "gone" and row.attempts == 1
    subscription = PushSubscription.objects.get(pk=device["id"])
    assert subscription.revoked_at == NOON_NY and subscription.revoked_reason == "gone"
    assert AuditEvent.objects.filter(action="delete", entity_type="PushSubscription", reason="gone").exists()
    service.fail_with = None
    with time_machine.travel(NOON_NY + timedelta(minutes=5), tick=False):
        data.reply(world, thread["id"])
    assert Notification.objects.filter(user=world.guardian, channel="push").count() == 1  # no new push row
    assert service.sent == []


def test_a_404_from_the_push_service_also_revokes(world: World, service: FakePushService) -> None:
    service.fail_with = 404
    with time_machine.travel(NOON_NY, tick=False):
        register(world)
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    assert PushSubscription.objects.get().revoked_reason == "gone"


def test_other_failures_are_retried_with_backoff(world: World, service: FakePushService) -> None:
    service.fail_with = 503
    with time_machine.travel(NOON_NY, tick=False):
        register(world)
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    row = Notification.objects.get(user=world.guardian, channel="push")
    assert row.status == "pending" and row.attempts == 1 and row.last_error == "WebPushException"
    assert row.not_before == NOON_NY + timedelta(seconds=30)
    assert PushSubscription.objects.get().revoked_at is None
    service.fail_with = None
    assert notify.send_due(now=NOON_NY + timedelta(seconds=31)) >= 1
    row.refresh_from_db()
    assert row.status == "sent" and len(service.sent) == 1


def test_quiet_hours_hold_a_push_until_they_end(world: World, service: FakePushService) -> None:
    world.guardian.time_zone = "America/New_York"
    world.guardian.save(update_fields=["time_zone"])
    NotificationPreference.objects.create(
        user=world.guardian, email=False, quiet_start=time(22, 0), quiet_end=time(7, 0)
    )
    night = datetime(2027, 6, 10, 3, 0, tzinfo=UTC)  # 23:00 New York
    with time_machine.travel(night, tick=False):
        register(world)
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
    held = Notification.objects.get(user=world.guardian, channel="push")
    assert held.status == "pending" and held.not_before == datetime(2027, 6, 10, 11, 0, tzinfo=UTC)
    assert service.sent == []
    assert notify.send_due(now=night + timedelta(hours=1)) == 0
    assert notify.send_due(now=datetime(2027, 6, 10, 11, 0, tzinfo=UTC)) == 1
    held.refresh_from_db()
    assert held.status == "sent" and len(service.sent) == 1


def test_a_device_turned_off_before_sending_is_skipped(world: World, service: FakePushService) -> None:
    world.guardian.time_zone = "America/New_York"
    world.guardian.save(update_fields=["time_zone"])
    NotificationPreference.objects.create(user=world.guardian, quiet_start=time(22, 0), quiet_end=time(7, 0))
    night = datetime(2027, 6, 10, 3, 0, tzinfo=UTC)
    with time_machine.travel(night, tick=False):
        device = register(world).json()
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
        assert world.client("guardian").delete(f"/api/v1/me/push-subscriptions/{device['id']}").status_code == 204
    notify.send_due(now=datetime(2027, 6, 10, 11, 0, tzinfo=UTC))
    row = Notification.objects.get(user=world.guardian, channel="push")
    assert row.status == "skipped" and row.last_error == "revoked"
    assert service.sent == []


def test_a_refill_change_is_pushed_to_the_family_only(world: World, service: FakePushService) -> None:
    refill = care_data.refill(care_data.plan(world.ada, world.clinician), world.guardian)
    with time_machine.travel(NOON_NY, tick=False):
        register(world, "guardian", n=1)
        register(world, "co_guardian", n=2)
        register(world, "other_guardian", n=3)
        register(world, "revoked_guardian", n=4)
        register(world, "clinician", n=5)
        response = data.post(
            world.client("clinician"),
            f"/api/v1/children/{world.ada.pk}/refills/{refill.pk}/transition",
            {"to": "approved"},
        )
    assert response.status_code == 200, response.content
    endpoints = sorted(call["subscription_info"]["endpoint"][-4:] for call in service.sent)
    assert endpoints == ["0001", "0002"]  # the two guardians of the child; not the clinician who did it
    payload = service.payloads()[0]
    assert payload == {
        "title": "Your refill request changed",
        "body": "A refill request was updated. Sign in to the family care portal to see it.",
        "url": "/",
        "tag": "refill_changed",
    }
    text = _everything_pushed(service)
    assert care_data.INSULIN not in text and "Main Street Pharmacy" not in text
    assert not any(canary in text for canary in CANARIES)
    assert mail.outbox == []  # push only: the email choices do not cover refill changes
    assert not Notification.objects.filter(kind="refill_changed").exclude(channel="push").exists()


def test_without_keys_nothing_is_queued_for_push(world: World, vapid: Any, service: FakePushService) -> None:
    vapid.PORTAL_VAPID_PRIVATE_KEY = ""
    vapid.PORTAL_ALLOW_LOCAL_KEY_FILE = False
    push.reset_keys()
    refill = care_data.refill(care_data.plan(world.ada, world.clinician), world.guardian)
    with time_machine.travel(NOON_NY, tick=False):
        register(world)
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
        data.post(
            world.client("clinician"),
            f"/api/v1/children/{world.ada.pk}/refills/{refill.pk}/transition",
            {"to": "approved"},
        )
    assert not Notification.objects.filter(channel="push").exists()
    assert service.sent == []


# -- pywebpush itself, with only its HTTP call replaced ---------------------------------------------


def test_the_real_library_signs_and_encrypts_and_410_is_gone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    posted: list[dict[str, Any]] = []
    answer = {"status": 201}

    def fake_post(url: str, **kwargs: Any) -> Any:
        posted.append({"url": url, **kwargs})
        return SimpleNamespace(status_code=answer["status"], reason="", text="", headers={})

    monkeypatch.setattr(requests, "post", fake_post)
    with time_machine.travel(NOON_NY, tick=False):
        subscription = PushSubscription.objects.get(pk=register(world).json()["id"])
        data_text = notify.push_payload("new_message", "en")
        push.send(subscription, data_text, moment=NOON_NY)
    [call] = posted
    assert call["url"] == browser_subscription()["endpoint"]
    headers = call["headers"]
    assert headers["content-encoding"] == "aes128gcm" and int(headers["ttl"]) == push.PUSH_TTL_SECONDS
    assert headers["authorization"].startswith("vapid t=") and f"k={push.public_key()}" in headers["authorization"]
    assert b"New message" not in call["data"]  # encrypted for the device
    answer["status"] = 410
    with pytest.raises(push.PushGone):
        push.send(subscription, data_text, moment=NOON_NY)
