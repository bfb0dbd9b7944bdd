"""Each user's persisted, ordered event stream (the outbox), and its delivery.

``emit`` writes one ``UserEvent`` row per recipient inside the caller's transaction and pushes them
to the recipients' channel groups with ``transaction.on_commit``: nothing is sent for a change that
rolls back, and a push that fails (the channel layer is down) loses nothing, because sockets replay
from the database when they reconnect. Who receives an event is decided once, when it is written:
the users named (or the child's audience) pass the delivery rule (``delivery.recipients``, two
queries for all of them), so a socket forwards a live event without asking the database again;
replays check each stored event again. Each push also raises the user's stream head (``heads``): a
socket whose head is above the last event it received lost one on the way (a full channel) and
catches up from the database; an idle socket never reads it.

The stream is the only writer of per-user events: the apps publish ``portal.events`` (a child's
``DomainEvent`` reaches everyone who may see the child; an ``AddressedEvent`` the users it names) and
``on_event`` appends them here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from messaging.conf import resume_lookback_seconds
from messaging.models import UserEvent
from messaging.realtime.control import user_group
from messaging.realtime.delivery import Delivery, Viewer, recipients, relationships
from messaging.realtime.presence import redis_client
from portal import events
from portal.access import (
    LIMITED_CAPABILITIES,
    Capability,
)
from portal.channel_layer import layer_outage
from portal.models import GuardianLink, User
from portal.vocabulary import EventType, Resource

logger = logging.getLogger(__name__)

STREAM_MESSAGE = "stream.event"
HEADS_KEY = "stream-heads"


@dataclass(frozen=True)
class Audience:
    guardians: set[uuid.UUID]
    care_team: set[uuid.UUID]

    @property
    def everyone(self) -> set[uuid.UUID]:
        return self.guardians | self.care_team


def audience(child_id: uuid.UUID, capability: Capability, confidential: bool, now: datetime | None = None) -> Audience:
    """Who may receive an event about the child: guardians whose link (and effective scope) grants
    ``capability``, unless it is confidential, and the current care team. The child's relationships
    stay known for the rest of the transaction (``emit`` decides its recipients from them)."""
    related = relationships(child_id, now or timezone.now())
    guardians: set[uuid.UUID] = set()
    if not confidential:
        guardians = {
            user_id
            for user_id, access in related.items()
            if access.link is not None
            and (access.scope == GuardianLink.Scope.FULL or capability in LIMITED_CAPABILITIES)
        }
    care_team = {user_id for user_id, access in related.items() if access.is_clinician}
    return Audience(guardians=guardians, care_team=care_team)


def event_payload(event: UserEvent) -> dict[str, Any]:
    """What a client receives, over the socket and from ``GET /events``."""
    return {
        "id": event.pk,
        "type": event.type,
        "child_id": str(event.child_id) if event.child_id else None,
        "entity_type": event.entity_type,
        "entity_id": str(event.entity_id) if event.entity_id else None,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


def _record_heads(rows: list[UserEvent]) -> None:
    """Raise each recipient's stream head to its newest pushed event (never lower it)."""
    newest: dict[str, int] = {}
    for row in rows:
        key = uuid.UUID(str(row.user_id)).hex
        newest[key] = max(newest.get(key, 0), int(row.pk))
    client = redis_client()
    if client is not None:  # one command for every recipient (a sorted set: user → newest id)
        client.zadd(cache.make_key(HEADS_KEY), newest, gt=True)
        return
    current = cache.get_many([f"{HEADS_KEY}:{key}" for key in newest])
    cache.set_many(
        {f"{HEADS_KEY}:{key}": max(value, current.get(f"{HEADS_KEY}:{key}", 0)) for key, value in newest.items()},
        timeout=None,
    )


def heads(user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each user's stream head (0 when nothing was pushed to them yet), in one round trip."""
    if not user_ids:
        return {}
    keys = [uuid.UUID(str(user_id)).hex for user_id in user_ids]
    client = redis_client()
    if client is not None:
        scores = client.zmscore(cache.make_key(HEADS_KEY), keys)
        return {user_id: int(score or 0) for user_id, score in zip(user_ids, scores, strict=True)}
    found = cache.get_many([f"{HEADS_KEY}:{key}" for key in keys])
    return {user_id: int(found.get(f"{HEADS_KEY}:{key}", 0)) for user_id, key in zip(user_ids, keys, strict=True)}


def _push(rows: list[UserEvent]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # Who receives it was decided when it was written (``emit``): the message is what the client gets.
    messages = [(user_group(row.user_id), {"type": STREAM_MESSAGE, "event": event_payload(row)}) for row in rows]

    async def send_all() -> None:
        await asyncio.gather(*(layer.group_send(group, message) for group, message in messages))

    try:
        async_to_sync(send_all)()  # one hop to the event loop for the whole batch, the sends side by side
    except Exception as error:  # the layer is down: the sockets catch up from the database
        # Logged once per outage (portal.resilience), not once per request.
        layer_outage().failed(error)
        logger.debug("channel layer unavailable; %s event(s) stay in the stream for replay", len(messages))
        return
    try:
        _record_heads(rows)
    except Exception:  # the cache is down: sockets notice lost events on their next reconnect
        logger.warning("stream heads unavailable")


_FIRST = "stream_push_first"


def _after_commit(rows: list[UserEvent], first: bool) -> None:
    """Register the push of ``rows`` for after the commit. A ``first`` one goes ahead of the after-commit
    callbacks registered before it in the current atomic block (the whole transaction, or the
    innermost savepoint), after the ``first`` pushes already there. Django runs the callbacks in list
    order; a rolled back savepoint still discards it (by the savepoint ids kept beside it)."""

    def push() -> None:
        _push(rows)

    setattr(push, _FIRST, first)
    transaction.on_commit(push, robust=True)
    connection = transaction.get_connection()
    if not first or not connection.in_atomic_block:
        return
    hooks = connection.run_on_commit
    entry = hooks.pop()
    # Only what this block registered: an enclosing block's callbacks (a test's, a caller's) keep theirs.
    savepoint = connection.savepoint_ids[-1] if connection.savepoint_ids else None
    start = next(
        (index for index, (ids, _, _) in enumerate(hooks) if savepoint is None or savepoint in ids), len(hooks)
    )
    position = next(
        (index for index in range(start, len(hooks)) if not getattr(hooks[index][1], _FIRST, False)), len(hooks)
    )
    hooks.insert(position, entry)


def emit(
    *,
    users: Iterable[uuid.UUID],
    type: EventType,
    child_id: uuid.UUID | None,
    entity_type: Resource,
    entity_id: uuid.UUID | None,
    capability: Capability = Capability.MESSAGE,
    confidential: bool = False,
    data: dict[str, Any] | None = None,
    first: bool = False,
) -> list[UserEvent]:
    """Append an event to the stream of each of ``users`` who may receive it now (the delivery rule:
    a user named by mistake gets nothing). Precondition: called inside the transaction that made the
    change (it is the outbox); delivery happens after commit, with ``first`` ahead of the rest of the
    transaction's after-commit work (other pushes, queued notifications)."""
    now = timezone.now()
    users = recipients(
        users,
        Delivery(
            entity_type=str(entity_type),
            child_id=child_id,
            capability=str(capability),
            confidential=confidential,
            data=data or {},
        ),
        now,
    )
    rows = [
        UserEvent(
            user_id=user_id,
            type=type,
            child_id=child_id,
            capability=str(capability),
            confidential=confidential,
            entity_type=entity_type,
            entity_id=entity_id,
            data=data or {},
            created_at=now,
        )
        for user_id in sorted(set(users), key=str)
    ]
    if not rows:
        return []
    created = UserEvent.objects.bulk_create(rows)
    if any(row.pk is None for row in created):  # backends without RETURNING (none we support)
        created = list(UserEvent.objects.filter(created_at=now, type=type).order_by("id"))
    _after_commit(created, first)
    return created


# -- the domain events it subscribes to ---------------------------------------------------------


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if isinstance(value, str | int | bool | None)}


def on_event(event: events.Event) -> None:
    """Append a published event to its recipients' streams, in the publishing transaction: a child's
    event to everyone who may see it (``audience``), an addressed one to the users it names."""
    if isinstance(event, events.DomainEvent):
        crowd = audience(event.child_id, event.capability, event.confidential)
        emit(
            users=crowd.everyone,
            type=event.type,
            child_id=event.child_id,
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            capability=event.capability,
            confidential=event.confidential,
            data=_plain(event.data),
        )
    elif isinstance(event, events.AddressedEvent):
        emit(
            users=event.users,
            type=event.type,
            child_id=event.child_id,
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            capability=event.capability,
            confidential=event.confidential,
            data=event.data,
            first=event.first,
        )


# -- reading the stream -------------------------------------------------------------------------


def delivery_of(row: UserEvent) -> Delivery:
    return Delivery(
        entity_type=row.entity_type,
        child_id=row.child_id,
        capability=row.capability,
        confidential=row.confidential,
        data=row.data or {},
    )


def events_after(
    *, user: User, after: int, limit: int = 500, lookback: bool = True
) -> tuple[list[dict[str, Any]], int]:
    """The user's events with an id above ``after`` (plus, with ``lookback``, the last few seconds
    before it: ids are allocated before commit, so on PostgreSQL a smaller id can commit later),
    oldest first, those the user may no longer see left out; and the id to continue after."""
    rows = UserEvent.objects.filter(user=user)
    batch = list(rows.filter(pk__gt=after).order_by("id")[:limit])
    if lookback and after > 0:
        anchor = rows.filter(pk=after).values_list("created_at", flat=True).first()
        if anchor is not None:
            since = anchor - timedelta(seconds=resume_lookback_seconds())
            recent = rows.filter(pk__lte=after, created_at__gte=since).order_by("-id")[: min(limit, 100)]
            batch = list(reversed(recent)) + batch
    viewer = Viewer(user)
    visible = [event_payload(row) for row in batch if viewer.allows(delivery_of(row))]
    return visible, max([after, *(row.pk for row in batch)])  # lookback rows are ≤ after
