"""What every care service does alike: audit a write on the child's record, publish its domain event
(delivered after commit), and fetch one of the child's rows through the access policy."""

from __future__ import annotations

import uuid
from typing import Any

from portal import audit, events
from portal.access import Capability, ChildAccess, hide_confidential
from portal.errors import NotFound
from portal.models import User
from portal.vocabulary import EventType, Resource


def publish(
    kind: EventType,
    access: ChildAccess,
    entity_type: Resource,
    entity_id: uuid.UUID,
    actor: User,
    capability: Capability,
    confidential: bool = False,
    **data: Any,
) -> None:
    events.publish(
        events.DomainEvent(
            type=kind,
            child_id=access.child.pk,
            entity_type=entity_type,
            entity_id=entity_id,
            capability=capability,
            confidential=confidential,
            data=data,
            actor_id=actor.pk,
        )
    )


def audit_child(
    actor: User | None, action: str, entity_type: Resource, entity_id: Any, access: ChildAccess, reason: str = ""
) -> None:
    audit.record_for_child(actor, action, entity_type, entity_id, access.child.pk, reason)


def child_row(queryset: Any, access: ChildAccess, pk: uuid.UUID, *, lock: bool, what: str) -> Any:
    """One row about the child (confidential ones for the care team only), optionally locked, or 404."""
    rows = hide_confidential(queryset.filter(pk=pk, child=access.child), access)
    if lock:
        rows = rows.select_for_update()
    row = rows.first()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row
