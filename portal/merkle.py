"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification (no Django, no storage).

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``; the tree over
``n`` leaves splits at the largest power of two below ``n``. Hashes are 32-byte ``bytes`` here.
``subtree`` is how a caller supplies ``MTH(D[start:end])`` for the ranges a proof needs; every range
those algorithms ask for splits into aligned complete subtrees, which is what the ledger stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

Subtree = Callable[[int, int], bytes]

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(Exception):
    """A proof does not verify (wrong length, wrong hashes, or sizes out of range)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n`` >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: list[bytes]) -> bytes:
    """MTH of a list of leaf hashes (the direct definition; for tests and small ranges)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))


class Frontier:
    """A compact range over leaves ``[0, size)``: the roots of its complete subtrees, largest first.

    Appending a leaf costs one hash plus one per subtree it completes; ``on_complete(level, index,
    hash)`` is told of every complete subtree of level >= 1 as it forms (the ledger stores them).
    """

    def __init__(self, size: int = 0, roots: dict[int, bytes] | None = None) -> None:
        # level -> root of the complete subtree at that level (one per set bit of size).
        self.size = size
        self.roots: dict[int, bytes] = dict(roots or {})

    def append(self, leaf: bytes, on_complete: Callable[[int, int, bytes], None] | None = None) -> None:
        index, level, current = self.size, 0, leaf
        while index & 1:
            current = node_hash(self.roots.pop(level), current)
            level += 1
            index >>= 1
            if on_complete is not None:
                on_complete(level, index, current)
        self.roots[level] = current
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.size:
            return EMPTY_ROOT
        result: bytes | None = None
        for level in sorted(self.roots):
            result = self.roots[level] if result is None else node_hash(self.roots[level], result)
        assert result is not None  # size > 0 means at least one root
        return result


def frontier_levels(size: int) -> list[tuple[int, int]]:
    """(level, index) of the complete subtrees that make up a tree of ``size`` leaves."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


# --- Proofs (RFC 6962 section 2.1.1 and 2.1.2) -------------------------------------------------


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError("leaf index out of range")
    return _path(index, 0, size, subtree)


def _path(m: int, start: int, end: int, subtree: Subtree) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*_path(m, start, start + k, subtree), subtree(start + k, end)]
    return [*_path(m - k, start + k, end, subtree), subtree(start, start + k)]


def consistency_proof(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    """PROOF(m, D[n]): shows the tree of ``old_size`` leaves is a prefix of the one of ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise ValueError("sizes out of range")
    if old_size in (0, new_size):
        return []
    return _subproof(old_size, 0, new_size, True, subtree)


def _subproof(m: int, start: int, end: int, complete: bool, subtree: Subtree) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [subtree(start, end)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(m, start, start + k, complete, subtree), subtree(start + k, end)]
    return [*_subproof(m - k, start + k, end, False, subtree), subtree(start, start + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2; raises ``ProofError`` unless ``leaf`` is at ``index`` under ``root``."""
    if not 0 <= index < size:
        raise ProofError("leaf index out of range")
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    if result != root:
        raise ProofError("inclusion proof does not lead to the root")


def _consistency_without_path(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """The cases that need no walk (equal sizes, the empty old tree): True when settled, ProofError when
    they fail, False when the proof must be walked."""
    if not 0 <= old_size <= new_size:
        raise ProofError("sizes out of range")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return True
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return True
    if not proof:
        raise ProofError("consistency proof is empty")
    return False


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
    """RFC 9162 section 2.1.4.2; raises ``ProofError`` unless the old tree is a prefix of the new one."""
    if _consistency_without_path(old_size, new_size, old_root, new_root, proof):
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root or sr != new_root:
        raise ProofError("consistency proof does not match the roots")
