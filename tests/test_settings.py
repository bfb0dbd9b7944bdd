"""Production settings pass ``check --deploy``; production refuses to start without its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DATABASE_URL", "REDIS_URL", "LANG")}
    base.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "p" * 20 + "-production-secret-for-the-check-only-" + "q" * 20,
    "ALLOWED_HOSTS": "portal.hospital.example",
    "PORTAL_ENCRYPTION_KEYS": "prod1:" + "C" * 43 + "=",
    "PORTAL_BLIND_INDEX_KEY": "D" * 43 + "=",
    "PORTAL_HOSPITAL_TIME_ZONE": "America/Chicago",
}


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = _manage(["check"], env, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_requires_the_hospital_time_zone(tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "PORTAL_HOSPITAL_TIME_ZONE"}
    result = _manage(["check"], env, tmp_path)
    assert result.returncode != 0
    assert "PORTAL_HOSPITAL_TIME_ZONE" in result.stderr
    result = _manage(["check"], {**PRODUCTION, "PORTAL_HOSPITAL_TIME_ZONE": "Mars/Olympus"}, tmp_path)
    assert result.returncode != 0
    assert "unknown time zone" in result.stderr


def test_secret_key_file_variant(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PRODUCTION["SECRET_KEY"])
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    env["SECRET_KEY_FILE"] = str(secret)
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_default_generates_a_private_local_secret(tmp_path: Path) -> None:
    result = _manage(["check"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "secret_key"
    assert secret.exists() and secret.stat().st_mode & 0o777 == 0o600
