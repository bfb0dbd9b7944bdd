"""The audit trail (FHIR AuditEvent): append-only rows chained by SHA-256.

``hash_n = SHA-256(hash_{n-1} || canonical(entry_n))``. Appends are serialized (an advisory
transaction lock on PostgreSQL; SQLite's write lock, taken at BEGIN IMMEDIATE) so concurrent requests
never fork the chain. Rows name entities by type and external id only, never by value.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.models import Action, AuditEvent, Outcome
from portal.vocabulary import Resource

__all__ = [
    "Action",
    "AuditEvent",
    "ClientInfo",
    "Entry",
    "Outcome",
    "Resource",
    "deny",
    "reads",
    "record",
    "record_for_child",
    "record_many",
    "verify",
]

GENESIS = "0" * 64
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that serializes appends.
_PG_LOCK_KEY = 0x5041_5544_4954  # "PAUDIT"


@dataclass
class ClientInfo:
    address: str = ""
    user_agent: str = ""


_client: contextvars.ContextVar[ClientInfo] = contextvars.ContextVar("audit_client", default=ClientInfo())  # noqa: B039


def client_from_request(request: HttpRequest) -> ClientInfo:
    return ClientInfo(
        address=str(request.META.get("REMOTE_ADDR") or "")[:45],
        user_agent=str(request.META.get("HTTP_USER_AGENT") or "")[:200],
    )


def current_client() -> ClientInfo:
    """The client (address, user agent) of the request being served."""
    return _client.get()


def set_client(info: ClientInfo) -> contextvars.Token[ClientInfo]:
    return _client.set(info)


def reset_client(token: contextvars.Token[ClientInfo]) -> None:
    _client.reset(token)


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def chain_hash(previous: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(previous.encode("ascii") + canonical(entry)).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])
    # SQLite: the project opens every transaction with BEGIN IMMEDIATE, so the write lock is held
    # from the start of this atomic block and appends are serial.


@dataclass
class Entry:
    """One audit entry to append. ``reason`` is a machine code, never free text with PHI."""

    action: str
    entity_type: Resource
    entity_id: uuid.UUID | str | None = None
    child_id: uuid.UUID | str | None = None
    outcome: str = Outcome.SUCCESS
    reason: str = ""
    # Coalesced refusals (portal.refusals): how many, from which client, and when the last happened.
    count: int = 1
    client: ClientInfo | None = None
    recorded_at: datetime | None = None


def _user_id(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


def record_many(
    entries: list[Entry], *, actor: Any, on_behalf_of: Any = None, client: ClientInfo | None = None
) -> list[AuditEvent]:
    """Append entries to the chain in one locked step (a list read audits every child it shows)."""
    if not entries:
        return []
    info = client or _client.get()
    actor_id = _user_id(actor)
    behalf_id = _user_id(on_behalf_of)
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, previous = last if last else (0, GENESIS)
        now = timezone.now()
        events = []
        for item in entries:
            seq += 1
            event = AuditEvent(
                seq=seq,
                recorded_at=item.recorded_at or now,
                actor_id=actor_id,
                on_behalf_of_id=behalf_id,
                action=item.action,
                entity_type=item.entity_type,
                entity_id=str(item.entity_id)[:64] if item.entity_id else "",
                child_id=item.child_id or None,
                outcome=item.outcome,
                reason=item.reason,
                client_address=(item.client or info).address,
                user_agent=(item.client or info).user_agent,
                count=item.count,
                prev_hash=previous,
            )
            event.hash = chain_hash(previous, event.entry())
            previous = event.hash
            events.append(event)
        AuditEvent.objects.bulk_create(events)
    return events


def record(
    *,
    actor: Any,
    action: str,
    entity_type: Resource,
    entity_id: uuid.UUID | str | None = None,
    child_id: uuid.UUID | str | None = None,
    outcome: str = Outcome.SUCCESS,
    reason: str = "",
    on_behalf_of: Any = None,
    client: ClientInfo | None = None,
) -> AuditEvent:
    """Append one audit row to the chain."""
    entry = Entry(
        action=action, entity_type=entity_type, entity_id=entity_id, child_id=child_id, outcome=outcome, reason=reason
    )
    return record_many([entry], actor=actor, on_behalf_of=on_behalf_of, client=client)[0]


def record_for_child(
    actor: Any, action: str, entity_type: Resource, entity_id: Any, child_id: Any, reason: str = ""
) -> AuditEvent:
    """Append one row about a child's record (the shape every clinical service writes)."""
    return record(
        actor=actor, action=action, entity_type=entity_type, entity_id=entity_id, child_id=child_id, reason=reason
    )


def reads(actor: Any, entity_type: Resource, child_ids: list[Any]) -> None:
    """Audit a read of PHI about each listed child."""
    record_many(
        [Entry(action=Action.READ, entity_type=entity_type, entity_id=cid, child_id=cid) for cid in child_ids],
        actor=actor,
    )


def deny(*, actor: Any, entity_type: Resource, entity_id: uuid.UUID | str | None, reason: str = "no_access") -> None:
    """Record a refused access. The child is not named: the actor may have guessed an id."""
    record(
        actor=actor,
        action=Action.DENY,
        entity_type=entity_type,
        entity_id=entity_id,
        outcome=Outcome.DENIED,
        reason=reason,
    )


@dataclass
class Break:
    seq: int
    problem: str


def verify(batch_size: int = 5000) -> Iterator[Break]:
    """Walk the chain in order and yield every place where it does not hold."""
    previous = GENESIS
    expected_seq: int | None = None
    queryset = AuditEvent.objects.order_by("seq")
    for event in queryset.iterator(chunk_size=batch_size):
        if expected_seq is not None and event.seq != expected_seq:
            yield Break(event.seq, f"rows {expected_seq}..{event.seq - 1} are missing (deleted)")
        if event.prev_hash != previous:
            yield Break(event.seq, "does not follow the row before it (a row was deleted, inserted or reordered)")
        if chain_hash(event.prev_hash, event.entry()) != event.hash:
            yield Break(event.seq, "its content no longer matches its hash (the row was edited or inserted)")
        previous = event.hash
        expected_seq = event.seq + 1
