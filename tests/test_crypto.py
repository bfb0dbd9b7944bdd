"""PHI at rest: ciphertext in the database, bound to its row, refused under the wrong key."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from portal.crypto import DecryptionError, keyring, reset_keyring
from portal.models import Child
from tests.conftest import ADA_MRN, ADA_NAME, World

OTHER_KEY = "test2:" + base64.urlsafe_b64encode(b"k" * 32).decode()


def _raw(child: Child, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM portal_child WHERE id = %s",
            [child.pk.hex if connection.vendor == "sqlite" else child.pk],
        )
        return str(cursor.fetchone()[0])


def test_database_holds_only_ciphertext(world: World) -> None:
    raw_name, raw_mrn, raw_conditions = (_raw(world.ada, c) for c in ("name", "mrn", "conditions"))
    for raw, secret in ((raw_name, ADA_NAME), (raw_mrn, ADA_MRN), (raw_conditions, "46635009")):
        assert raw.startswith("pe1:test1:")
        assert secret not in raw
    fresh = Child.objects.get(pk=world.ada.pk)
    assert (fresh.name, fresh.mrn, fresh.conditions) == (ADA_NAME, ADA_MRN, ["46635009"])


def test_each_write_uses_a_fresh_nonce(world: World) -> None:
    first = keyring().encrypt("same", aad="x")
    second = keyring().encrypt("same", aad="x")
    assert first != second


def test_swapped_ciphertexts_fail_to_decrypt(world: World) -> None:
    ada_name, ben_name = _raw(world.ada, "name"), _raw(world.ben, "name")
    Child.objects.filter(pk=world.ada.pk).update(name=ben_name)
    Child.objects.filter(pk=world.ben.pk).update(name=ada_name)
    for child_id in (world.ada.pk, world.ben.pk):
        child = Child.objects.get(pk=child_id)
        with pytest.raises(DecryptionError, match="another row"):
            _ = child.name


def test_moving_a_value_to_another_field_fails(world: World) -> None:
    Child.objects.filter(pk=world.ada.pk).update(mrn=_raw(world.ada, "name"))
    with pytest.raises(DecryptionError):
        _ = Child.objects.get(pk=world.ada.pk).mrn


def test_wrong_key_raises_and_never_returns_ciphertext(world: World) -> None:
    with override_settings(PORTAL_ENCRYPTION_KEYS=OTHER_KEY.replace("test2", "test1")):
        reset_keyring()
        child = Child.objects.get(pk=world.ada.pk)
        with pytest.raises(DecryptionError, match="wrong key"):
            _ = child.name
    with override_settings(PORTAL_ENCRYPTION_KEYS=OTHER_KEY):
        reset_keyring()
        with pytest.raises(DecryptionError, match="No encryption key with id 'test1'"):
            _ = Child.objects.get(pk=world.ada.pk).name


def test_old_keys_still_decrypt_and_new_writes_use_the_first_key(world: World, settings: Any) -> None:
    settings.PORTAL_ENCRYPTION_KEYS = OTHER_KEY + "," + settings.PORTAL_ENCRYPTION_KEYS
    reset_keyring()
    child = Child.objects.get(pk=world.ada.pk)
    assert child.name == ADA_NAME
    child.save()
    assert _raw(world.ada, "name").startswith("pe1:test2:")


def test_mrn_lookup_through_the_blind_index(world: World) -> None:
    field = Child._meta.get_field("mrn_index")
    found = Child.objects.get(mrn_index=field.index_of(" mrn-canary-0042 "))
    assert found.pk == world.ada.pk
    with pytest.raises(TypeError, match="blind index"):
        Child.objects.filter(mrn=ADA_MRN).exists()


def test_decryption_errors_carry_no_plaintext(world: World) -> None:
    Child.objects.filter(pk=world.ada.pk).update(name=_raw(world.ben, "name"))
    with pytest.raises(DecryptionError) as caught:
        _ = Child.objects.get(pk=world.ada.pk).name
    assert "Benedict" not in str(caught.value) and "Adaline" not in str(caught.value)
