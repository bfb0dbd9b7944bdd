"""RFC 6962 Merkle hashing and proofs (no database): the test vectors, every inclusion and consistency
proof over small trees, tampered proofs, and the fast canonical form of an audit row."""

from __future__ import annotations

from typing import Any

import pytest

from portal import ledger, merkle

# RFC 6962 test vectors (certificate-transparency's merkle tree tests): leaf inputs and the roots
# of the trees over the first 1..8 of them.
VECTOR_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
VECTOR_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(count)]


def _from_list(leaves: list[bytes]) -> merkle.Subtree:
    return lambda start, end: merkle.root_from_leaves(leaves[start:end])


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


# --- Merkle tree, no database -----------------------------------------------------------------


def test_roots_match_the_rfc_6962_vectors() -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(item)) for item in VECTOR_LEAVES]
    frontier = merkle.Frontier()
    for size, expected in enumerate(VECTOR_ROOTS, start=1):
        assert merkle.root_from_leaves(leaves[:size]).hex() == expected
        frontier.append(leaves[size - 1])
        assert frontier.root().hex() == expected
    assert merkle.Frontier().root() == merkle.EMPTY_ROOT


def test_inclusion_proofs_verify_for_every_leaf_and_size() -> None:
    leaves = _leaves(33)
    for size in range(1, 34):
        root = merkle.root_from_leaves(leaves[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, _from_list(leaves))
            merkle.verify_inclusion(leaves[index], index, size, proof, root)


def test_consistency_proofs_verify_for_every_pair_of_sizes() -> None:
    leaves = _leaves(33)
    for new in range(0, 34):
        new_root = merkle.root_from_leaves(leaves[:new])
        for old in range(0, new + 1):
            proof = merkle.consistency_proof(old, new, _from_list(leaves))
            merkle.verify_consistency(old, new, merkle.root_from_leaves(leaves[:old]), new_root, proof)


def test_tampered_inclusion_proofs_fail() -> None:
    leaves = _leaves(11)
    root = merkle.root_from_leaves(leaves)
    proof = merkle.inclusion_proof(5, 11, _from_list(leaves))
    attempts = [
        (leaves[5], 5, 11, [_flip(proof[0]), *proof[1:]], root),
        (leaves[5], 4, 11, proof, root),  # another position
        (leaves[5], 5, 7, proof, root),  # another size
        (leaves[5], 5, 11, proof[:-1], root),  # too short
        (leaves[5], 5, 11, [*proof, proof[0]], root),  # too long
        (_flip(leaves[5]), 5, 11, proof, root),  # another leaf
        (leaves[5], 5, 11, proof, _flip(root)),  # another root
        (leaves[5], 11, 11, proof, root),  # out of range
    ]
    for leaf, index, size, path, expected_root in attempts:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf, index, size, path, expected_root)


def test_tampered_consistency_proofs_fail() -> None:
    leaves = _leaves(13)
    old_root, new_root = merkle.root_from_leaves(leaves[:6]), merkle.root_from_leaves(leaves)
    proof = merkle.consistency_proof(6, 13, _from_list(leaves))
    forked = merkle.root_from_leaves([*leaves[:5], _flip(leaves[5]), *leaves[6:]])
    attempts = [
        (6, 13, old_root, new_root, [_flip(proof[0]), *proof[1:]]),
        (6, 13, old_root, new_root, proof[:-1]),
        (6, 13, old_root, new_root, [*proof, proof[0]]),
        (6, 13, old_root, forked, proof),  # the new tree rewrote an old leaf
        (6, 13, _flip(old_root), new_root, proof),
        (5, 13, old_root, new_root, proof),
        (6, 13, old_root, new_root, []),
        (13, 6, new_root, old_root, proof),  # shrinking
        (13, 13, new_root, forked, []),
    ]
    for old, new, a, b, path in attempts:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(old, new, a, b, path)


def test_the_fast_canonical_form_is_the_canonical_json() -> None:
    """Verification builds each entry's bytes from the row's text; they must be ``canonical(entry)``."""
    rows = [
        (
            7,
            "0b1c…",
            "2026-11-22T05:30:00.000000+00:00",
            None,
            None,
            "read",
            "Patient",
            "",
            None,
            "success",
            "",
            "",
            "",
            1,
        ),
        (
            8,
            "id",
            "2026-01-01T00:00:00.000001+00:00",
            "a",
            "b",
            "deny",
            'Qu"ote\\',
            "é✓\n",
            "c",
            "denied",
            "no_access",
            "::1",
            "Mozilla/5.0 \u2028 ünï",
            3,
        ),
    ]
    for row in rows:
        keys = (
            "seq",
            "id",
            "recorded_at",
            "actor",
            "on_behalf_of",
            "action",
            "entity_type",
            "entity_id",
            "child",
            "outcome",
            "reason",
            "client_address",
            "user_agent",
        )
        entry: dict[str, Any] = dict(zip(keys, row[:13], strict=True))
        if row[13] != 1:
            entry["count"] = row[13]
        assert ledger.canonical_from_text(row) == ledger.canonical(entry)
