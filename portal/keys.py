"""Key rotation and key health for PHI at rest (see ``portal.crypto``).

Rotation is online and resumable: it re-encrypts, batch by batch, only the values whose ciphertext is
not under the primary (first) key, each batch in its own short transaction with its rows locked, so
the portal keeps serving and a run stopped half way is finished by simply running it again.

Every portal process must already hold the new key before rotation starts (it decrypts with any
configured key and encrypts with the first), otherwise a process without it cannot read the values
rotated under it.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allauth.mfa.models import Authenticator
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connections,
    models,
    router,
    transaction,
)

from portal.crypto import PREFIX, DecryptionError, Keyring, keyring, new_key_material, reset_keyring
from portal.fields import EncryptedTextField
from portal.mfa import PortalMFAAdapter

# How rotation reports name the TOTP secrets and recovery-code seeds (the associated data that
# portal.mfa binds them to).
AUTHENTICATOR_LABEL = "allauth.mfa.authenticator.secret"
# The JSON keys of Authenticator.data that allauth passes through the MFA adapter's encrypt().
_AUTHENTICATOR_SECRETS = ("secret", "seed")
_AUTHENTICATOR_SECRET_LISTS = ("migrated_codes",)
_SCAN_CHUNK = 500

EncryptedField = tuple[type[models.Model], EncryptedTextField]


class RotationError(Exception):
    """A value could not be re-encrypted; names the field and row, never the value."""


@dataclass(frozen=True)
class RotationBatch:
    """One committed batch, passed to ``rotate(on_batch=...)``."""

    model: str
    rows: int
    totals: dict[str, int] = field(default_factory=dict)


# --- What is encrypted, and under which key ---------------------------------------------------


def encrypted_fields() -> list[EncryptedField]:
    """Every concrete ``EncryptedTextField`` (and subclass) of every installed model."""
    found: list[EncryptedField] = []
    for model in apps.get_models():
        # A proxy shares its concrete model's table; walking it too would count every row twice.
        if model._meta.proxy:
            continue
        for model_field in model._meta.local_concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                found.append((model, model_field))
    return found


def field_label(model: type[models.Model], model_field: models.Field[Any, Any]) -> str:
    return f"{model._meta.label_lower}.{model_field.name}"


def _by_model() -> dict[type[models.Model], list[EncryptedTextField]]:
    grouped: dict[type[models.Model], list[EncryptedTextField]] = {}
    for model, model_field in encrypted_fields():
        grouped.setdefault(model, []).append(model_field)
    return grouped


def kid_of(token: str, ring: Keyring | None = None) -> str | None:
    """The key id of a portal ciphertext, or None for anything that is not one."""
    if not token.startswith(f"{PREFIX}:") or token.count(":") < 2:
        return None
    return (ring or keyring()).key_id_of(token)


def _under(kid: str) -> str:
    return f"{PREFIX}:{kid}:"


def _not_under(model_field: EncryptedTextField, kid: str) -> models.Q:
    # The isnull guard: on a nullable column Django's negated lookup would also match NULL, which
    # holds nothing to re-encrypt.
    return models.Q(**{f"{model_field.attname}__isnull": False}) & ~models.Q(
        **{f"{model_field.attname}__startswith": _under(kid)}
    )


def _authenticator_tokens(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    tokens = [data[key] for key in _AUTHENTICATOR_SECRETS if isinstance(data.get(key), str)]
    for key in _AUTHENTICATOR_SECRET_LISTS:
        values = data.get(key)
        if isinstance(values, list):
            tokens.extend(value for value in values if isinstance(value, str))
    return tokens


def _authenticator_chunks(chunk: int = _SCAN_CHUNK) -> Iterator[list[tuple[Any, Any]]]:
    """(pk, data) of every authenticator, a chunk at a time in primary-key order (keyset paging)."""
    last: Any = None
    while True:
        query = Authenticator._base_manager.order_by("pk")
        if last is not None:
            query = query.filter(pk__gt=last)
        rows = list(query.values_list("pk", "data")[:chunk])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def rows_on_old_keys() -> dict[str, int]:
    """Per encrypted field (``portal.child.name``…) the number of rows not under the primary key."""
    ring = keyring()
    primary = ring.primary
    counts: dict[str, int] = {}
    for model, model_field in encrypted_fields():
        counts[field_label(model, model_field)] = model._base_manager.filter(_not_under(model_field, primary)).count()
    counts[AUTHENTICATOR_LABEL] = sum(
        1
        for rows in _authenticator_chunks()
        for _, data in rows
        if any(kid_of(token, ring) != primary for token in _authenticator_tokens(data))
    )
    return counts


def key_in_use(kid: str) -> int:
    """How many stored values (over every encrypted field and authenticator) are still under ``kid``."""
    total = 0
    for model, model_field in encrypted_fields():
        total += model._base_manager.filter(**{f"{model_field.attname}__startswith": _under(kid)}).count()
    ring = keyring()
    for rows in _authenticator_chunks():
        for _, data in rows:
            total += sum(1 for token in _authenticator_tokens(data) if kid_of(token, ring) == kid)
    return total


# --- Rotation ---------------------------------------------------------------------------------


def rotate(batch_size: int = 500, on_batch: Callable[[RotationBatch], None] | None = None) -> dict[str, int]:
    """Re-encrypt under the primary key every value that is not; returns rows re-encrypted per label.

    Each batch commits on its own, so the portal keeps reading and writing meanwhile (a batch holds
    row locks for milliseconds, never a table lock), and ``on_batch`` runs after the commit. A run
    stopped part way leaves every value readable; the next run picks up only what is still on an
    old key.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    ring = keyring()
    totals: dict[str, int] = {}
    for model, model_fields in _by_model().items():
        for model_field in model_fields:
            totals[field_label(model, model_field)] = 0
        _rotate_model(model, model_fields, ring, batch_size, totals, on_batch)
    totals[AUTHENTICATOR_LABEL] = 0
    _rotate_authenticators(ring, batch_size, totals, on_batch)
    return totals


def _rotate_model(
    model: type[models.Model],
    model_fields: list[EncryptedTextField],
    ring: Keyring,
    batch_size: int,
    totals: dict[str, int],
    on_batch: Callable[[RotationBatch], None] | None,
) -> None:
    stale = models.Q()
    for model_field in model_fields:
        stale |= _not_under(model_field, ring.primary)
    # Keyset paging (pk > last) instead of "the first N still stale": a row that a portal process
    # writes back with its old ciphertext cannot keep this run looping, and no batch rescans rows
    # already done. The next run starts again from the beginning.
    db = router.db_for_write(model)
    last: Any = None
    while True:
        with transaction.atomic(using=db):
            query = model._base_manager.using(db).select_for_update().filter(stale).order_by("pk")
            if last is not None:
                query = query.filter(pk__gt=last)
            rows = list(query[:batch_size])
            for row in rows:
                changed = []
                for model_field in model_fields:
                    token = row.__dict__.get(model_field.attname)
                    if token is None or kid_of(str(token), ring) == ring.primary:
                        continue
                    label = field_label(model, model_field)
                    try:
                        plain = getattr(row, model_field.attname)
                    except DecryptionError as exc:
                        raise RotationError(f"{label} of row {row.pk} does not decrypt: {exc}") from None
                    # The plaintext (no longer Sealed) makes pre_save encrypt under the primary key.
                    setattr(row, model_field.attname, plain)
                    changed.append(model_field.name)
                    totals[label] += 1
                if changed:
                    row.save(update_fields=changed)
        if not rows:
            return
        last = rows[-1].pk
        if on_batch is not None:
            on_batch(RotationBatch(model=model._meta.label_lower, rows=len(rows), totals=dict(totals)))


def _rotate_authenticators(
    ring: Keyring,
    batch_size: int,
    totals: dict[str, int],
    on_batch: Callable[[RotationBatch], None] | None,
) -> None:
    adapter = PortalMFAAdapter()
    pending: list[Any] = []

    def flush() -> None:
        done = 0
        db = router.db_for_write(Authenticator)
        with transaction.atomic(using=db):
            # Re-read under the lock: a sign-in may have rewritten data (used codes) since the scan.
            locked = Authenticator._base_manager.using(db).select_for_update().filter(pk__in=pending).order_by("pk")
            for authenticator in locked:
                data = _reencrypt_authenticator_data(authenticator, adapter, ring)
                if data is not None:
                    authenticator.data = data
                    authenticator.save(update_fields=["data"])
                    done += 1
        totals[AUTHENTICATOR_LABEL] += done
        pending.clear()
        if on_batch is not None and done:
            on_batch(RotationBatch(model=Authenticator._meta.label_lower, rows=done, totals=dict(totals)))

    # The table is small, and which JSON entries are stale is only known in Python: scan without
    # locks, then lock and rewrite only the rows that need it.
    for rows in _authenticator_chunks():
        for pk, data in rows:
            if any(kid_of(token, ring) != ring.primary for token in _authenticator_tokens(data)):
                pending.append(pk)
                if len(pending) >= batch_size:
                    flush()
    if pending:
        flush()


def _reencrypt_authenticator_data(authenticator: Any, adapter: PortalMFAAdapter, ring: Keyring) -> Any:
    """A copy of the authenticator's data with every stale secret re-encrypted, or None if none was."""
    data = authenticator.data
    if not isinstance(data, dict):
        return None
    fresh = dict(data)
    changed = False

    def renew(token: str) -> str:
        nonlocal changed
        if kid_of(token, ring) == ring.primary:
            return token
        try:
            plain = adapter.decrypt(token)
        except DecryptionError as exc:
            raise RotationError(
                f"{AUTHENTICATOR_LABEL} of authenticator {authenticator.pk} does not decrypt: {exc}"
            ) from None
        changed = True
        return adapter.encrypt(plain)

    for key in _AUTHENTICATOR_SECRETS:
        if isinstance(fresh.get(key), str):
            fresh[key] = renew(fresh[key])
    for key in _AUTHENTICATOR_SECRET_LISTS:
        values = fresh.get(key)
        if isinstance(values, list):
            fresh[key] = [renew(value) if isinstance(value, str) else value for value in values]
    return fresh if changed else None


# --- Startup checks -----------------------------------------------------------------------------


def database_reachable(using: str = DEFAULT_DB_ALIAS) -> bool:
    try:
        connections[using].ensure_connection()
    except (DatabaseError, InterfaceError):
        return False
    except RuntimeError:
        # pytest-django's database blocker raises RuntimeError (a test module importing
        # portal.asgi at collection time); there is no database to check then.
        return False
    return True


def _existing_tables(using: str = DEFAULT_DB_ALIAS) -> set[str]:
    return set(connections[using].introspection.table_names())


def encrypted_data_exists(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether any row that holds ciphertext exists (tables not yet migrated count as empty)."""
    tables = _existing_tables(using)
    holders: list[type[models.Model]] = [*_by_model(), Authenticator]
    return any(model._meta.db_table in tables and model._base_manager.using(using).exists() for model in holders)


def check_keys() -> list[str]:
    """Problems that must stop the portal from starting: keys missing or not matching the data.

    Messages name fields and key ids only, never a stored value.
    """
    if not database_reachable():
        return []
    try:
        return _check_keys()
    except (OperationalError, ProgrammingError):
        # Before the first migrate the tables do not exist yet: nothing is encrypted to check.
        return []


def _check_keys() -> list[str]:
    has_data = encrypted_data_exists()
    key_file_pending = uses_key_file() and not Path(settings.PORTAL_KEY_FILE).exists()
    if key_file_pending and settings.PORTAL_ALLOW_LOCAL_KEY_FILE and not has_data:
        # The first use creates the key file; a check must not do it as a side effect.
        return []
    try:
        ring = keyring()
    except ImproperlyConfigured as exc:
        return [str(exc)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A damaged key file or key list; the type only, so no key material can reach a log.
        kind = type(exc).__name__
        return [f"The encryption keys cannot be loaded ({kind}): check PORTAL_ENCRYPTION_KEYS or the key file."]
    if not has_data:
        return []
    tables = _existing_tables()
    problems: list[str] = []
    for model, model_field in encrypted_fields():
        if model._meta.db_table not in tables:
            continue
        label = field_label(model, model_field)
        sample = list(
            model._base_manager.filter(**{f"{model_field.attname}__isnull": False})
            .only("pk", model_field.attname)
            .order_by("pk")[:1]
        )
        for row in sample:
            problem = _sample_problem(label, str(row.__dict__[model_field.attname]), ring)
            if problem is None:
                try:
                    getattr(row, model_field.attname)
                except DecryptionError:
                    problem = _wrong_key(label, str(row.__dict__[model_field.attname]), ring)
            if problem:
                problems.append(problem)
    if Authenticator._meta.db_table in tables:
        problems.extend(_check_authenticator_sample(ring))
    return problems


def _sample_problem(label: str, token: str, ring: Keyring) -> str | None:
    kid = kid_of(token, ring)
    if kid is None:
        return f"{label}: a stored value is not a portal ciphertext."
    if kid not in ring.keys:
        return (
            f"{label}: stored values are encrypted under key id {kid!r}, which is not configured "
            f"(configured: {', '.join(ring.keys)})."
        )
    return None


def _wrong_key(label: str, token: str, ring: Keyring) -> str:
    kid = kid_of(token, ring)
    return (
        f"{label}: a stored value does not decrypt with the configured key {kid!r}: the key material for "
        "this id is wrong, or the data was altered."
    )


def _check_authenticator_sample(ring: Keyring) -> list[str]:
    adapter = PortalMFAAdapter()
    for rows in _authenticator_chunks():
        for _, data in rows:
            tokens = _authenticator_tokens(data)
            if not tokens:
                continue
            problem = _sample_problem(AUTHENTICATOR_LABEL, tokens[0], ring)
            if problem is None:
                try:
                    adapter.decrypt(tokens[0])
                except DecryptionError:
                    problem = _wrong_key(AUTHENTICATOR_LABEL, tokens[0], ring)
            return [problem] if problem else []
    return []


# --- The key file (embedded default) ------------------------------------------------------------


def uses_key_file() -> bool:
    """Keys come from the key file unless PORTAL_ENCRYPTION_KEYS is set."""
    return not settings.PORTAL_ENCRYPTION_KEYS


def _read_key_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_key_file(path: Path, data: dict[str, Any]) -> None:
    """Replace the key file atomically: a crash leaves the old file or the new one, never half of one."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600 already; chmod states it, whatever the umask did.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def add_key_to_key_file(path: Path | None = None) -> str:
    """Prepend a new key (it becomes the primary) to the key file; returns its id."""
    path = Path(path or settings.PORTAL_KEY_FILE)
    data = _read_key_file(path)
    taken = {item["id"] for item in data["keys"]}
    kid = f"k{secrets.token_hex(4)}"
    while kid in taken:
        kid = f"k{secrets.token_hex(4)}"
    data["keys"] = [{"id": kid, "key": new_key_material()}, *data["keys"]]
    _write_key_file(path, data)
    reset_keyring()
    return kid


def remove_key_from_key_file(kid: str, path: Path | None = None) -> None:
    path = Path(path or settings.PORTAL_KEY_FILE)
    data = _read_key_file(path)
    data["keys"] = [item for item in data["keys"] if item["id"] != kid]
    if not data["keys"]:
        raise ValueError("The key file must keep at least one key.")
    _write_key_file(path, data)
    reset_keyring()
