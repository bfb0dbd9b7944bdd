"""PHI at rest: AES-256-GCM with a key id beside every ciphertext and associated data.

A ciphertext reads ``pe1:<key id>:<base64url(nonce || ciphertext || tag)>``. The associated data
names what the value is (for example ``portal.child.name:<row uuid>``), so a ciphertext copied into
another row or field fails to decrypt instead of showing another child's data.

Keys come from ``PORTAL_ENCRYPTION_KEYS`` (``kid:base64key,...``; the first encrypts, all decrypt)
or from the key file (``PORTAL_KEY_FILE``), which the embedded default creates with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "pe1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A value could not be decrypted: unknown key id, wrong key, or data bound to another row."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    primary: str
    blind_index_key: bytes

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary]).encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{PREFIX}:{self.primary}:{body}"

    def decrypt(self, token: str, *, aad: str) -> str:
        try:
            prefix, kid, body = token.split(":", 2)
        except ValueError:
            raise DecryptionError("The stored value is not a portal ciphertext.") from None
        if prefix != PREFIX:
            raise DecryptionError("The stored value is not a portal ciphertext.")
        key = self.keys.get(kid)
        if key is None:
            raise DecryptionError(f"No encryption key with id {kid!r} is configured.")
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
        try:
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode("utf-8"))
        except InvalidTag:
            raise DecryptionError(
                f"Decryption with key {kid!r} failed: wrong key, altered data, or a value moved from another row."
            ) from None
        return plain.decode("utf-8")

    def key_id_of(self, token: str) -> str:
        return token.split(":", 2)[1]

    def blind_index(self, value: str, *, purpose: str) -> str:
        """HMAC-SHA256 of a normalized value, for equality lookups on encrypted columns."""
        normalized = "".join(value.split()).casefold()
        digest = hmac.new(self.blind_index_key, f"{purpose}\x00{normalized}".encode(), hashlib.sha256)
        return digest.hexdigest()


def _decode_key(kid: str, encoded: str) -> bytes:
    key = base64.urlsafe_b64decode(encoded.strip().encode("ascii") + b"==")
    if len(key) != 32:
        raise ImproperlyConfigured(f"Encryption key {kid!r} must be 32 bytes (base64).")
    return key


def _parse_env_keys(spec: str) -> list[tuple[str, bytes]]:
    pairs = []
    for item in spec.split(","):
        kid, sep, encoded = item.strip().partition(":")
        if not sep or not kid:
            raise ImproperlyConfigured("PORTAL_ENCRYPTION_KEYS must read 'kid:base64key[,kid:base64key...]'.")
        pairs.append((kid, _decode_key(kid, encoded)))
    return pairs


def new_key_material() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def create_key_file(path: Path) -> None:
    """Write a fresh key file readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "keys": [{"id": f"k{secrets.token_hex(4)}", "key": new_key_material()}],
        "blind_index_key": new_key_material(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def _no_probe() -> bool:
    raise ImproperlyConfigured("The key file is missing and the portal app is not ready to check for encrypted data.")


# Whether any row holds ciphertext. ``portal.keys`` knows every encrypted field (and imports this
# module), so the portal app registers its probe when it is ready: this module imports no model.
_encrypted_data_probe: Callable[[], bool] = _no_probe


def register_encrypted_data_probe(probe: Callable[[], bool]) -> None:
    global _encrypted_data_probe
    _encrypted_data_probe = probe


def load_keyring() -> Keyring:
    spec: str = settings.PORTAL_ENCRYPTION_KEYS
    path: Path = settings.PORTAL_KEY_FILE
    if spec:
        pairs = _parse_env_keys(spec)
        blind: str = settings.PORTAL_BLIND_INDEX_KEY
        if not blind:
            raise ImproperlyConfigured("PORTAL_BLIND_INDEX_KEY must be set beside PORTAL_ENCRYPTION_KEYS.")
        blind_key = _decode_key("blind index", blind)
    else:
        if not path.exists():
            if not settings.PORTAL_ALLOW_LOCAL_KEY_FILE:
                raise ImproperlyConfigured(
                    "No encryption keys: set PORTAL_ENCRYPTION_KEYS and PORTAL_BLIND_INDEX_KEY (or PORTAL_KEY_FILE)."
                )
            # A lost key file must not be silently replaced: a fresh key cannot read the rows already
            # encrypted, and every write under it would mix two unreadable generations of data.
            if _encrypted_data_probe():
                raise ImproperlyConfigured(
                    f"encrypted data exists but the key file {path} is missing: restore it from backup or set "
                    "PORTAL_ENCRYPTION_KEYS; a new key cannot read the existing data"
                )
            create_key_file(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(item["id"], _decode_key(item["id"], item["key"])) for item in data["keys"]]
        blind_key = _decode_key("blind index", data["blind_index_key"])
    if not pairs:
        raise ImproperlyConfigured("At least one encryption key is required.")
    return Keyring(keys=dict(pairs), primary=pairs[0][0], blind_index_key=blind_key)


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    return load_keyring()


def reset_keyring() -> None:
    """Forget the cached keyring (after a settings change in tests or a key rotation)."""
    keyring.cache_clear()
