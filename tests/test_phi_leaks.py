"""Planted PHI never reaches a database dump in the clear (nor the logs: see ``tests/canaries.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from django.db import connection

from tests.canaries import hits
from tests.conftest import build_world


@pytest.mark.django_db(transaction=True)
def test_pg_dump_contains_no_planted_phi(needs_postgres: None) -> None:
    world = build_world()
    for persona in ("guardian", "clinician", "other_guardian", "admin"):
        client = world.client(persona)
        client.get("/api/v1/children")
        client.get(f"/api/v1/children/{world.ada.pk}")
        client.get(f"/api/v1/children/{world.ada.pk}/access-log")
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed for this check"
    params: dict[str, Any] = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": str(params.get("PASSWORD") or "")}
    result = subprocess.run(
        [
            pg_dump,
            "-h",
            str(params["HOST"] or "127.0.0.1"),
            "-p",
            str(params["PORT"] or 5432),
            "-U",
            str(params["USER"]),
            "--data-only",
            str(params["NAME"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert "portal_child" in result.stdout and "pe1:" in result.stdout  # the dump really holds the data
    assert hits(result.stdout) == []


def test_canary_check_finds_a_planted_value(tmp_path: Any) -> None:
    from tests.canaries import CANARIES, main

    leaky = tmp_path / "leaky.log"
    leaky.write_text(f"INFO something {CANARIES[0]}\n")
    clean = tmp_path / "clean.log"
    clean.write_text("INFO nothing to see\n")
    assert main([str(leaky)]) == 1
    assert main([str(clean)]) == 0
