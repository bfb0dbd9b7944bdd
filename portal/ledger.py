"""The audit ledger: audit rows sealed into an RFC 6962 Merkle tree with signed checkpoints.

Writers only insert audit rows (``portal.audit``): no lock, no read of the row before. A sequencer
(``seal``, run every ``PORTAL_AUDIT_SEAL_SECONDS`` by the worker, or by ``manage.py audit_seal``)
gives new rows their place in a batch, as leaves of a Merkle tree (leaf hash ``SHA-256(0x00 ||
canonical entry)``, node hash ``SHA-256(0x01 || left || right)``), stores the complete subtrees the
batch forms, and signs a checkpoint (tree size, root hash, time) with Ed25519, all in one
transaction. Leaves, nodes and checkpoints are insert-only tables; on PostgreSQL triggers refuse
UPDATE, DELETE and TRUNCATE on them as on the audit table (migration 0007).

Commit-order gaps. An audit row's ``seq`` comes from a sequence at insert time, so a transaction
holding ``seq`` 7 may commit after one holding ``seq`` 8. A sequencer that sealed "everything after
the last seq sealed" would skip 7 for ever. On PostgreSQL every audit row stores the id of the
transaction that inserted it (``xid xid8 DEFAULT pg_current_xact_id()``). The sequencer reads the
snapshot's ``xmin`` (``pg_snapshot_xmin(pg_current_snapshot())``), the oldest transaction still
running: every transaction with a smaller id has ended, so each of its rows is either committed and
visible now or rolled back and gone for good. The sequencer seals only rows with ``xid < xmin``
(plus rows of its own transaction, which commit or vanish together with their leaves), and remembers
``xmin`` in the checkpoint as the horizon below which nothing is left; the next run looks only at
rows with ``xid`` at or above it, and an anti-join on the leaf table keeps a row from being sealed
twice. A row is therefore sealed in the first run after every transaction older than it has ended:
the delay is the seal interval plus the longest write transaction running at the time (read-only
transactions take no transaction id and hold nothing back; a row inserted in a savepoint carries the
top-level transaction's id, which is what the snapshot tracks). On SQLite a single writer commits in
``seq`` order and the sequencer's own transaction holds the write lock, so every row it sees is
final and the horizon is simply the next ``seq``.

What it guarantees. Once sealed, a row cannot be edited, removed or reordered, nor the tail of the
ledger truncated or rewritten, without the change showing in ``verify`` (leaf hashes recomputed from
the rows, the latest checkpoint's root recomputed and its signature checked with trusted keys; every
stored checkpoint's on request) and
against any checkpoint exported earlier (``verify_against``: the ledger must still contain it, with
a consistency proof to the current tree). Exported checkpoints are what make the evidence hold
against someone who can rewrite the database itself: keep them elsewhere. A row not yet sealed
(at most the sealing delay) is protected only by the append-only triggers and the database roles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from portal import merkle
from portal.models import AuditEvent, LedgerCheckpoint, LedgerLeaf, LedgerNode

logger = logging.getLogger(__name__)

ORIGIN = "portal-audit-ledger/v1"
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that lets one sequencer run at a
# time. Writers never take it.
_PG_SEAL_LOCK_KEY = 0x5041_5544_4C47  # "PAUDLG"
SEAL_BATCH = 10_000


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def entry_leaf_hash(entry: dict[str, Any]) -> bytes:
    return merkle.leaf_hash(canonical(entry))


# --- Keys and checkpoints ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """A public key's id: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(b"portal-audit-key\x00" + public).hexdigest()[:16]


def _seed(text: str, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii") + b"==")
    except ValueError:
        raise ImproperlyConfigured(f"{what} is not base64.") from None
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{what} must be 32 bytes (base64).")
    return raw


def create_signing_key_file(path: Path) -> None:
    """Write a fresh Ed25519 signing key readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"private_key": base64.urlsafe_b64encode(seed).decode("ascii")}, handle, indent=2)


@lru_cache(maxsize=1)
def signing_key() -> Ed25519PrivateKey:
    """The checkpoint signing key: ``PORTAL_AUDIT_SIGNING_KEY``, or the key file (created in the
    embedded default, like the encryption key file)."""
    configured: str = settings.PORTAL_AUDIT_SIGNING_KEY
    if configured:
        return Ed25519PrivateKey.from_private_bytes(_seed(configured, "PORTAL_AUDIT_SIGNING_KEY"))
    path: Path = settings.PORTAL_AUDIT_KEY_FILE
    if not path.exists():
        if not settings.PORTAL_ALLOW_LOCAL_KEY_FILE:
            raise ImproperlyConfigured("No audit signing key: set PORTAL_AUDIT_SIGNING_KEY (or PORTAL_AUDIT_KEY_FILE).")
        create_signing_key_file(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return Ed25519PrivateKey.from_private_bytes(_seed(data["private_key"], str(path)))


def trusted_keys() -> dict[str, bytes]:
    """key id -> raw public key: the signing key's, and the retired ones still trusted."""
    keys = {}
    for text in settings.PORTAL_AUDIT_TRUSTED_KEYS:
        public = _seed(text, "PORTAL_AUDIT_TRUSTED_KEYS")
        keys[key_id(public)] = public
    public = public_key_bytes(signing_key().public_key())
    keys[key_id(public)] = public
    return keys


def reset_keys() -> None:
    """Forget the cached signing key (after a settings change in tests)."""
    signing_key.cache_clear()


class LedgerError(Exception):
    """The stored ledger is not in a state the sequencer can extend (run ``audit_verify``)."""


class CheckpointError(Exception):
    """A checkpoint is malformed, signed by an untrusted key, or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: str  # hex
    timestamp: datetime
    key_id: str
    signature: str  # base64 Ed25519 signature of ``message()``
    origin: str = ORIGIN

    def message(self) -> bytes:
        return checkpoint_message(self.origin, self.tree_size, self.root_hash, self.timestamp)

    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": _iso(self.timestamp),
            "key_id": self.key_id,
            "public_key": _b64(trusted_keys().get(self.key_id, b"")),
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            checkpoint = cls(
                origin=str(data["origin"]),
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]),
                timestamp=datetime.fromisoformat(str(data["timestamp"])),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
            )
            bytes.fromhex(checkpoint.root_hash)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("not a ledger checkpoint") from None
        return checkpoint

    @classmethod
    def from_row(cls, row: LedgerCheckpoint) -> Checkpoint:
        return cls(
            tree_size=row.tree_size,
            root_hash=row.root_hash,
            timestamp=row.timestamp,
            key_id=row.key_id,
            signature=row.signature,
        )

    def verify_signature(self, keys: dict[str, bytes] | None = None) -> None:
        """Raise ``CheckpointError`` unless a trusted key signed this checkpoint. The public key in
        an exported file is a convenience only: trust comes from the configured keys."""
        if self.origin != ORIGIN:
            raise CheckpointError(f"checkpoint of another log ({self.origin!r})")
        public = (keys if keys is not None else trusted_keys()).get(self.key_id)
        if public is None:
            raise CheckpointError(f"checkpoint {self.tree_size} is signed by an untrusted key {self.key_id}")
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(_unb64(self.signature), self.message())
        except (InvalidSignature, ValueError):
            raise CheckpointError(f"the signature of checkpoint {self.tree_size} does not verify") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def checkpoint_message(origin: str, tree_size: int, root_hash: str, timestamp: datetime) -> bytes:
    """The signed bytes: a domain-separated canonical JSON of what the checkpoint states."""
    body = {"origin": origin, "tree_size": tree_size, "root_hash": root_hash, "timestamp": _iso(timestamp)}
    return b"portal-audit-checkpoint\n" + canonical(body)


def sign_checkpoint(tree_size: int, root: bytes, timestamp: datetime) -> Checkpoint:
    key = signing_key()
    kid = key_id(public_key_bytes(key.public_key()))
    message = checkpoint_message(ORIGIN, tree_size, root.hex(), timestamp)
    return Checkpoint(tree_size, root.hex(), timestamp, kid, _b64(key.sign(message)))


def latest_checkpoint() -> Checkpoint | None:
    row = LedgerCheckpoint.objects.order_by("-tree_size").first()
    return Checkpoint.from_row(row) if row else None


# --- Reading the stored tree ------------------------------------------------------------------


def tree_size() -> int:
    last = LedgerLeaf.objects.order_by("-index").values_list("index", flat=True).first()
    return 0 if last is None else last + 1


class _Tree:
    """Stored complete subtrees, memoized for one proof or one seal."""

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self.memo:
            if level == 0:
                value = LedgerLeaf.objects.filter(index=index).values_list("hash", flat=True).first()
            else:
                value = LedgerNode.objects.filter(level=level, index=index).values_list("hash", flat=True).first()
            if value is None:
                raise LookupError(f"ledger node {level}/{index} is missing")
            self.memo[key] = bytes.fromhex(value)
        return self.memo[key]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from stored nodes (an aligned power-of-two range is one stored node)."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self.node(level, start >> level)
        k = merkle.split_point(n)
        return merkle.node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def frontier(self, size: int) -> merkle.Frontier:
        return merkle.Frontier(size, {level: self.node(level, index) for level, index in merkle.frontier_levels(size)})


def root_hash(size: int | None = None) -> bytes:
    """The root of the stored tree at ``size`` leaves (default: all of them)."""
    size = tree_size() if size is None else size
    return _Tree().subtree(0, size) if size else merkle.EMPTY_ROOT


def inclusion_proof(index: int, size: int) -> list[bytes]:
    return merkle.inclusion_proof(index, size, _Tree().subtree)


def consistency_proof(old_size: int, new_size: int) -> list[bytes]:
    return merkle.consistency_proof(old_size, new_size, _Tree().subtree)


@dataclass(frozen=True)
class Inclusion:
    """Where an audit row sits in the ledger, and the proof of it against a checkpoint."""

    event_seq: int
    index: int
    leaf_hash: str
    checkpoint: Checkpoint
    proof: list[str]

    def verify(self, event: AuditEvent) -> None:
        """Raise ``merkle.ProofError`` unless ``event`` (as it reads now) is this leaf under the checkpoint."""
        leaf = entry_leaf_hash(event.entry())
        if leaf.hex() != self.leaf_hash:
            raise merkle.ProofError("the row no longer matches its leaf")
        proof = [bytes.fromhex(item) for item in self.proof]
        merkle.verify_inclusion(leaf, self.index, self.checkpoint.tree_size, proof, self.checkpoint.root())


def prove_inclusion(event_seq: int, checkpoint: Checkpoint | None = None) -> Inclusion | None:
    """The inclusion proof of an audit row against ``checkpoint`` (default: the latest), or None if
    the row is not sealed under it yet."""
    checkpoint = checkpoint or latest_checkpoint()
    leaf = LedgerLeaf.objects.filter(event_id=event_seq).values_list("index", "hash").first()
    if checkpoint is None or leaf is None or leaf[0] >= checkpoint.tree_size:
        return None
    proof = inclusion_proof(leaf[0], checkpoint.tree_size)
    return Inclusion(event_seq, leaf[0], leaf[1], checkpoint, [item.hex() for item in proof])


# --- The sequencer ----------------------------------------------------------------------------


@dataclass
class _Run:
    """One sealing run: its horizon, fixed by the first batch, and the last seq it sealed. Later
    batches of the run take the next rows of the same candidate set in seq order, so a backlog is
    read once rather than rescanned per batch."""

    horizon: int | None = None
    after: int = 0


def _pending(floor: int | None, limit: int, run: _Run) -> list[tuple[int, bytes]]:
    """Up to ``limit`` audit rows without a leaf that may be sealed now, as (seq, canonical entry),
    in seq order. The first call of a run fixes its horizon: once every candidate below it is
    sealed, no unsealed row can appear below it (module docstring)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if run.horizon is None:
                cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                row = cursor.fetchone()
                assert row is not None
                run.horizon = int(row[0])
            cursor.execute(
                f"SELECT {_ROW_TEXT} FROM portal_auditevent e WHERE "  # noqa: S608 (constant text)
                "((e.xid >= %s::text::xid8 AND e.xid < %s::text::xid8) OR e.xid = pg_current_xact_id_if_assigned()) "
                "AND e.seq > %s AND NOT EXISTS (SELECT 1 FROM portal_ledgerleaf l WHERE l.event_seq = e.seq) "
                "ORDER BY e.seq LIMIT %s",
                [str(floor or 0), str(run.horizon), run.after, limit],
            )
            return [(int(row[0]), canonical_from_text(tuple(row))) for row in cursor.fetchall()]
        if run.horizon is None:
            cursor.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM portal_auditevent")
            row = cursor.fetchone()
            assert row is not None
            run.horizon = int(row[0])
        cursor.execute(
            "SELECT e.seq FROM portal_auditevent e WHERE e.seq >= %s AND e.seq < %s AND e.seq > %s "
            "AND NOT EXISTS (SELECT 1 FROM portal_ledgerleaf l WHERE l.event_seq = e.seq) "
            "ORDER BY e.seq LIMIT %s",
            [floor or 0, run.horizon, run.after, limit],
        )
        seqs = [int(item[0]) for item in cursor.fetchall()]
    events = AuditEvent.objects.in_bulk(seqs)
    return [(seq, canonical(events[seq].entry())) for seq in seqs]


def _lock_sequencer() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_SEAL_LOCK_KEY])
    # SQLite: every transaction opens with BEGIN IMMEDIATE, so the sequencer holds the write lock.


def seal_batch(limit: int = SEAL_BATCH, run: _Run | None = None) -> tuple[int, bool]:
    """Seal up to ``limit`` rows in one transaction; returns (rows sealed, whether none are left)."""
    run = run or _Run()
    with transaction.atomic():
        _lock_sequencer()
        last = LedgerCheckpoint.objects.order_by("-tree_size").values_list("tree_size", "horizon").first()
        size = tree_size()
        floor = last[1] if last else None
        rows = _pending(floor, limit, run)
        drained = len(rows) < limit
        if not rows:
            return 0, True
        if last is not None and last[0] != size:
            raise LedgerError(f"the ledger has {size} leaves but its last checkpoint states {last[0]}")
        frontier = _Tree().frontier(size)
        nodes: list[LedgerNode] = []
        leaves: list[LedgerLeaf] = []

        def keep(level: int, index: int, value: bytes) -> None:
            nodes.append(LedgerNode(level=level, index=index, hash=value.hex()))

        for seq, entry in rows:
            leaf = merkle.leaf_hash(entry)
            leaves.append(LedgerLeaf(index=frontier.size, event_id=seq, hash=leaf.hex()))
            frontier.append(leaf, keep)
        LedgerLeaf.objects.bulk_create(leaves, batch_size=2000)
        LedgerNode.objects.bulk_create(nodes, batch_size=2000)
        checkpoint = sign_checkpoint(frontier.size, frontier.root(), timezone.now())
        LedgerCheckpoint.objects.create(
            tree_size=checkpoint.tree_size,
            root_hash=checkpoint.root_hash,
            timestamp=checkpoint.timestamp,
            key_id=checkpoint.key_id,
            signature=checkpoint.signature,
            # Only a run that took every row below the horizon may move the floor up to it.
            horizon=run.horizon if drained else floor,
        )
    run.after = rows[-1][0]
    return len(rows), drained


def seal(*, batch_size: int = SEAL_BATCH) -> int:
    """Seal every audit row that may be sealed now (module docstring); returns how many."""
    total = 0
    run = _Run()
    while True:
        count, drained = seal_batch(batch_size, run)
        total += count
        if drained:
            return total


def run_sequencer(stop: threading.Event, *, interval: float | None = None) -> None:
    """The background loop: seal every ``interval`` seconds until ``stop`` is set (a worker thread)."""
    period = settings.PORTAL_AUDIT_SEAL_SECONDS if interval is None else interval
    try:
        while not stop.is_set():
            try:
                count = seal()
                if count:
                    logger.debug("ledger sealed %d audit rows", count)
            except DatabaseError:
                logger.warning("ledger sealing postponed: database unavailable")
                connection.close()
            except (LedgerError, ImproperlyConfigured) as error:
                logger.error("ledger sealing stopped: %s", error)
            stop.wait(period)
    finally:
        connections.close_all()


def start_sequencer_thread(*, interval: float | None = None) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=run_sequencer, args=(stop,), kwargs={"interval": interval}, name="audit-sequencer", daemon=True
    )
    thread.start()
    return thread, stop


# --- Verification -----------------------------------------------------------------------------


@dataclass
class Problem:
    """One place where the ledger does not hold. ``seq`` names the audit row when one is known."""

    seq: int | None
    index: int | None
    problem: str


# The row as text, in the order canonical_from_text takes it.
_ROW_TEXT = (
    "e.seq, e.id::text, to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    "e.actor_id::text, e.on_behalf_of_id::text, e.action, e.entity_type, e.entity_id, e.child_id::text, "
    "e.outcome, e.reason, e.client_address, e.user_agent, e.count"
)
# The canonical entry built by the server. For printable ASCII values PostgreSQL's JSON escaping is
# Python's; for anything else it differs, the hash then differs from the leaf, and the row is
# checked again in Python. A match is proof enough: equal hashes mean equal JSON text, and equal
# JSON text means equal values.
_SQL_CANONICAL = (
    "'{\"action\":' || to_json(e.action)::text"
    " || ',\"actor\":' || COALESCE(to_json(e.actor_id::text)::text, 'null')"
    " || ',\"child\":' || COALESCE(to_json(e.child_id::text)::text, 'null')"
    " || ',\"client_address\":' || to_json(e.client_address)::text"
    " || CASE WHEN e.count <> 1 THEN ',\"count\":' || e.count::text ELSE '' END"
    " || ',\"entity_id\":' || to_json(e.entity_id)::text"
    " || ',\"entity_type\":' || to_json(e.entity_type)::text"
    " || ',\"id\":' || to_json(e.id::text)::text"
    " || ',\"on_behalf_of\":' || COALESCE(to_json(e.on_behalf_of_id::text)::text, 'null')"
    " || ',\"outcome\":' || to_json(e.outcome)::text"
    " || ',\"reason\":' || to_json(e.reason)::text"
    ' || \',"recorded_at":"\' || to_char(e.recorded_at AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
    ' || \'","seq":\' || e.seq::text'
    " || ',\"user_agent\":' || to_json(e.user_agent)::text || '}'"
)
# Constant text only (no value is interpolated).
_CHECK_SQL_POSTGRES = (
    "SELECT l.\"index\", decode(l.hash, 'hex'), e.seq, "  # noqa: S608
    f"encode(sha256('\\x00'::bytea || convert_to({_SQL_CANONICAL}, 'UTF8')), 'hex') = l.hash "
    "FROM portal_ledgerleaf l LEFT JOIN portal_auditevent e ON e.seq = l.event_seq "
    'WHERE l."index" >= %s AND l."index" < %s ORDER BY l."index"'
)
_escape: Callable[[str], str] = json.encoder.encode_basestring_ascii

OK, EDITED, DELETED = "ok", "edited", "deleted"


def _text(value: str | None) -> str:
    return "null" if value is None else _escape(value)


def canonical_from_text(row: tuple[Any, ...]) -> bytes:
    """``canonical(entry)`` of an audit row read as text (seq, id, recorded_at, actor, on_behalf_of,
    action, entity_type, entity_id, child, outcome, reason, client_address, user_agent, count), built
    without a dict: the keys in sorted order, each string escaped as ``json.dumps`` does."""
    (
        seq,
        id_,
        recorded,
        actor,
        behalf,
        action,
        entity_type,
        entity_id,
        child,
        outcome,
        reason,
        address,
        agent,
        count,
    ) = row
    count_part = "" if count == 1 else f',"count":{count}'
    return (
        f'{{"action":{_text(action)},"actor":{_text(actor)},"child":{_text(child)},'
        f'"client_address":{_text(address)}{count_part},"entity_id":{_text(entity_id)},'
        f'"entity_type":{_text(entity_type)},"id":{_text(id_)},"on_behalf_of":{_text(behalf)},'
        f'"outcome":{_text(outcome)},"reason":{_text(reason)},"recorded_at":{_text(recorded)},'
        f'"seq":{seq},"user_agent":{_text(agent)}}}'
    ).encode("ascii")


def _python_check(seq: int, stored: bytes) -> str:
    """The authoritative check of one row (PostgreSQL: when the server's canonical form differed)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_ROW_TEXT} FROM portal_auditevent e WHERE e.seq = %s", [seq])  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        return DELETED
    return OK if merkle.leaf_hash(canonical_from_text(tuple(row))) == stored else EDITED


def _checked_leaves(start: int, end: int, batch_size: int) -> Iterator[tuple[int, bytes, int | None, str]]:
    """(index, stored leaf hash, the row's seq, OK/EDITED/DELETED) for leaves in [start, end), in order."""
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(_CHECK_SQL_POSTGRES, [start, end])
            while rows := cursor.fetchmany(batch_size):
                for index, stored, seq, matches in rows:
                    if seq is None:
                        yield index, bytes(stored), None, DELETED
                    elif matches:
                        yield index, bytes(stored), seq, OK
                    else:
                        yield index, bytes(stored), seq, _python_check(seq, bytes(stored))
        return
    after = start - 1
    while True:
        leaves = list(
            LedgerLeaf.objects.filter(index__gt=after, index__lt=end)
            .order_by("index")
            .values_list("index", "hash", "event_id")[:batch_size]
        )
        if not leaves:
            return
        events = AuditEvent.objects.in_bulk([seq for _, _, seq in leaves])
        for index, stored, seq in leaves:
            event = events.get(seq)
            leaf = bytes.fromhex(stored)
            if event is None:
                yield index, leaf, None, DELETED
            else:
                yield index, leaf, seq, OK if entry_leaf_hash(event.entry()) == leaf else EDITED
        after = leaves[-1][0]


def _checkpoints(everyone: bool) -> Iterator[LedgerCheckpoint]:
    """The stored checkpoints in size order (every one, or only the latest), a chunk at a time."""
    if not everyone:
        yield from LedgerCheckpoint.objects.order_by("-tree_size")[:1]
        return
    after = -1
    while chunk := list(LedgerCheckpoint.objects.filter(tree_size__gt=after).order_by("tree_size")[:2000]):
        yield from chunk
        after = chunk[-1].tree_size


@dataclass
class _Scan:
    """What scanning a range of leaves found: its problems, its compact range, where it stopped."""

    problems: list[Problem]
    frontier: merkle.Frontier
    expected: int
    gap: bool = False


def _scan(
    state: _Scan,
    end: int,
    batch_size: int,
    on_size: Callable[[int, merkle.Frontier | None], Iterator[Problem]] | None = None,
) -> Iterator[Problem]:
    """Check the leaves from ``state.expected`` up to ``end`` and build the Merkle tree over them
    (relative to where it starts: an aligned complete subtree boundary). Yields problems as found;
    ``on_size`` sees every size reached."""
    for index, stored, seq, status in _checked_leaves(state.expected, end, batch_size):
        if index != state.expected:
            yield Problem(None, state.expected, f"leaves {state.expected}..{index - 1} are missing (deleted)")
            state.gap = True  # a hole cannot be hashed: roots past it are not checked
            state.expected = index
        if status == DELETED:
            yield Problem(None, index, "the audit row of this leaf is missing (deleted)")
        elif status == EDITED:
            yield Problem(seq, index, "the row no longer matches its sealed leaf (it was edited)")
        # The tree is rebuilt from the stored leaves, so a changed row is reported once, here, and a
        # changed leaf (or order of leaves) by the checkpoints' roots.
        state.frontier.append(stored)
        state.expected = index + 1
        if on_size is not None:
            yield from on_size(state.expected, None if state.gap else state.frontier)


def _scan_in_thread(start: int, end: int, batch_size: int) -> _Scan:
    try:
        state = _Scan([], merkle.Frontier(), start)
        state.problems = list(_scan(state, end, batch_size))
        return state
    finally:
        connection.close()


def verify(
    batch_size: int = 5000, *, all_checkpoints: bool = False, workers: int = 2, chunk: int = 1 << 18
) -> Iterator[Problem]:
    """Recompute the whole ledger from the audit rows.

    Every leaf must match its row; leaf indexes must run 0..n-1; the latest checkpoint must carry a
    trusted signature over the root of the leaves, and the stored nodes (which proofs are built
    from) must give that root too. That signed root covers every leaf, so the older checkpoints add
    nothing against someone without the signing key; against someone with it only checkpoints kept
    elsewhere help (``verify_against``). ``all_checkpoints`` also checks the signature and root of
    every stored checkpoint (one more signature check per sealing run).

    On PostgreSQL, outside a transaction, the leaves are checked in ``chunk``-sized complete
    subtrees by ``workers`` threads, each with its own connection, so the server's work and Python's
    overlap.
    """
    keys = trusted_keys()
    size = tree_size()
    checkpoints = _checkpoints(all_checkpoints)
    parallel = (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and not all_checkpoints
        and workers > 1
        and size > chunk
    )
    if parallel:
        frontier, expected, gap = yield from _verify_parallel(size, batch_size, workers, chunk)
        pending = next(checkpoints, None)
        if pending is not None and pending.tree_size <= expected:
            yield from _check_checkpoint(pending, keys, None if gap or pending.tree_size < expected else frontier)
            pending = next(checkpoints, None)
    else:
        pending_box = [next(checkpoints, None)]

        def on_size(reached: int, frontier: merkle.Frontier | None) -> Iterator[Problem]:
            while pending_box[0] is not None and pending_box[0].tree_size <= reached:
                row = pending_box[0]
                yield from _check_checkpoint(row, keys, frontier if row.tree_size == reached else None)
                pending_box[0] = next(checkpoints, None)

        state = _Scan([], merkle.Frontier(), 0)
        yield from _scan(state, size + 1, batch_size, on_size)
        frontier, expected, gap, pending = state.frontier, state.expected, state.gap, pending_box[0]
    while pending is not None:
        yield from _check_checkpoint(pending, keys, None)
        yield Problem(
            None, expected, f"checkpoint {pending.tree_size} is beyond the ledger's {expected} leaves (truncated)"
        )
        pending = next(checkpoints, None)
    if expected:
        try:
            stored_root = root_hash(expected)
        except LookupError as error:
            yield Problem(None, None, str(error))
        else:
            if not gap and stored_root != frontier.root():
                yield Problem(None, None, "the stored tree nodes do not match the leaves")


def _verify_parallel(
    size: int, batch_size: int, workers: int, chunk: int
) -> Generator[Problem, None, tuple[merkle.Frontier, int, bool]]:
    """Scan [0, size) in complete subtrees of ``chunk`` leaves (a power of two) on ``workers``
    threads, then join their compact ranges into the tree over all leaves."""
    from concurrent.futures import ThreadPoolExecutor

    level = chunk.bit_length() - 1
    assert chunk == 1 << level, "chunk must be a power of two"
    starts = list(range(0, size, chunk))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scans = list(pool.map(lambda start: _scan_in_thread(start, start + chunk, batch_size), starts))
    whole = merkle.Frontier()
    gap = False
    expected = 0
    for start, scan in zip(starts, scans, strict=True):
        if scan.expected != start + chunk and start + chunk < size:
            scan.problems.append(
                Problem(None, scan.expected, f"leaves {scan.expected}..{start + chunk - 1} are missing (deleted)")
            )
            scan.gap = True
        yield from scan.problems
        gap = gap or scan.gap
        expected = scan.expected
        if start + chunk <= size:
            # A complete subtree: one node at ``level`` in the tree over all leaves.
            whole.append(scan.frontier.root(), None)
    full = whole.size
    # The last, incomplete chunk contributes its own compact range below ``level``.
    roots = {level + height: value for height, value in whole.roots.items()}
    if full * chunk < size:
        roots.update(scans[-1].frontier.roots)
    return merkle.Frontier(size, roots), expected, gap


def _check_checkpoint(
    row: LedgerCheckpoint, keys: dict[str, bytes], frontier: merkle.Frontier | None
) -> Iterator[Problem]:
    try:
        Checkpoint.from_row(row).verify_signature(keys)
    except CheckpointError as error:
        yield Problem(None, None, str(error))
    if frontier is not None and frontier.root().hex() != row.root_hash:
        yield Problem(None, row.tree_size - 1, f"checkpoint {row.tree_size}'s root does not match the rows under it")


def verify_against(checkpoint: Checkpoint, *, keys: dict[str, bytes] | None = None) -> list[str]:
    """Check the ledger against a checkpoint kept elsewhere: its signature, that the ledger still
    holds at least its size, that its root is the root of the ledger's first ``tree_size`` leaves as
    recomputed from the rows, and that the stored tree is consistent with it (a consistency proof
    from it to the latest checkpoint). Returns the problems (empty: the checkpoint holds)."""
    try:
        checkpoint.verify_signature(keys)
    except CheckpointError as error:
        return [str(error)]
    size = tree_size()
    if checkpoint.tree_size > size:
        return [f"the ledger has {size} leaves, fewer than the {checkpoint.tree_size} of the checkpoint (truncated)"]
    problems = []
    # The tree over the rows as they read now: the stored leaves, each one matching its row.
    recomputed = merkle.Frontier()
    for index, stored, _seq, status in _checked_leaves(0, checkpoint.tree_size, 5000):
        if index != recomputed.size or status == DELETED:
            problems.append(f"leaf {recomputed.size} is missing (deleted)")
            break
        if status == EDITED:
            problems.append(f"the rows under the checkpoint's {checkpoint.tree_size} leaves no longer hash to its root")
            break
        recomputed.append(stored)
    if not problems and recomputed.root() != checkpoint.root():
        problems.append(f"the rows under the checkpoint's {checkpoint.tree_size} leaves no longer hash to its root")
    latest = latest_checkpoint()
    if latest is not None and latest.tree_size >= checkpoint.tree_size:
        try:
            proof = consistency_proof(checkpoint.tree_size, latest.tree_size)
            merkle.verify_consistency(checkpoint.tree_size, latest.tree_size, checkpoint.root(), latest.root(), proof)
        except (LookupError, merkle.ProofError) as error:
            problems.append(f"the latest checkpoint is not consistent with this one ({error})")
    return problems
