"""Domain events: how one app tells the others that something changed, without importing them.

A service publishes an event inside its transaction; subscribers run at once, in the same
transaction (so whatever they persist, such as a user's event stream, commits or rolls back with the
change), and push anything realtime with ``transaction.on_commit``. Payloads carry ids and states,
never PHI: a client that receives an event fetches the details through the API, where the access
policy applies.

Three shapes, one ``publish``:

* ``DomainEvent``: something about a child changed; whoever may see the child (with ``capability``)
  receives it. Care's refills, appointments, doses, medications and coverage.
* ``AddressedEvent``: the publisher names the recipients, because the child's relationships do not
  decide them: a group post (no child: the group's members), a message thread's participants, the
  clinicians an alert pages. Each recipient's socket still checks the event again when it forwards it.
* ``ControlEvent``: a user's access or session changed (``SESSION_ENDED``, ``ACCESS_CHANGED``,
  ``ACCESS_REVOKED``); it is not stored anywhere, it tells the user's open sockets to close or re-check.
  ``end_sessions``, ``access_changed`` and ``access_revoked`` publish them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from portal.access import Capability
from portal.vocabulary import EventType, Resource


@dataclass(frozen=True)
class DomainEvent:
    type: EventType
    child_id: uuid.UUID
    entity_type: Resource
    entity_id: uuid.UUID
    # What a guardian must be able to do with the child to receive it (limited scope sees schedules).
    capability: Capability = Capability.CLINICAL
    data: dict[str, Any] = field(default_factory=dict)
    # Adolescent-confidential items reach the care team only.
    confidential: bool = False
    actor_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AddressedEvent:
    """An event for the users the publisher names (``child_id`` is None for what concerns no child)."""

    type: EventType
    users: frozenset[uuid.UUID]
    entity_type: Resource
    entity_id: uuid.UUID
    child_id: uuid.UUID | None = None
    capability: Capability = Capability.MESSAGE
    confidential: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    # Delivered ahead of everything else the transaction does after its commit (a new message: what
    # the people in the conversation wait for).
    first: bool = False

    @classmethod
    def to(cls, users: Iterable[uuid.UUID], **fields: Any) -> AddressedEvent:
        return cls(users=frozenset(users), **fields)


CONTROL_TYPES = frozenset({EventType.SESSION_ENDED, EventType.ACCESS_CHANGED, EventType.ACCESS_REVOKED})


@dataclass(frozen=True)
class ControlEvent:
    """A change to what one user's open sockets may do; ``session_key`` narrows ``SESSION_ENDED`` to the
    sockets of one session (None: all of them)."""

    type: EventType
    user_id: uuid.UUID
    session_key: str | None = None

    def __post_init__(self) -> None:
        if self.type not in CONTROL_TYPES:
            raise ValueError(f"{self.type} is not a control event")


Event = DomainEvent | AddressedEvent | ControlEvent
Subscriber = Callable[[Event], None]
_subscribers: list[Subscriber] = []


def subscribe(handler: Subscriber) -> Subscriber:
    """Register a handler (usable as a decorator); registering the same handler twice has no effect.
    A handler receives every event and ignores the shapes it does not handle."""
    if handler not in _subscribers:
        _subscribers.append(handler)
    return handler


def unsubscribe(handler: Subscriber) -> None:
    if handler in _subscribers:
        _subscribers.remove(handler)


def publish(event: Event) -> None:
    """Hand the event to every subscriber. Call inside the transaction that made the change."""
    for handler in list(_subscribers):
        handler(event)


def _user(user_id: uuid.UUID | str) -> uuid.UUID:
    return uuid.UUID(str(user_id))


def end_sessions(*, user_id: uuid.UUID | str, session_key: str | None = None) -> None:
    """Close the user's sockets opened with ``session_key`` (all of them when it is None)."""
    publish(ControlEvent(EventType.SESSION_ENDED, _user(user_id), session_key))


def access_changed(*, user_id: uuid.UUID | str) -> None:
    """The user's relationships changed (for example a revoked link): sockets re-check access."""
    publish(ControlEvent(EventType.ACCESS_CHANGED, _user(user_id)))


def access_revoked(*, user_id: uuid.UUID | str) -> None:
    """The user lost (or may have lost) access to a child: close their sockets so that nothing more is
    forwarded under the old access; clients reconnect and start again from what they may now see."""
    publish(ControlEvent(EventType.ACCESS_REVOKED, _user(user_id)))
