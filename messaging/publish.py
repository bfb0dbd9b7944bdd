"""What the messenger's changes publish (``portal.events``), and the delivery rule for them.

A thread's participants are the child's audience for messages (``Audience``: guardians who may message
about the child, unless the thread is confidential, and the current care team), worked out once per
change by the service and named on each ``AddressedEvent``; alerts reach the care team, notifications
the clinicians paged. The realtime stream appends them to those users' streams. At delivery time a
thread's events follow ``thread_rule``: the child access policy for ``capability``, and a confidential
(adolescent) thread's events reach the care team only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from messaging.models import Message, Thread, UrgentAlert
from messaging.realtime import delivery
from messaging.realtime.stream import Audience, audience
from portal import events
from portal.access import Capability
from portal.vocabulary import EventType, Resource

__all__ = ["Audience", "participants"]


def participants(thread: Thread, moment: datetime | None = None) -> Audience:
    """Who takes part in the thread's conversation at ``moment``."""
    return audience(thread.child_id, Capability.MESSAGE, thread.confidential, moment)


def thread_changed(thread: Thread, crowd: Audience) -> None:
    events.publish(
        events.AddressedEvent.to(
            crowd.everyone,
            type=EventType.THREAD_CHANGED,
            child_id=thread.child_id,
            entity_type=Resource.MESSAGE_THREAD,
            entity_id=thread.pk,
            confidential=thread.confidential,
            data={
                "status": thread.status,
                "priority": thread.priority,
                "assignee_id": str(thread.assignee_id) if thread.assignee_id else None,
            },
        )
    )


def message_created(message: Message, thread: Thread, crowd: Audience, *, first: bool = False) -> None:
    """``first``: pushed ahead of the rest of the transaction's after-commit work (the message a
    participant just posted)."""
    events.publish(
        events.AddressedEvent.to(
            crowd.everyone,
            type=EventType.MESSAGE_CREATED,
            child_id=thread.child_id,
            entity_type=Resource.COMMUNICATION,
            entity_id=message.pk,
            confidential=thread.confidential,
            data={
                "thread_id": str(thread.pk),
                "kind": message.kind,
                "automatic": message.kind == Message.Kind.AUTOMATIC,
                "author_id": str(message.author_id) if message.author_id else None,
            },
            first=first,
        )
    )


def receipt_updated(thread: Thread, crowd: Audience, *, reader_id: uuid.UUID, read_at: datetime) -> None:
    events.publish(
        events.AddressedEvent.to(
            crowd.everyone,
            type=EventType.RECEIPT_UPDATED,
            child_id=thread.child_id,
            entity_type=Resource.MESSAGE_THREAD,
            entity_id=thread.pk,
            confidential=thread.confidential,
            data={"thread_id": str(thread.pk), "user_id": str(reader_id), "read_at": read_at.isoformat()},
        )
    )


def alert_changed(alert: UrgentAlert, thread: Thread, crowd: Audience) -> None:
    events.publish(
        events.AddressedEvent.to(
            crowd.care_team,
            type=EventType.ALERT_CHANGED,
            child_id=thread.child_id,
            entity_type=Resource.URGENT_ALERT,
            entity_id=alert.pk,
            capability=Capability.TREAT,
            confidential=thread.confidential,
            data={
                "thread_id": str(thread.pk),
                "status": alert.status,
                "level": alert.level,
                "acknowledged_by": str(alert.acknowledged_by_id) if alert.acknowledged_by_id else None,
            },
        )
    )


def notified(
    users: Iterable[uuid.UUID],
    thread: Thread,
    crowd: Audience,
    *,
    kind: str,
    capability: Capability = Capability.MESSAGE,
    extra: dict[str, str | int] | None = None,
) -> None:
    """Tell the notified clinicians' open sockets (those still on the care team) what they were sent."""
    events.publish(
        events.AddressedEvent.to(
            {user_id for user_id in users if user_id in crowd.care_team},
            type=EventType.NOTIFICATION,
            child_id=thread.child_id,
            entity_type=Resource.MESSAGE_THREAD,
            entity_id=thread.pk,
            capability=capability,
            confidential=thread.confidential,
            data={"kind": kind, "thread_id": str(thread.pk), **(extra or {})},
        )
    )


def thread_rule(viewer: delivery.Viewer, event: delivery.Delivery) -> bool:
    """A thread's events (its messages, receipts, alerts, notifications): the user may still message
    about (or, for alerts, treat) the child; a confidential thread's events reach the care team only."""
    if event.child_id is None:
        return False
    access = viewer.access(event.child_id)
    if access is None or (event.confidential and not access.is_clinician):
        return False
    return access.can(Capability(event.capability))


def register_rules() -> None:
    for resource in (Resource.MESSAGE_THREAD, Resource.COMMUNICATION, Resource.URGENT_ALERT):
        delivery.register(resource, thread_rule)
