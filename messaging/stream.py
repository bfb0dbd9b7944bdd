"""Each user's persisted, ordered event stream (the outbox), and its delivery.

``emit`` writes one ``UserEvent`` row per recipient inside the caller's transaction and pushes them
to the recipients' channel groups with ``transaction.on_commit``: nothing is sent for a change that
rolls back, and a push that fails (the channel layer is down) loses nothing, because sockets replay
from the database when they reconnect. Recipients are worked out from the access policy when the
event is written, and each socket checks again when it forwards it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from messaging.models import UserEvent
from portal import events
from portal.access import (
    LIMITED_CAPABILITIES,
    Capability,
    ChildAccess,
    current_membership_q,
    effective_scope,
    live_link_q,
    resolve_access,
)
from portal.channel_layer import layer_outage
from portal.models import CareTeamMembership, Child, GuardianLink, User
from portal.realtime import user_group
from portal.vocabulary import EventType, Resource

logger = logging.getLogger(__name__)

STREAM_MESSAGE = "stream.event"


@dataclass(frozen=True)
class Audience:
    guardians: set[uuid.UUID]
    care_team: set[uuid.UUID]

    @property
    def everyone(self) -> set[uuid.UUID]:
        return self.guardians | self.care_team


def audience(child_id: uuid.UUID, capability: Capability, confidential: bool, now: datetime | None = None) -> Audience:
    """Who may receive an event about the child: guardians whose link (and effective scope) grants
    ``capability``, unless it is confidential, and the current care team."""
    moment = now or timezone.now()
    guardians: set[uuid.UUID] = set()
    if not confidential:
        for link in GuardianLink.objects.filter(live_link_q(moment), child_id=child_id).select_related("child"):
            scope = effective_scope(link, moment)
            if scope == GuardianLink.Scope.FULL or capability in LIMITED_CAPABILITIES:
                guardians.add(link.guardian_id)  # type: ignore[arg-type]
    care_team = set(
        CareTeamMembership.objects.filter(
            current_membership_q(moment), child_id=child_id, clinician__is_active=True
        ).values_list("clinician_id", flat=True)
    )
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


def _push(rows: list[UserEvent]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    messages = [
        (
            user_group(row.user_id),
            {
                "type": STREAM_MESSAGE,
                "event": event_payload(row),
                "capability": row.capability,
                "confidential": row.confidential,
            },
        )
        for row in rows
    ]

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    try:
        async_to_sync(send_all)()  # one hop to the event loop for the whole batch
    except Exception as error:  # the layer is down: the sockets catch up from the database
        # Logged once per outage (portal.resilience), not once per request.
        layer_outage().failed(error)
        logger.debug("channel layer unavailable; %s event(s) stay in the stream for replay", len(messages))


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
) -> list[UserEvent]:
    """Append an event to each user's stream. Precondition: called inside the transaction that made
    the change (it is the outbox); delivery happens after commit."""
    now = timezone.now()
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
    transaction.on_commit(lambda: _push(created), robust=True)
    return created


# -- care's domain events -----------------------------------------------------------------------


def on_domain_event(event: events.DomainEvent) -> None:
    """Deliver another app's domain event (refill, appointment, dose, medication, coverage changes)
    to everyone who may see it, in the publishing transaction."""
    crowd = audience(event.child_id, event.capability, event.confidential)
    emit(
        users=crowd.everyone,
        type=event.type,
        child_id=event.child_id,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        capability=event.capability,
        confidential=event.confidential,
        data={key: value for key, value in event.data.items() if isinstance(value, str | int | bool | None)},
    )


def connect() -> None:
    events.subscribe(on_domain_event)


# -- reading the stream -------------------------------------------------------------------------


class AccessCache:
    """Access decisions for one batch of events (one resolve per child)."""

    def __init__(self, user: User) -> None:
        self.user = user
        self._children: dict[uuid.UUID, ChildAccess | None] = {}
        self._groups: dict[str, bool] = {}

    def allows(
        self, child_id: uuid.UUID | None, capability: str, confidential: bool, group_id: str | None = None
    ) -> bool:
        if group_id is not None:
            return self._group_member(group_id)
        if child_id is None:
            return True
        if child_id not in self._children:
            child = Child.objects.filter(pk=child_id).first()
            self._children[child_id] = resolve_access(self.user, child) if child is not None else None
        access = self._children[child_id]
        if access is None:
            return False
        if confidential and not access.is_clinician:
            return False
        return access.can(Capability(capability))

    def _group_member(self, group_id: str) -> bool:
        """Peer-group events reach live members only: a member who left or was banned gets nothing more."""
        if group_id not in self._groups:
            from community.models import LIVE_MEMBER_STATUSES, Membership

            self._groups[group_id] = Membership.objects.filter(
                group_id=group_id, user=self.user, status__in=LIVE_MEMBER_STATUSES
            ).exists()
        return self._groups[group_id]


def may_receive(
    user: User, child_id: uuid.UUID | str | None, capability: str, confidential: bool, group_id: str | None = None
) -> bool:
    """The access policy (or, for a peer-group event, the membership), asked again at delivery time."""
    return AccessCache(user).allows(uuid.UUID(str(child_id)) if child_id else None, capability, confidential, group_id)


def events_after(
    *, user: User, after: int, limit: int = 500, lookback: bool = True
) -> tuple[list[dict[str, Any]], int]:
    """The user's events with an id above ``after`` (plus, with ``lookback``, the last few seconds
    before it: ids are allocated before commit, so on PostgreSQL a smaller id can commit later),
    oldest first, those the user may no longer see left out; and the id to continue after."""
    from messaging.conf import resume_lookback_seconds

    rows = UserEvent.objects.filter(user=user)
    batch = list(rows.filter(pk__gt=after).order_by("id")[:limit])
    if lookback and after > 0:
        anchor = rows.filter(pk=after).values_list("created_at", flat=True).first()
        if anchor is not None:
            since = anchor - timedelta(seconds=resume_lookback_seconds())
            recent = rows.filter(pk__lte=after, created_at__gte=since).order_by("-id")[: min(limit, 100)]
            batch = list(reversed(recent)) + batch
    checker = AccessCache(user)
    visible = [
        event_payload(row)
        for row in batch
        if checker.allows(row.child_id, row.capability, row.confidential, (row.data or {}).get("group_id"))
    ]
    return visible, max([after, *(row.pk for row in batch)])  # lookback rows are ≤ after
