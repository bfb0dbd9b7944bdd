"""The guardian's secret calendar feed URL (only its blind index is stored)."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from care.models import (
    CalendarFeed,
)
from portal import audit
from portal.crypto import keyring
from portal.models import User
from portal.vocabulary import Resource


def feed_token_hash(token: str) -> str:
    return keyring().blind_index(token, purpose="care.calendar_feed")


def calendar_feed_issue(*, actor: User, include_doses: bool = False) -> tuple[CalendarFeed, str]:
    """Issue a new secret feed URL token; any earlier one stops working at once."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        CalendarFeed.objects.filter(guardian=actor, revoked_at__isnull=True).update(revoked_at=timezone.now())
        feed = CalendarFeed.objects.create(
            guardian=actor, token_hash=feed_token_hash(token), include_doses=include_doses
        )
        audit.record(actor=actor, action=audit.Action.CREATE, entity_type=Resource.CALENDAR_FEED, entity_id=feed.pk)
    return feed, token


def calendar_feed_revoke(*, actor: User) -> int:
    with transaction.atomic():
        count = CalendarFeed.objects.filter(guardian=actor, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if count:
            audit.record(actor=actor, action=audit.Action.DELETE, entity_type=Resource.CALENDAR_FEED, reason="revoked")
    return count
