"""The outbox the integration engine polls: what the portal created, changed or removed, in an order
that never lets a change slip behind the engine's cursor.

Every write in the portal appends an audit row (its services do it themselves), naming the entity by
FHIR type and id. The audit ledger (``portal.ledger``) gives each row, once its transaction and every
older one have ended, a leaf index: a gap-free position that only grows, assigned in commit-safe
order by the sequencer (on PostgreSQL it seals only rows older than the oldest running transaction).
The outbox is that sequence, filtered to writes (create, update, delete) on the resource types the
FHIR API serves, by anyone but the EHR itself (the import and the backend clients: the engine is not
told back what it sent). The cursor is a leaf index, so a row that commits late is sealed after the
rows the engine has already seen and appears after the cursor, never behind it.

A change is listed once it is sealed: within the worker's seal interval (``PORTAL_AUDIT_SEAL_SECONDS``)
plus the longest write transaction running at the time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Max

from interop.context import IMPORT_ACTOR_EMAIL
from interop.models import BackendClient
from portal.models import Action, AuditEvent, LedgerLeaf, Outcome, User

# At most this many ledger leaves are looked at per page: a page of a quiet outbox (mostly reads in
# the trail) still answers quickly, and its cursor moves past what it looked at.
SCAN_WINDOW = 50_000
CHUNK = 2_000
OPERATIONS = {Action.CREATE: "create", Action.UPDATE: "update", Action.DELETE: "delete"}
# Types whose FHIR resource is one per child (``interop.outbound``), while the audit trail names the rows.
BY_CHILD = frozenset({"CareTeam"})


@dataclass(frozen=True)
class Change:
    cursor: int
    resource_type: str
    resource_id: str
    operation: str  # create, update or delete
    recorded_at: datetime


@dataclass(frozen=True)
class Page:
    changes: list[Change]
    cursor: int  # poll again from here: every leaf up to it has been looked at


def _ehr_actors() -> list[Any]:
    system = list(User.objects.filter(email=IMPORT_ACTOR_EMAIL).values_list("pk", flat=True))
    return system + list(BackendClient.objects.values_list("account_id", flat=True))


def _change(index: int, kind: str, ident: str, child: Any, action: str, at: datetime) -> Change:
    if kind in BY_CHILD:
        # A care-team membership is audited by its own id; the FHIR CareTeam is the child's whole team.
        return Change(index, kind, str(child), "update", at)
    return Change(index, kind, ident, OPERATIONS[Action(action)], at)


def changes_since(*, cursor: int, count: int, types: Collection[str]) -> Page:
    """Changes after ``cursor`` (a ledger leaf index; -1 for the beginning), at most ``count``, of
    the given resource types, in ledger order.

    Leaves are read in chunks by index range, then their audit rows by primary key: each chunk is
    two primary-key lookups, whatever the ledger's size."""
    if not types:
        return Page([], cursor)
    window_end = cursor + SCAN_WINDOW
    # The last sealed leaf is read first: leaves are sealed as a prefix (one sequencer at a time,
    # each batch in index order) and never removed, so every leaf up to it is visible to the queries
    # below, whichever seal commits in between; what sealed after it waits for the next page.
    last = LedgerLeaf.objects.filter(index__lte=window_end).aggregate(last=Max("index"))["last"]
    bound = min(window_end, last if last is not None else -1)
    actors = _ehr_actors()
    changes: list[Change] = []
    position = cursor
    while position < bound:
        leaves = dict(
            LedgerLeaf.objects.filter(index__gt=position, index__lte=bound)
            .order_by("index")
            .values_list("event_id", "index")[:CHUNK]
        )
        if not leaves:
            break
        rows = (
            AuditEvent.objects.filter(
                seq__in=list(leaves), action__in=list(OPERATIONS), outcome=Outcome.SUCCESS, entity_type__in=list(types)
            )
            .exclude(entity_id="")
            .exclude(entity_type__in=list(BY_CHILD), child_id__isnull=True)
            .exclude(actor_id__in=actors)
            .values_list("seq", "entity_type", "entity_id", "child_id", "action", "recorded_at")
        )
        for index, row in sorted((leaves[row[0]], row) for row in rows):
            changes.append(_change(index, *row[1:]))
            if len(changes) == count:
                return Page(changes, index)
        position = max(leaves.values())
    return Page(changes, max(position, cursor))
