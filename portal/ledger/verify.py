"""Verification: every leaf recomputed from its audit row, the latest (or every) checkpoint's root and
signature, and an exported checkpoint against the current tree."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from django.db import connection, transaction

from portal import merkle
from portal.ledger.checkpoints import (
    _ROW_TEXT,
    Checkpoint,
    CheckpointError,
    canonical_from_text,
    entry_leaf_hash,
    latest_checkpoint,
    trusted_keys,
)
from portal.ledger.tree import consistency_proof, root_hash, tree_size
from portal.models import AuditEvent, LedgerCheckpoint, LedgerLeaf

logger = logging.getLogger(__name__)

# --- Verification -----------------------------------------------------------------------------


@dataclass
class Problem:
    """One place where the ledger does not hold. ``seq`` names the audit row when one is known."""

    seq: int | None
    index: int | None
    problem: str


# The row as text, in the order canonical_from_text takes it.
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

OK, EDITED, DELETED = "ok", "edited", "deleted"


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
