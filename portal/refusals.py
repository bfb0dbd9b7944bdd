"""Unauthenticated refusals (an unknown calendar-feed token, a badly signed webhook): rate-limited per
client address, and coalesced in the audit trail.

Each refusal is counted in a ``RefusalTally`` row for its (address, entity type, reason, window). Once
the window (``PORTAL_REFUSAL_WINDOW_SECONDS``) has closed, :func:`flush` appends one audit row per
tally, carrying the count, the first refusal's entity id and user agent, and the last refusal's time.
So a script that guesses a thousand feed tokens adds one row per window, not a thousand, and the trail
still says how many there were. Flushing happens at the next refusal from anyone, before an audit
export, and in ``python manage.py flush_refusals`` (schedule it every few minutes).

An address refused more than ``PORTAL_REFUSAL_RATE`` times is answered 429 (``rate_limited``) by
:func:`guard` until its rate window passes; those answers are counted too (reason ``rate_limited``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from portal import audit, ratelimit
from portal.errors import RateLimited
from portal.models import RefusalTally
from portal.vocabulary import Resource

FLUSH_BATCH = 500


def window_start(moment: datetime) -> datetime:
    seconds = settings.PORTAL_REFUSAL_WINDOW_SECONDS
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def _rate_key(address: str) -> str:
    return f"refusals:{address or '-'}"


def _over_limit(address: str) -> bool:
    limit, window = ratelimit.parse_rate(settings.PORTAL_REFUSAL_RATE)
    bucket = int(timezone.now().timestamp() // window)
    return int(cache.get(f"{_rate_key(address)}:{bucket}", 0)) >= limit


def _count_against_limit(address: str) -> None:
    _limit, window = ratelimit.parse_rate(settings.PORTAL_REFUSAL_RATE)
    bucket = int(timezone.now().timestamp() // window)
    key = f"{_rate_key(address)}:{bucket}"
    cache.add(key, 0, timeout=window + 5)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window + 5)


def _tally(*, entity_type: Resource, reason: str, entity_id: uuid.UUID | str | None, client: audit.ClientInfo) -> None:
    now = timezone.now()
    match = {
        "client_address": client.address,
        "entity_type": entity_type,
        "reason": reason,
        "window_start": window_start(now),
    }
    if RefusalTally.objects.filter(**match).update(count=F("count") + 1, last_seen=now):
        return
    try:
        with transaction.atomic():
            RefusalTally.objects.create(
                **match,
                count=1,
                entity_id=str(entity_id)[:64] if entity_id else "",
                user_agent=client.user_agent,
                first_seen=now,
                last_seen=now,
            )
    except IntegrityError:  # a concurrent first refusal of the same window won the insert
        RefusalTally.objects.filter(**match).update(count=F("count") + 1, last_seen=now)


def refuse(*, entity_type: Resource, reason: str, entity_id: uuid.UUID | str | None = None) -> None:
    """Count an unauthenticated refusal from the current client (coalesced into the audit trail)."""
    client = audit.current_client()
    _count_against_limit(client.address)
    _tally(entity_type=entity_type, reason=reason, entity_id=entity_id, client=client)
    flush()


def guard(entity_type: Resource) -> None:
    """Refuse (429, counted) a client address that has been refused too often in the rate window."""
    client = audit.current_client()
    if _over_limit(client.address):
        _tally(entity_type=entity_type, reason="rate_limited", entity_id=None, client=client)
        raise RateLimited()


def flush(*, everything: bool = False) -> int:
    """Append one audit row per closed window (every window with ``everything``, e.g. at shutdown or
    in tests). Returns how many rows were appended."""
    now = timezone.now()
    pending = RefusalTally.objects.all()
    if not everything:
        pending = pending.filter(window_start__lte=window_start(now) - timedelta(microseconds=1))
    if not pending.exists():
        return 0
    with transaction.atomic():
        tallies = list(pending.select_for_update(skip_locked=True).order_by("window_start", "id")[:FLUSH_BATCH])
        if not tallies:
            return 0
        audit.record_many(
            [
                audit.Entry(
                    action=audit.Action.DENY,
                    entity_type=Resource(tally.entity_type),
                    entity_id=tally.entity_id or None,
                    outcome=audit.Outcome.DENIED,
                    reason=tally.reason,
                    count=tally.count,
                    client=audit.ClientInfo(address=tally.client_address, user_agent=tally.user_agent),
                    recorded_at=tally.last_seen,
                )
                for tally in tallies
            ],
            actor=None,
        )
        RefusalTally.objects.filter(pk__in=[tally.pk for tally in tallies]).delete()
    return len(tallies)
