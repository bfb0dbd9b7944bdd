"""Web push to the installed app: the application server's VAPID keys, each device's subscription
(registered, listed and revoked by its own account) and the sending of one PHI-free notice.

What is pushed is a title, a sentence and a path in the app, chosen by the notification's ``kind``
(``notify.TEXTS``): never a child's name, a message's text or an id. The push service (run by the
browser's vendor) sees only that, encrypted for the device (RFC 8291), and the VAPID signature.

Keys: ``PORTAL_VAPID_PRIVATE_KEY`` and ``PORTAL_VAPID_PUBLIC_KEY``; unset, the embedded default
generates a pair into ``PORTAL_VAPID_KEY_FILE`` (0600, beside the PHI key file) and production runs
without web push.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from messaging.models import PushSubscription
from portal import audit, ratelimit
from portal.crypto import keyring
from portal.errors import Conflict, Invalid, NotFound
from portal.models import User
from portal.vocabulary import Resource

# A push service's answer that the subscription is gone for good: the device unsubscribed, the app
# was uninstalled or the browser's data was cleared. The subscription is revoked.
GONE_STATUSES = frozenset({404, 410})
# How long a push service keeps a notice for a device that is offline (seconds).
PUSH_TTL_SECONDS = 24 * 3600
PUSH_TIMEOUT_SECONDS = 10.0
ENDPOINT_MAX_LENGTH = 1024
LABEL_MAX_LENGTH = 80


class PushGone(Exception):
    """The push service answered 404 or 410: the subscription no longer exists."""


@dataclass(frozen=True)
class VapidKeys:
    private_key: ec.EllipticCurvePrivateKey
    public_key: str  # base64url of the uncompressed P-256 point: the browser's applicationServerKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


def _public_of(private_key: ec.EllipticCurvePrivateKey) -> str:
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def _private_from_text(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM or from base64url of its raw 32-byte scalar."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        loaded = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("PORTAL_VAPID_PRIVATE_KEY is not an EC key")
        return loaded
    scalar = _unb64url(text)
    if len(scalar) != 32:
        raise ValueError("PORTAL_VAPID_PRIVATE_KEY must be 32 bytes (base64url) or PEM")
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())


def create_key_file(path: Path) -> None:
    """Write a fresh VAPID key pair readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    scalar = private_key.private_numbers().private_value.to_bytes(32, "big")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"private_key": _b64url(scalar), "public_key": _public_of(private_key)}, handle, indent=2)


@lru_cache(maxsize=1)
def vapid_keys() -> VapidKeys | None:
    """The VAPID key pair, or None when web push is off (production without keys)."""
    configured: str = settings.PORTAL_VAPID_PRIVATE_KEY
    if configured:
        private_key = _private_from_text(configured)
        public = _public_of(private_key)
        declared: str = settings.PORTAL_VAPID_PUBLIC_KEY
        if declared and declared.rstrip("=") != public:
            raise ValueError("PORTAL_VAPID_PUBLIC_KEY does not belong to PORTAL_VAPID_PRIVATE_KEY")
        return VapidKeys(private_key, public)
    if not settings.PORTAL_ALLOW_LOCAL_KEY_FILE:
        return None
    path: Path = settings.PORTAL_VAPID_KEY_FILE
    if not path.exists():
        create_key_file(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    private_key = _private_from_text(data["private_key"])
    return VapidKeys(private_key, _public_of(private_key))


def reset_keys() -> None:
    """Forget the cached key pair (after a settings change in tests)."""
    vapid_keys.cache_clear()


def public_key() -> str | None:
    keys = vapid_keys()
    return keys.public_key if keys else None


def enabled() -> bool:
    return vapid_keys() is not None


# -- the account's devices ------------------------------------------------------------------------


def _endpoint_index(endpoint: str) -> str:
    return keyring().blind_index(endpoint, purpose="messaging.push.endpoint")[:64]


def _check_key(value: str, *, name: str, length: int) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value):
        raise Invalid(f"keys.{name} must be base64url.", code="invalid_push_subscription")
    try:
        raw = _unb64url(value.rstrip("="))
    except (binascii.Error, ValueError):
        raise Invalid(f"keys.{name} must be base64url.", code="invalid_push_subscription") from None
    if len(raw) != length or (name == "p256dh" and raw[0] != 4):
        raise Invalid(f"keys.{name} is not a valid key.", code="invalid_push_subscription")


def device_label(user_agent: str) -> str:
    """A short name for the device, from its user agent ("Chrome on Android"), never the whole string."""
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Chromium/", "Chromium"),
                ("Safari/", "Safari"),
            )
            if token in user_agent
        ),
        "Browser",
    )
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Windows", "Windows"),
                ("Mac OS X", "macOS"),
                ("Linux", "Linux"),
            )
            if token in user_agent
        ),
        "",
    )
    return (f"{browser} on {system}" if system else browser)[:LABEL_MAX_LENGTH]


def push_subscription_register(
    *, actor: User, endpoint: str, p256dh: str, auth: str, user_agent: str = ""
) -> PushSubscription:
    """Register this browser's push subscription for ``actor``. The same endpoint registered again is
    the same device (returned as it is); registered before by another account on a shared device, that
    account's registration is revoked, so a device only receives the notices of the account that asked
    last. Rate-limited per account; at most ``PORTAL_PUSH_MAX_DEVICES`` live devices."""
    if not enabled():
        raise Conflict("Web push is not configured on this portal.", code="push_disabled")
    if not endpoint.startswith("https://") or len(endpoint) > ENDPOINT_MAX_LENGTH:
        raise Invalid("endpoint must be an https URL of the push service.", code="invalid_push_subscription")
    _check_key(p256dh, name="p256dh", length=65)
    _check_key(auth, name="auth", length=16)
    ratelimit.enforce("push_subscribe", [str(actor.pk)], settings.PORTAL_PUSH_SUBSCRIBE_RATE)
    index = _endpoint_index(endpoint)
    moment = timezone.now()
    with transaction.atomic():
        same = list(PushSubscription.objects.select_for_update().filter(endpoint_index=index, revoked_at__isnull=True))
        for existing in same:
            if existing.user_id == actor.pk and existing.endpoint == endpoint:
                return existing
            if existing.endpoint == endpoint:
                _revoke(existing, actor=actor, reason="replaced", moment=moment)
        live = PushSubscription.objects.filter(user=actor, revoked_at__isnull=True).count()
        if live >= settings.PORTAL_PUSH_MAX_DEVICES:
            raise Conflict("Too many devices receive notifications: turn one off first.", code="too_many_push_devices")
        subscription = PushSubscription.objects.create(
            user=actor,
            endpoint=endpoint,
            endpoint_index=index,
            p256dh=p256dh.rstrip("="),
            auth=auth.rstrip("="),
            label=device_label(user_agent),
            created_at=moment,
        )
        audit.record(
            actor=actor, action=audit.Action.CREATE, entity_type=Resource.PUSH_SUBSCRIPTION, entity_id=subscription.pk
        )
    return subscription


def _revoke(subscription: PushSubscription, *, actor: User | None, reason: str, moment: datetime) -> None:
    subscription.revoked_at = moment
    subscription.revoked_reason = reason
    subscription.save(update_fields=["revoked_at", "revoked_reason"])
    audit.record(
        actor=actor,
        action=audit.Action.DELETE,
        entity_type=Resource.PUSH_SUBSCRIPTION,
        entity_id=subscription.pk,
        reason=reason,
    )


def push_subscription_revoke(*, actor: User, subscription_id: Any) -> None:
    """Turn off notifications to one of the account's own devices. Another account's device, or one
    that does not exist, is a 404 and a ``deny`` audit row."""
    with transaction.atomic():
        subscription = (
            PushSubscription.objects.select_for_update()
            .filter(pk=subscription_id, user=actor, revoked_at__isnull=True)
            .first()
        )
        if subscription is not None:
            _revoke(subscription, actor=actor, reason="user", moment=timezone.now())
    if subscription is None:
        # Written outside the (empty) transaction, so the refusal's audit row stays.
        audit.deny(actor=actor, entity_type=Resource.PUSH_SUBSCRIPTION, entity_id=subscription_id)
        raise NotFound("No such device.")


def push_subscription_gone(subscription: PushSubscription, *, moment: datetime) -> None:
    """The push service said the subscription no longer exists (404/410): revoke it, by the system.
    Call inside the delivering transaction."""
    if subscription.revoked_at is None:
        _revoke(subscription, actor=None, reason="gone", moment=moment)


# -- sending ----------------------------------------------------------------------------------------


def payload(*, title: str, body: str, url: str, tag: str) -> str:
    """The JSON the service worker shows: generic words and a path in the app, nothing about anyone."""
    return json.dumps({"title": title, "body": body, "url": url, "tag": tag}, ensure_ascii=False)


def send(subscription: PushSubscription, data: str, *, moment: datetime) -> None:
    """Push ``data`` to one device. Raises ``PushGone`` on 404/410 and anything else on a failure
    worth retrying (the caller's retry policy applies)."""
    keys = vapid_keys()
    if keys is None:
        raise RuntimeError("web push is off")
    vapid = Vapid02(private_key=keys.private_key)
    try:
        webpush(
            subscription_info={
                "endpoint": subscription.endpoint,
                "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
            },
            data=data,
            vapid_private_key=vapid,
            vapid_claims={"sub": settings.PORTAL_VAPID_SUBJECT},
            ttl=PUSH_TTL_SECONDS,
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except WebPushException as exc:
        if exc.status_code in GONE_STATUSES:
            raise PushGone() from None
        raise
    subscription.last_used_at = moment
    subscription.save(update_fields=["last_used_at"])
