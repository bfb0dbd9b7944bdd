"""The audit trail (FHIR AuditEvent): append-only rows, sealed into a signed Merkle tree ledger.

Appending is a plain INSERT: no lock and no read of the row before, so concurrent requests never wait
on each other. The sequencer in ``portal.ledger`` seals new rows in batches into an RFC 6962 Merkle
tree and signs a checkpoint; ``verify`` recomputes it (see that module for the guarantee and for how
rows committed out of order are handled). Rows written before the ledger also keep the SHA-256 hash
chain they were written with (``hash_n = SHA-256(hash_{n-1} || canonical(entry_n))``), which
``verify`` still walks. Rows name entities by type and external id only, never by value.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.http import HttpRequest
from django.utils import timezone

from portal import ledger
from portal.models import Action, AuditEvent, Outcome
from portal.vocabulary import Resource

__all__ = [
    "Action",
    "AuditEvent",
    "ClientInfo",
    "Entry",
    "Held",
    "Outcome",
    "Resource",
    "deny",
    "held",
    "reads",
    "record",
    "record_for_child",
    "record_many",
    "verify",
]

GENESIS = "0" * 64


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


canonical = ledger.canonical


def chain_hash(previous: str, entry: dict[str, Any]) -> str:
    """The hash of a row of the pre-ledger chain."""
    return hashlib.sha256(previous.encode("ascii") + canonical(entry)).hexdigest()


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


# Rows per INSERT when held appends are written: 15 parameters a row stays within every backend's
# limit on parameters per statement (SQLite's 32,766; PostgreSQL's 65,535).
HELD_ROWS_PER_INSERT = 1000


class Held:
    """Appends held back to be written together (``held``): one INSERT for a batch job's many
    writes, in the transaction that made them. ``mark`` and ``discard`` drop the entries of a part
    of the work that was rolled back (a savepoint)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def mark(self) -> int:
        return len(self.events)

    def discard(self, mark: int) -> None:
        del self.events[mark:]

    def flush(self) -> None:
        """Write what is held (call inside the transaction that made the changes, before it commits)."""
        for start in range(0, len(self.events), HELD_ROWS_PER_INSERT):
            _insert(self.events[start : start + HELD_ROWS_PER_INSERT])
        self.events = []


_held: contextvars.ContextVar[Held | None] = contextvars.ContextVar("audit_held", default=None)


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """Within the block, appends are held (their ``recorded_at`` is the moment of the call) and
    written when the block ends, or earlier by ``Held.flush``; if it ends with an exception they are
    dropped, as the transaction that made them rolls back. Precondition: the block sits inside that
    transaction (its end comes before the commit)."""
    batch = Held()
    token = _held.set(batch)
    try:
        yield batch
    finally:
        _held.reset(token)
    batch.flush()  # not reached when the block raised


def record_many(
    entries: list[Entry], *, actor: Any, on_behalf_of: Any = None, client: ClientInfo | None = None
) -> list[AuditEvent]:
    """Append entries in one INSERT (a list read audits every child it shows), or hold them for the
    batch being written (``held``). The rows join the ledger when the sequencer next seals
    (``portal.ledger``)."""
    if not entries:
        return []
    info = client or _client.get()
    actor_id = _user_id(actor)
    behalf_id = _user_id(on_behalf_of)
    now = timezone.now()
    events = [
        AuditEvent(
            recorded_at=item.recorded_at or now,
            actor_id=actor_id,
            on_behalf_of_id=behalf_id,
            action=item.action,
            entity_type=str(item.entity_type),
            entity_id=str(item.entity_id)[:64] if item.entity_id else "",
            child_id=item.child_id or None,
            outcome=item.outcome,
            reason=item.reason,
            client_address=(item.client or info).address,
            user_agent=(item.client or info).user_agent,
            count=item.count,
        )
        for item in entries
    ]
    batch = _held.get()
    if batch is not None:
        batch.events.extend(events)
        return events
    _insert(events)
    return events


# The columns an append writes (``seq`` comes from the database; on PostgreSQL so does ``xid``).
_COLUMNS = (
    "id",
    "recorded_at",
    "actor_id",
    "on_behalf_of_id",
    "action",
    "entity_type",
    "entity_id",
    "child_id",
    "outcome",
    "reason",
    "client_address",
    "user_agent",
    "count",
    "prev_hash",
    "hash",
)


def _db_uuid(value: Any, native: bool) -> Any:
    if value is None:
        return None
    if not isinstance(value, uuid.UUID):
        value = uuid.UUID(str(value))
    return value if native else value.hex


def _insert(events: list[AuditEvent]) -> None:
    """One INSERT ... RETURNING seq for all the rows: a single statement is atomic on its own, so
    outside a transaction an append costs one round trip (bulk_create would add BEGIN and COMMIT)."""
    alias = router.db_for_write(AuditEvent)
    conn = connections[alias]
    quote = conn.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    # Only the model's own table and column names are interpolated; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(quote(name) for name in _COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(events))} RETURNING {quote('seq')}"
    )
    native = conn.features.has_native_uuid_field
    params: list[Any] = []
    for event in events:
        # What the fields' get_db_prep_save would give, without the per-field dispatch (appends are
        # the hottest write of the portal).
        params += [
            _db_uuid(event.id, native),
            conn.ops.adapt_datetimefield_value(event.recorded_at),
            _db_uuid(event.actor_id, native),
            _db_uuid(event.on_behalf_of_id, native),
            str(event.action),
            str(event.entity_type),
            str(event.entity_id),
            _db_uuid(event.child_id, native),
            str(event.outcome),
            str(event.reason),
            str(event.client_address),
            str(event.user_agent),
            int(event.count),
            event.prev_hash,
            event.hash,
        ]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        seqs = [value for (value,) in cursor.fetchall()]
    # Rows come back in the order of VALUES (as bulk_create also relies on).
    for event, seq in zip(events, seqs, strict=True):
        event.seq = seq
        event._state.adding = False
        event._state.db = alias


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
    """Append one audit row."""
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
    """One place where the trail does not hold: ``seq`` names the audit row when one is known,
    ``index`` the ledger leaf."""

    seq: int | None
    problem: str
    index: int | None = None


def verify(batch_size: int = 5000, *, all_checkpoints: bool = False) -> Iterator[Break]:
    """Yield every place where the trail does not hold: the pre-ledger chain, then the ledger
    (every leaf against its row, the latest checkpoint's root and signature, or every checkpoint's
    with ``all_checkpoints``, the stored tree)."""
    yield from _verify_chain(batch_size)
    for item in ledger.verify(batch_size, all_checkpoints=all_checkpoints):
        yield Break(item.seq, item.problem, item.index)


def _verify_chain(batch_size: int) -> Iterator[Break]:
    """Walk the rows written before the ledger (those with a chain hash) in order."""
    previous = GENESIS
    expected_seq: int | None = None
    queryset = AuditEvent.objects.exclude(hash="").order_by("seq")
    for event in queryset.iterator(chunk_size=batch_size):
        if expected_seq is not None and event.seq != expected_seq:
            yield Break(event.seq, f"rows {expected_seq}..{event.seq - 1} are missing (deleted)")
        if event.prev_hash != previous:
            yield Break(event.seq, "does not follow the row before it (a row was deleted, inserted or reordered)")
        if chain_hash(event.prev_hash, event.entry()) != event.hash:
            yield Break(event.seq, "its content no longer matches its hash (the row was edited or inserted)")
        previous = event.hash
        expected_seq = event.seq + 1
