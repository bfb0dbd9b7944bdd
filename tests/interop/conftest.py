"""A small generated hospital, written once per test into its own directory, and an import helper."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command

from care.models import (
    Appointment,
    Coverage,
    MedicationPlan,
    ResultReport,
    ScheduleException,
    TestResult,
    VisitSummary,
    WorkingHours,
)
from fixtures import fhir_hospital
from interop.fhir import business_identifier
from interop.models import SourceRecord
from messaging.models import UserEvent
from portal.models import (
    AuditEvent,
    CareTeamMembership,
    Child,
    Department,
    DepartmentMembership,
    GuardianLink,
    Invitation,
    User,
)

ANCHOR = datetime(2026, 12, 1, tzinfo=UTC)
# Import on the export's day, a Tuesday morning in the hospital's time zone.
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
PATIENTS = 20
# Most tests need a few families only; the end-to-end test imports the 20.
SMALL = 6


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def hospital() -> fhir_hospital.Hospital:
    return fhir_hospital.generate(patients=PATIENTS, seed=7, anchor=ANCHOR)


@pytest.fixture
def small_hospital() -> fhir_hospital.Hospital:
    return fhir_hospital.generate(patients=SMALL, seed=11, anchor=ANCHOR)


@pytest.fixture
def export(tmp_path: Path, hospital: fhir_hospital.Hospital) -> Path:
    out = tmp_path / "export"
    fhir_hospital.write(hospital, out)
    return out


def write_export(hospital: fhir_hospital.Hospital, out: Path) -> Path:
    fhir_hospital.write(hospital, out)
    return out


def record_of(resource: dict[str, Any]) -> SourceRecord:
    identifier, _ = business_identifier(resource)
    return SourceRecord.objects.get(
        identifier_index=SourceRecord._meta.get_field("identifier_index").index_of(identifier)
    )


def row_counts() -> dict[str, int]:
    """Rows of every model an import may write, the audit trail and the event streams included."""
    models = [Child, User, Department, DepartmentMembership, GuardianLink, Invitation, CareTeamMembership]
    models += [Appointment, MedicationPlan, Coverage, AuditEvent, UserEvent, SourceRecord]
    models += [ResultReport, TestResult, VisitSummary, WorkingHours, ScheduleException]
    return {model.__name__: model._default_manager.count() for model in models}


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
