"""Who may receive a stored event at the moment it is forwarded (and replayed).

The app that owns a kind of event registers the rule for its entity type (``register``): peer groups
check the membership, the messenger checks its threads' confidentiality; every other event (care's
refills, appointments, doses...) takes the default rule, the child access policy's capability check.
The stream decides when an event is written, for all its recipients at once (``recipients``: two
queries for an event about a child, whatever the number of recipients), in the transaction of the
change, and asks again when a stored event is read back (a replay, ``GET /events``), because access
can change between the write and the read: a revoked guardian, a member who left a group receives
nothing more. A change that commits after the event was written closes or re-checks the user's open
sockets through a control message (``control``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from portal.access import (
    Capability,
    ChildAccess,
    current_membership_q,
    effective_scope,
    live_link_q,
    resolve_access,
)
from portal.models import CareTeamMembership, Child, GuardianLink, User
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

    def __init__(self, user: User, known: dict[uuid.UUID, ChildAccess | None] | None = None) -> None:
        self.user = user
        self.memo: dict[tuple[str, str], bool] = {}
        self._children: dict[uuid.UUID, ChildAccess | None] = dict(known or {})

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


# Capabilities the relationships alone do not decide (``ChildAccess.manager`` is a permission).
_PERMISSION_CAPABILITIES = frozenset({Capability.MANAGE, Capability.APPROVE})


def _accesses(
    child_id: uuid.UUID, user_ids: set[uuid.UUID], capability: Capability, moment: datetime
) -> dict[uuid.UUID, ChildAccess | None]:
    """``resolve_access`` of the child for each of the users, in two queries (links, care-team
    memberships) instead of a few per user. Users with neither get a relationship-less access."""
    links = list(
        GuardianLink.objects.filter(live_link_q(moment), child_id=child_id, guardian_id__in=user_ids).select_related(
            "child"
        )
    )
    memberships = list(
        CareTeamMembership.objects.filter(
            current_membership_q(moment), child_id=child_id, clinician_id__in=user_ids, clinician__is_active=True
        ).select_related("child")
    )
    child: Child | None = links[0].child if links else memberships[0].child if memberships else None
    if child is None and capability in _PERMISSION_CAPABILITIES:
        child = Child.objects.filter(pk=child_id).first()
    if child is None:  # nobody has a relationship with it (or it does not exist)
        return dict.fromkeys(user_ids)
    found = {user_id: ChildAccess(child=child) for user_id in user_ids}
    for link in links:
        access = found[link.guardian_id]  # type: ignore[index]
        access.link, access.scope = link, effective_scope(link, moment)
    for membership in memberships:
        found[membership.clinician_id].care_roles.append(membership.role)
    if capability in _PERMISSION_CAPABILITIES:
        for user in User.objects.filter(pk__in=user_ids, is_active=True):
            found[user.pk] = resolve_access(user, child, moment)
    return dict(found)


def recipients(users: Iterable[uuid.UUID], event: Delivery, now: datetime | None = None) -> set[uuid.UUID]:
    """Which of ``users`` may receive the event now: the same rules as ``Viewer.allows``, decided for
    all of them at once. An event about a child costs two queries whatever the number of users; an
    event about no child asks its rule per user (a peer group's membership)."""
    user_ids = set(users)
    if not user_ids:
        return set()
    rule = _rules.get(event.entity_type, child_rule)
    if event.child_id is None:
        people = {user.pk: user for user in User.objects.filter(pk__in=user_ids, is_active=True)}
        return {user_id for user_id, user in people.items() if rule(Viewer(user), event)}
    known = _accesses(event.child_id, user_ids, Capability(event.capability), now or timezone.now())
    allowed = set()
    for user_id, access in known.items():
        # The rules read the user only through ``access`` for an event about a child.
        viewer = Viewer(User(pk=user_id), {event.child_id: access})
        if rule(viewer, event):
            allowed.add(user_id)
    return allowed
