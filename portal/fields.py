"""Model fields that keep PHI encrypted at rest (see ``portal.crypto``).

The database holds only ciphertext. The model attribute holds the plaintext: a value loaded from the
database is decrypted on first access, with associated data naming the model, the field and the
row's primary key, so a ciphertext moved into another row or field refuses to decrypt. Saving
encrypts under the newest key with a fresh nonce. Encrypted columns cannot be filtered on; use a
``BlindIndexField`` for equality lookups.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from portal.crypto import keyring


class Sealed(str):
    """A ciphertext as loaded from the database, not yet decrypted."""

    __slots__ = ()


def associated_data(instance: models.Model, field_name: str) -> str:
    return f"{instance._meta.label_lower}.{field_name}:{instance.pk}"


class _EncryptedAttribute(DeferredAttribute):
    """A data descriptor (it defines ``__set__``), so every read passes through ``__get__``."""

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            field: EncryptedTextField = self.field  # type: ignore[assignment]
            plain = keyring().decrypt(str(value), aad=associated_data(instance, field.name))
            value = field.from_plaintext(plain)
            instance.__dict__[self.field.attname] = value
        return value


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text encrypted with AES-256-GCM; the column stores ``pe1:<kid>:<data>``."""

    descriptor_class = _EncryptedAttribute

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Sealed | None:
        return None if value is None else Sealed(value)

    def to_plaintext(self, value: Any) -> str:
        return str(value)

    def from_plaintext(self, plain: str) -> Any:
        return plain

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        return keyring().encrypt(self.to_plaintext(value), aad=associated_data(model_instance, self.name))

    def get_prep_value(self, value: Any) -> Any:
        if value is None or isinstance(value, Sealed):
            return value
        if isinstance(value, str) and value.startswith("pe1:"):
            return value
        raise TypeError(f"{self.name} is encrypted: look it up through its blind index, not its value.")

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata) writes ciphertext, never plaintext.
        return str(obj.__dict__.get(self.attname) or "")


class EncryptedJSONField(EncryptedTextField):
    """A JSON value (list or object) encrypted as one ciphertext."""

    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def to_plaintext(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def from_plaintext(self, plain: str) -> Any:
        return json.loads(plain)

    def to_python(self, value: Any) -> Any:
        return value


class BlindIndexField(models.CharField):  # type: ignore[type-arg]
    """HMAC of another (encrypted) field's normalized value, kept in step on every save."""

    def __init__(self, *args: Any, source: str = "", **kwargs: Any) -> None:
        self.source = source
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        plain = getattr(model_instance, self.source)
        value = None if plain in (None, "") else keyring().blind_index(str(plain), purpose=self.purpose)
        setattr(model_instance, self.attname, value)
        return value

    @property
    def purpose(self) -> str:
        return f"{self.model._meta.label_lower}.{self.source}"

    def index_of(self, value: str) -> str:
        return keyring().blind_index(value, purpose=self.purpose)
