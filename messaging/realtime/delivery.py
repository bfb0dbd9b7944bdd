"""Who may receive a stored event at the moment it is forwarded (and replayed).

The app that owns a kind of event registers the rule for its entity type (``register``): peer groups
check the membership, the messenger checks its threads' confidentiality; every other event (care's
refills, appointments, doses...) takes the default rule, the child access policy's capability check.
The stream asks again at delivery time because access can change between the write and the read: a
revoked guardian, a member who left a group receives nothing more.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal.access import Capability, ChildAccess, resolve_access
from portal.models import Child, User
from portal.vocabulary import Resource


@dataclass(frozen=True)
class Delivery:
    """What a rule knows of an event: what the stream stored with it."""

    entity_type: str
    child_id: uuid.UUID | None
    capability: str
    confidential: bool
    data: dict[str, Any] = field(default_factory=dict)


class Viewer:
    """One user's access decisions for one batch of events (one resolve per child); rules may keep
    their own answers in ``memo`` for the batch."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.memo: dict[tuple[str, str], bool] = {}
        self._children: dict[uuid.UUID, ChildAccess | None] = {}

    def access(self, child_id: uuid.UUID) -> ChildAccess | None:
        if child_id not in self._children:
            child = Child.objects.filter(pk=child_id).first()
            self._children[child_id] = resolve_access(self.user, child) if child is not None else None
        return self._children[child_id]

    def allows(self, event: Delivery) -> bool:
        return _rules.get(event.entity_type, child_rule)(self, event)


Rule = Callable[[Viewer, Delivery], bool]
_rules: dict[str, Rule] = {}


def register(entity_type: Resource, rule: Rule) -> None:
    """The rule for events about ``entity_type``; the owning app registers it in its ``ready``."""
    _rules[str(entity_type)] = rule


def child_rule(viewer: Viewer, event: Delivery) -> bool:
    """The default: the user may still do ``capability`` with the child (an event about no child
    reaches whoever it was addressed to); a confidential event reaches the care team only."""
    if event.child_id is None:
        return True
    access = viewer.access(event.child_id)
    if access is None:
        return False
    if event.confidential and not access.is_clinician:
        return False
    return access.can(Capability(event.capability))


def may_receive(user: User, event: Delivery) -> bool:
    """One event, asked on its own (a live event the socket forwards)."""
    return Viewer(user).allows(event)
