"""A small generated hospital, written once per test into its own directory, and an import helper."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command

from fixtures import fhir_hospital

ANCHOR = datetime(2026, 12, 1, tzinfo=UTC)
# Import on the export's day, a Tuesday morning in the hospital's time zone.
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
PATIENTS = 20


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def hospital() -> fhir_hospital.Hospital:
    return fhir_hospital.generate(patients=PATIENTS, seed=7, anchor=ANCHOR)


@pytest.fixture
def export(tmp_path: Path, hospital: fhir_hospital.Hospital) -> Path:
    out = tmp_path / "export"
    fhir_hospital.write(hospital, out)
    return out


def run_import(*paths: Path, full_export: bool = False, batch_size: int = 200) -> tuple[str, bool]:
    """Run ``fhir_import``; returns its output and whether it exited 1 (lines rejected)."""
    out = io.StringIO()
    args = [str(p) for p in paths] + (["--full-export"] if full_export else []) + ["--batch-size", str(batch_size)]
    try:
        call_command("fhir_import", *args, stdout=out)
    except CommandError as error:
        out.write(str(error))
        return out.getvalue(), True
    return out.getvalue(), False


def write_lines(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(fhir_hospital.ndjson_lines(resources)), encoding="utf-8")
    return path
