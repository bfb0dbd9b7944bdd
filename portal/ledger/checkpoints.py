"""The ledger's leaves and signed checkpoints: canonical entries, leaf hashes, the Ed25519 signing key and
the trusted keys, checkpoints and their export form."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
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

from portal import merkle
from portal.models import LedgerCheckpoint

logger = logging.getLogger(__name__)

ORIGIN = "portal-audit-ledger/v1"


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


# The audit row as text, in the order canonical_from_text reads it.
_ROW_TEXT = (
    "e.seq, e.id::text, to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    "e.actor_id::text, e.on_behalf_of_id::text, e.action, e.entity_type, e.entity_id, e.child_id::text, "
    "e.outcome, e.reason, e.client_address, e.user_agent, e.count"
)


_escape: Callable[[str], str] = json.encoder.encode_basestring_ascii


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
