"""Key rotation is online and resumable; a lost key file or a wrong key stops the portal from starting."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import Client

from portal import services
from portal.crypto import keyring, reset_keyring
from portal.keys import (
    AUTHENTICATOR_LABEL,
    RotationBatch,
    check_keys,
    encrypted_fields,
    key_in_use,
    rotate,
    rows_on_old_keys,
)
from portal.models import Child
from tests.canaries import ADA_NAME, hits
from tests.conftest import PASSWORD, TOTP_SECRET, World, totp_code

ROOT = Path(__file__).resolve().parent.parent
NEW_KEY = "test2:" + base64.urlsafe_b64encode(b"n" * 32).decode()
# The id the data is encrypted under, with other key material: a wrong key, not a missing one.
WRONG_TEST1 = "test1:" + base64.urlsafe_b64encode(b"w" * 32).decode()
TEST1_KEY = "A" * 43 + "="
BLIND_KEY = "B" * 43 + "="
CHILD_LABELS = ("portal.child.name", "portal.child.mrn", "portal.child.conditions")
MFA_ROWS = 6  # clinician, other_clinician and admin: a TOTP and a recovery-codes row each

Plain = tuple[str, str, list[str]]


class Interrupted(Exception):
    pass


def _make_children(count: int) -> dict[Any, Plain]:
    made = {}
    for i in range(count):
        child = services.child_create(
            actor=None,
            name=f"Rotation Child {i:04d}",
            mrn=f"ROT-{i:06d}",
            date_of_birth=date(2015, 1, 1 + i % 28),
            conditions=[str(100000 + i)],
        )
        made[child.pk] = (f"Rotation Child {i:04d}", f"ROT-{i:06d}", [str(100000 + i)])
    return made


def _all_plain(world: World, count: int) -> dict[Any, Plain]:
    expected = _make_children(count)
    expected[world.ada.pk] = (world.ada.name, world.ada.mrn, world.ada.conditions)
    expected[world.ben.pk] = (world.ben.name, world.ben.mrn, world.ben.conditions)
    return expected


def _stored_plain() -> dict[Any, Plain]:
    return {child.pk: (child.name, child.mrn, child.conditions) for child in Child.objects.all()}


def _prepend_new_key(settings: Any) -> None:
    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY + "," + settings.PORTAL_ENCRYPTION_KEYS
    reset_keyring()


def _ours(counts: dict[str, int]) -> dict[str, int]:
    """The labels these tests fill (other apps' encrypted fields are rotated too, but not counted here)."""
    return {label: count for label, count in counts.items() if label in (*CHILD_LABELS, AUTHENTICATOR_LABEL)}


def _raw_values() -> list[str]:
    # values_list() returns the column as loaded (ciphertext), without decrypting it.
    raw: list[str] = []
    for row in Child.objects.values_list("name", "mrn", "conditions"):
        raw.extend(str(value) for value in row)
    for data in Authenticator.objects.values_list("data", flat=True):
        raw.extend(str(data[key]) for key in ("secret", "seed") if key in data)
    return raw


def test_encrypted_fields_are_found() -> None:
    labels = {f"{model._meta.label_lower}.{field.name}" for model, field in encrypted_fields()}
    assert set(CHILD_LABELS) <= labels


def test_rotation_moves_every_value_to_the_new_key(world: World, settings: Any) -> None:
    expected = _all_plain(world, 300)
    total = len(expected)
    _prepend_new_key(settings)
    assert _ours(rows_on_old_keys()) == {**dict.fromkeys(CHILD_LABELS, total), AUTHENTICATOR_LABEL: MFA_ROWS}

    summary = rotate(batch_size=64)

    assert _ours(summary) == {**dict.fromkeys(CHILD_LABELS, total), AUTHENTICATOR_LABEL: MFA_ROWS}
    assert _ours(rows_on_old_keys()) == {**dict.fromkeys(CHILD_LABELS, 0), AUTHENTICATOR_LABEL: 0}
    assert key_in_use("test1") == 0
    assert key_in_use("test2") == sum(summary.values())
    assert all(value.startswith("pe1:test2:") for value in _raw_values())
    assert _stored_plain() == expected
    # Nothing depends on the old key any more: drop it and read everything again.
    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY
    reset_keyring()
    assert _stored_plain() == expected
    index = Child._meta.get_field("mrn_index")
    assert Child.objects.get(mrn_index=index.index_of("ROT-000123")).name == "Rotation Child 0123"
    assert not any(rotate().values())


def test_interrupted_rotation_finishes_when_run_again(world: World, settings: Any) -> None:
    expected = _all_plain(world, 118)
    _prepend_new_key(settings)

    def stop(batch: RotationBatch) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate(batch_size=50, on_batch=stop)
    # The first batch committed; the rest is still on the old key and perfectly readable.
    assert rows_on_old_keys()["portal.child.name"] == 120 - 50
    assert _stored_plain() == expected

    summary = rotate(batch_size=50)

    assert _ours(summary) == {**dict.fromkeys(CHILD_LABELS, 70), AUTHENTICATOR_LABEL: MFA_ROWS}
    assert not any(rows_on_old_keys().values())
    assert _stored_plain() == expected


def test_reads_keep_working_between_batches(world: World, settings: Any) -> None:
    expected = _all_plain(world, 148)
    _prepend_new_key(settings)
    guardian = world.client("guardian")
    seen: list[tuple[int, int]] = []

    def read_everything(batch: RotationBatch) -> None:
        assert _stored_plain() == expected
        response = guardian.get(f"/api/v1/children/{world.ada.pk}")
        assert response.status_code == 200
        assert response.json()["name"] == ADA_NAME
        raw = _raw_values()
        seen.append((sum(v.startswith("pe1:test1:") for v in raw), sum(v.startswith("pe1:test2:") for v in raw)))

    rotate(batch_size=40, on_batch=read_everything)

    # The reads really ran on a half-rotated table: both keys in use at once.
    assert any(old and new for old, new in seen)
    assert seen[-1][0] == 0


def test_totp_secrets_are_rotated_and_still_validate(world: World, settings: Any) -> None:
    totp = Authenticator.objects.get(user=world.clinician, type=Authenticator.Type.TOTP)
    recovery = Authenticator.objects.get(user=world.clinician, type=Authenticator.Type.RECOVERY_CODES)
    codes = RecoveryCodes(recovery).generate_codes()
    _prepend_new_key(settings)

    rotate(batch_size=2)

    totp.refresh_from_db()
    recovery.refresh_from_db()
    assert totp.data["secret"].startswith("pe1:test2:")
    assert recovery.data["seed"].startswith("pe1:test2:")
    assert TOTP_SECRET not in json.dumps(totp.data)
    # Only the new key configured: the rotated secrets must not need the old one.
    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY
    reset_keyring()
    assert TOTP(totp).validate_code(totp_code())
    assert RecoveryCodes(recovery).generate_codes() == codes
    admin = Client()
    response = admin.post(
        "/admin/login/?next=/admin/", {"username": "admin@example.org", "password": PASSWORD, "code": totp_code()}
    )
    assert response.status_code == 302
    assert admin.get("/admin/").status_code == 200


def test_retire_key_refuses_a_key_in_use_and_succeeds_after_rotation(world: World, settings: Any) -> None:
    _prepend_new_key(settings)
    with pytest.raises(CommandError, match=r"still encrypts \d+ stored value"):
        call_command("retire_key", "test1")
    with pytest.raises(CommandError, match="primary key"):
        call_command("retire_key", "test2")
    with pytest.raises(CommandError, match="No encryption key"):
        call_command("retire_key", "nope")

    rotate()

    out = StringIO()
    call_command("retire_key", "test1", stdout=out)
    assert "safe to remove from PORTAL_ENCRYPTION_KEYS" in out.getvalue()


def _use_key_file(settings: Any, path: Path) -> None:
    settings.PORTAL_ENCRYPTION_KEYS = ""
    settings.PORTAL_KEY_FILE = path
    settings.PORTAL_ALLOW_LOCAL_KEY_FILE = True
    reset_keyring()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_keys_and_retire_key_in_key_file_mode(world: World, settings: Any, tmp_path: Path) -> None:
    expected = _all_plain(world, 5)
    path = tmp_path / "keys.json"
    # The test settings' keys, moved into a key file.
    path.write_text(json.dumps({"keys": [{"id": "test1", "key": TEST1_KEY}], "blind_index_key": BLIND_KEY}))
    path.chmod(0o600)
    _use_key_file(settings, path)

    out = StringIO()
    call_command("rotate_keys", "--new-key", "--batch-size", "3", stdout=out)

    keys = json.loads(path.read_text())["keys"]
    new_kid = keys[0]["id"]
    assert [item["id"] for item in keys] == [new_kid, "test1"]
    assert keyring().primary == new_kid
    assert _mode(path) == 0o600
    output = out.getvalue()
    assert "row(s) in this batch" in output
    for label in (*CHILD_LABELS, AUTHENTICATOR_LABEL):
        assert f"{label}: 0 values remain on old keys" in output
    assert hits(output) == [] and "Rotation Child" not in output and "pe1:" not in output
    assert key_in_use("test1") == 0

    call_command("retire_key", "test1", stdout=StringIO())

    assert [item["id"] for item in json.loads(path.read_text())["keys"]] == [new_kid]
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]  # no temporary file left behind
    reset_keyring()
    assert _stored_plain() == expected


def test_rotate_keys_new_key_with_environment_keys_explains_instead(world: World) -> None:
    with pytest.raises(CommandError, match=r"prepend it .* to PORTAL_ENCRYPTION_KEYS"):
        call_command("rotate_keys", "--new-key")
    assert keyring().primary == "test1"


def test_missing_key_file_is_refused_while_encrypted_data_exists(world: World, settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _use_key_file(settings, path)

    with pytest.raises(ImproperlyConfigured, match="a new key cannot read the existing data") as caught:
        keyring()

    assert f"the key file {path} is missing" in str(caught.value)
    assert not path.exists()
    with pytest.raises(ImproperlyConfigured):
        _ = Child.objects.get(pk=world.ada.pk).name
    assert not path.exists()
    problems = check_keys()
    assert len(problems) == 1 and str(path) in problems[0]
    assert "portal.E001" in [error.id for error in run_checks()]


def test_missing_key_file_is_created_private_on_an_empty_database(db: Any, settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    _use_key_file(settings, path)
    assert check_keys() == []
    assert not path.exists()  # checking creates nothing

    ring = keyring()

    assert path.exists() and _mode(path) == 0o600
    assert [item["id"] for item in json.loads(path.read_text())["keys"]] == [ring.primary]
    child = services.child_create(
        actor=None, name="Fresh Start", mrn="FRESH-1", date_of_birth=date(2014, 3, 3), conditions=["1"]
    )
    assert Child.objects.get(pk=child.pk).name == "Fresh Start"


def test_check_keys_reports_a_wrong_key_without_plaintext(world: World, settings: Any) -> None:
    assert check_keys() == []
    settings.PORTAL_ENCRYPTION_KEYS = WRONG_TEST1
    reset_keyring()

    problems = check_keys()

    assert {problem.split(":")[0] for problem in problems} >= {*CHILD_LABELS, AUTHENTICATOR_LABEL}
    assert all("'test1'" in problem and "wrong" in problem for problem in problems)
    text = "\n".join(problems)
    assert hits(text) == [] and TOTP_SECRET not in text and "pe1:" not in text
    with pytest.raises(SystemCheckError, match=r"portal\.E001"):
        call_command("check", stdout=StringIO(), stderr=StringIO())

    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY
    reset_keyring()
    assert all("key id 'test1', which is not configured" in problem for problem in check_keys())


def _manage(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # The embedded default in a private var directory: its own SQLite database and key file.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path)})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_check_and_asgi_refuse_to_start_without_the_key_file(tmp_path: Path) -> None:
    assert _manage(["manage.py", "migrate", "--noinput"], tmp_path).returncode == 0
    create = (
        "import datetime; from portal import services; services.child_create(actor=None, name='Key Check', "
        "mrn='KC-1', date_of_birth=datetime.date(2015, 1, 1), conditions=['1'])"
    )
    made = _manage(["manage.py", "shell", "-c", create], tmp_path)
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "encryption_keys.json"
    saved = key_file.read_bytes()
    key_file.unlink()

    check = _manage(["manage.py", "check"], tmp_path)
    assert check.returncode != 0
    assert "portal.E001" in check.stderr and str(key_file) in check.stderr
    asgi = _manage(["-c", "import portal.asgi"], tmp_path)
    assert asgi.returncode != 0
    assert "ImproperlyConfigured" in asgi.stderr and "is missing" in asgi.stderr
    assert not key_file.exists()  # nothing replaced the lost key

    key_file.write_bytes(saved)
    assert _manage(["manage.py", "check"], tmp_path).returncode == 0
    assert _manage(["-c", "import portal.asgi"], tmp_path).returncode == 0
