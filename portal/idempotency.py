"""Idempotency for every retried write: ``Idempotency-Key`` (refills) and ``client_id`` (threads,
messages) go through one mechanism.

1. ``lock_key`` serialises requests that carry the same key (per user and scope): on PostgreSQL a
   transaction-scoped advisory lock on a hash of the key; on SQLite every write transaction already
   runs alone (``BEGIN IMMEDIATE``). A duplicate waits for the first request's transaction to end, up
   to ``PORTAL_IDEMPOTENCY_WAIT_SECONDS``, then answers ``409 in_progress`` with ``Retry-After``.
2. Holding the lock, the service looks for the stored answer: an ``IdempotencyRecord`` (refills) or
   the row the key names (a ``Message`` by author and ``client_id``). Found: replay it, before any rate
   limit is counted. Not found: do the work, store the answer in the same transaction.

A first request that fails rolls its claim back with its work, so a retry does the work again; a
process killed mid-request releases the lock with its connection.

Use inside the service's transaction::

    with transaction.atomic():
        replay = idempotency.begin(user=..., scope="refill.create", key=key, payload=body)
        if replay.done:
            return Refill.objects.get(pk=replay.response["refill_id"]), created(replay.status_code)
        ...do the work...
        replay.finish(status_for(created=True), {"refill_id": str(refill.pk)})

The record keeps only what a replay needs (the row's id); the API edge shapes the answer from the
row, and ``status_for`` turns a service's ``(row, created)`` into the endpoint's status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction

from portal.errors import InProgress, Invalid
from portal.models import IdempotencyRecord, User

MAX_KEY_LENGTH = 100
# Advisory locks taken here use PostgreSQL's two-integer key space (the audit trail uses the
# one-bigint space, which does not overlap); this first integer names idempotency keys.
_LOCK_NAMESPACE = 0x1DE4
# PostgreSQL's "lock_not_available": the lock_timeout ran out.
_LOCK_TIMEOUT = "55P03"


CREATED, FOUND = 201, 200


def status_for(*, created: bool) -> int:
    """The status of every create endpoint: 201 when the request made the row, 200 when a retry found
    the row an earlier request made (``client_id``)."""
    return CREATED if created else FOUND


def created(status_code: int) -> bool:
    """Whether a stored answer's status says the row was made by that request."""
    return status_code == CREATED


def wait_seconds() -> float:
    return float(getattr(settings, "PORTAL_IDEMPOTENCY_WAIT_SECONDS", 10))


def lock_key(*, user: User, scope: str, key: str) -> None:
    """Wait until no other transaction holds ``key`` for this user and scope, then hold it until this
    transaction ends. Raises ``InProgress`` after ``PORTAL_IDEMPOTENCY_WAIT_SECONDS``.

    Precondition: inside ``transaction.atomic()``, before the stored answer is looked up.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_key holds its lock until the transaction ends: call it inside atomic().")
    if connection.vendor != "postgresql":
        return  # SQLite: the write transaction (BEGIN IMMEDIATE) already excludes every other writer
    digest = hashlib.sha256(f"{scope}\x00{user.pk}\x00{key}".encode()).digest()
    slot = int.from_bytes(digest[:4], "big", signed=True)
    with connection.cursor() as cursor:  # the usual case, nobody holds it: one statement, no savepoint
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, slot])
        row = cursor.fetchone()
    if row and row[0]:
        return
    timeout_ms = max(1, int(wait_seconds() * 1000))
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: a timeout undoes only this
            cursor.execute("SELECT current_setting('lock_timeout')")
            row = cursor.fetchone()
            previous = str(row[0]) if row else "0"
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{timeout_ms}ms"])
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, slot])
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == _LOCK_TIMEOUT:
            raise InProgress() from None
        raise


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Replay:
    record: IdempotencyRecord
    done: bool

    @property
    def status_code(self) -> int:
        return int(self.record.status_code or 200)

    @property
    def response(self) -> Any:
        return self.record.response

    def finish(self, status_code: int, response: Any) -> None:
        self.record.status_code = status_code
        self.record.response = json.loads(json.dumps(response, default=str))
        self.record.save(update_fields=["status_code", "response"])


def begin(*, user: User, scope: str, key: str, payload: Any) -> Replay:
    """Claim ``key`` for this request, or find the earlier request's stored answer (``done``).

    Precondition: called inside ``transaction.atomic()``; the claim commits or rolls back with the work.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.", code="invalid_idempotency_key")
    digest = request_hash(payload)
    lock_key(user=user, scope=scope, key=key)
    record = IdempotencyRecord.objects.filter(user=user, scope=scope, key=key).first()
    if record is None:
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(user=user, scope=scope, key=key, request_hash=digest)
        except IntegrityError:  # only without the lock's guarantee; the first is not finished yet
            raise InProgress() from None
        return Replay(record=record, done=False)
    if record.request_hash != digest:
        raise Invalid("This Idempotency-Key was used for a different request.", code="idempotency_key_reused")
    return Replay(record=record, done=True)
