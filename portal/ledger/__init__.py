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

from portal.ledger.checkpoints import (
    ORIGIN,
    Checkpoint,
    CheckpointError,
    LedgerError,
    canonical,
    canonical_from_text,
    checkpoint_message,
    create_signing_key_file,
    entry_leaf_hash,
    key_id,
    latest_checkpoint,
    public_key_bytes,
    reset_keys,
    sign_checkpoint,
    signing_key,
    trusted_keys,
)
from portal.ledger.sequencer import SEAL_BATCH, run_sequencer, seal, seal_batch, start_sequencer_thread
from portal.ledger.tree import Inclusion, consistency_proof, inclusion_proof, prove_inclusion, root_hash, tree_size
from portal.ledger.verify import Problem, verify, verify_against

__all__ = [
    "ORIGIN",
    "SEAL_BATCH",
    "Checkpoint",
    "CheckpointError",
    "Inclusion",
    "LedgerError",
    "Problem",
    "canonical",
    "canonical_from_text",
    "checkpoint_message",
    "consistency_proof",
    "create_signing_key_file",
    "entry_leaf_hash",
    "inclusion_proof",
    "key_id",
    "latest_checkpoint",
    "prove_inclusion",
    "public_key_bytes",
    "reset_keys",
    "root_hash",
    "run_sequencer",
    "seal",
    "seal_batch",
    "sign_checkpoint",
    "signing_key",
    "start_sequencer_thread",
    "tree_size",
    "trusted_keys",
    "verify",
    "verify_against",
]
