"""The stored Merkle tree: its size, root, and inclusion and consistency proofs read from the sealed
leaves and complete subtrees."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from portal import merkle
from portal.ledger.checkpoints import Checkpoint, entry_leaf_hash, latest_checkpoint
from portal.models import AuditEvent, LedgerLeaf, LedgerNode

logger = logging.getLogger(__name__)

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
