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

from django.db import transaction
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
_MEMO = "_portal_relationships"


def relationships(
    child_id: uuid.UUID, moment: datetime, users: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, ChildAccess]:
    """The access of everyone with a relationship to the child at ``moment`` (of ``users`` only, when
    given): live guardian links and current care-team memberships, two queries. Whoever is not in
    the answer has no relationship with the child (``resolve_access`` without the permissions)."""
    links = GuardianLink.objects.filter(live_link_q(moment), child_id=child_id).select_related("child")
    memberships = CareTeamMembership.objects.filter(
        current_membership_q(moment), child_id=child_id, clinician__is_active=True
    ).select_related("child")
    if users is not None:
        links, memberships = links.filter(guardian_id__in=users), memberships.filter(clinician_id__in=users)
    found: dict[uuid.UUID, ChildAccess] = {}
    for link in links:
        access = found.setdefault(link.guardian_id, ChildAccess(child=link.child))  # type: ignore[arg-type]
        access.link, access.scope = link, effective_scope(link, moment)
    for membership in memberships:
        found.setdefault(membership.clinician_id, ChildAccess(child=membership.child)).care_roles.append(
            membership.role
        )
    if users is None:
        _remember(child_id, found)
    return found


def _remember(child_id: uuid.UUID, found: dict[uuid.UUID, ChildAccess]) -> None:
    """Keep the child's complete relationships for the rest of the transaction: the service that
    worked out an event's audience and the stream that writes the event ask the same question."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return
    memo: dict[uuid.UUID, tuple[Callable[[], None], dict[uuid.UUID, ChildAccess]]]
    memo = connection.__dict__.setdefault(_MEMO, {})

    def forget() -> None:
        memo.pop(child_id, None)

    # The entry lives while this callback is pending: a rollback (of the transaction, or of the
    # savepoint the entry was made in) discards the callback, and so the entry (``_known``).
    transaction.on_commit(forget)
    memo[child_id] = (forget, found)


def _known(child_id: uuid.UUID) -> dict[uuid.UUID, ChildAccess] | None:
    connection = transaction.get_connection()
    memo = connection.__dict__.get(_MEMO)
    entry = memo.get(child_id) if memo else None
    if entry is None:
        return None
    forget, found = entry
    if not connection.in_atomic_block or not any(pending[1] is forget for pending in connection.run_on_commit):
        memo.pop(child_id, None)
        return None
    return found


def _accesses(
    child_id: uuid.UUID, user_ids: set[uuid.UUID], capability: Capability, moment: datetime
) -> dict[uuid.UUID, ChildAccess | None]:
    """``resolve_access`` of the child for each of the users: the transaction's memo of the child's
    relationships (no query), or two queries; the permissions only for the capabilities they decide."""
    known = _known(child_id)
    if known is None:
        known = relationships(child_id, moment, user_ids)
    found: dict[uuid.UUID, ChildAccess | None] = {user_id: known.get(user_id) for user_id in user_ids}
    if capability in _PERMISSION_CAPABILITIES:
        child = Child.objects.filter(pk=child_id).first()
        if child is not None:
            for user in User.objects.filter(pk__in=user_ids, is_active=True):
                found[user.pk] = resolve_access(user, child, moment)
    return found


def recipients(users: Iterable[uuid.UUID], event: Delivery, now: datetime | None = None) -> set[uuid.UUID]:
    """Which of ``users`` may receive the event now: the same rules as ``Viewer.allows``, decided for
    all of them at once. An event about a child costs two queries whatever the number of users (none
    when the transaction already worked out the child's audience); an event about no child asks its
    rule per user (a peer group's membership)."""
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
