"""Domain events: how one app tells the others that something about a child changed.

A service publishes an event inside its transaction; subscribers run at once, in the same
transaction (so whatever they persist, such as a user's event stream, commits or rolls back with the
change), and push anything realtime with ``transaction.on_commit``. Payloads carry ids and states,
never PHI: a client that receives an event fetches the details through the API, where the access
policy applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
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


Subscriber = Callable[[DomainEvent], None]
_subscribers: list[Subscriber] = []


def subscribe(handler: Subscriber) -> Subscriber:
    """Register a handler (usable as a decorator); registering the same handler twice has no effect."""
    if handler not in _subscribers:
        _subscribers.append(handler)
    return handler


def unsubscribe(handler: Subscriber) -> None:
    if handler in _subscribers:
        _subscribers.remove(handler)


def publish(event: DomainEvent) -> None:
    """Hand the event to every subscriber. Call inside the transaction that made the change."""
    for handler in list(_subscribers):
        handler(event)
