"""The sequencer: seals committed audit rows into the tree in batches and signs a checkpoint for each
(see the package docstring for the commit-order rule)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from portal import merkle
from portal.ledger.checkpoints import (
    _ROW_TEXT,
    LedgerError,
    canonical,
    canonical_from_text,
    sign_checkpoint,
)
from portal.ledger.tree import _Tree, tree_size
from portal.models import AuditEvent, LedgerCheckpoint, LedgerLeaf, LedgerNode

logger = logging.getLogger(__name__)

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that lets one sequencer run at a
# time. Writers never take it.
_PG_SEAL_LOCK_KEY = 0x5041_5544_4C47  # "PAUDLG"
SEAL_BATCH = 10_000

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


def _lock_sequencer(*, wait: bool) -> bool:
    """Take the sequencer's lock for this transaction; without ``wait``, give up at once (False) when
    another sequencer (another worker's) holds it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if not wait:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_PG_SEAL_LOCK_KEY])
                row = cursor.fetchone()
                return bool(row and row[0])
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_SEAL_LOCK_KEY])
    # SQLite: every transaction opens with BEGIN IMMEDIATE, so the sequencer holds the write lock.
    return True


def seal_batch(limit: int = SEAL_BATCH, run: _Run | None = None, *, wait: bool = True) -> tuple[int, bool]:
    """Seal up to ``limit`` rows in one transaction; returns (rows sealed, whether none are left).
    Without ``wait``, a batch that finds another sequencer sealing seals nothing and reports none
    left: that sequencer takes the rows."""
    run = run or _Run()
    with transaction.atomic():
        if not _lock_sequencer(wait=wait):
            return 0, True
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


def seal(*, batch_size: int = SEAL_BATCH, wait: bool = True) -> int:
    """Seal every audit row that may be sealed now (module docstring); returns how many. With
    ``wait`` (``manage.py audit_seal``, readers that need the rows sealed) it waits for a sequencer
    already sealing and then seals what is left; without it (the workers' background loop) it leaves
    the turn to that sequencer."""
    total = 0
    run = _Run()
    while True:
        count, drained = seal_batch(batch_size, run, wait=wait)
        total += count
        if drained:
            return total


def run_sequencer(stop: threading.Event, *, interval: float | None = None) -> None:
    """The background loop: seal every ``interval`` seconds until ``stop`` is set (a worker thread).
    Every worker runs one; on PostgreSQL one seals at a time and the others skip their turn while it
    does (a try-lock), instead of queueing behind it with a connection and a transaction open."""
    period = settings.PORTAL_AUDIT_SEAL_SECONDS if interval is None else interval
    try:
        while not stop.is_set():
            try:
                count = seal(wait=False)
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
