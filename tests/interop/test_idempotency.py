"""A re-import changes nothing; an older version never overwrites a newer one; a newer one updates."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from django.core import mail

from interop.models import SourceRecord
from portal.models import AuditEvent, Child
from tests.interop.conftest import record_of, row_counts, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db


def test_reimport_writes_no_row_no_audit_and_no_event(small_hospital, tmp_path, frozen):
    export = write_export(small_hospital, tmp_path / "export")
    run_import(export)
    before = row_counts()
    records = {r.pk: (r.content_hash, r.version_id, r.updated_at) for r in SourceRecord.objects.all()}
    outbox = len(mail.outbox)

    second, failed = run_import(export)

    assert row_counts() == before  # domain rows, audit rows (AuditEvent) and stream events (UserEvent)
    assert {r.pk: (r.content_hash, r.version_id, r.updated_at) for r in SourceRecord.objects.all()} == records
    assert len(mail.outbox) == outbox
    patients = next(line for line in second.splitlines() if line.startswith("Patient "))
    created, updated, unchanged = (int(v) for v in patients.split()[1:4])
    assert (created, updated, unchanged) == (0, 0, len(small_hospital.resources["Patient"]))
    assert " 0 " in patients
    # The lines rejected the first time are reported again, and the exit is still 1.
    assert failed


def _bumped(resource, version, last_updated, **changes):
    newer = copy.deepcopy(resource)
    newer["meta"] = {"versionId": str(version), "lastUpdated": last_updated}
    newer.update(changes)
    return newer


def test_newer_version_updates_and_older_one_is_ignored(small_hospital, tmp_path, frozen):
    run_import(write_export(small_hospital, tmp_path / "export"))
    patient = small_hospital.resources["Patient"][0]
    child = Child.objects.get(pk=record_of(patient).target)
    renamed = [{"use": "official", "family": "Newname", "given": ["Zoe"]}]
    newer = _bumped(patient, 2, "2026-11-30T10:00:00Z", name=renamed, gender="other")
    audits = AuditEvent.objects.count()

    output, _ = run_import(write_lines(tmp_path / "v2" / "Patient.ndjson", [newer]))

    child.refresh_from_db()
    assert (child.name, child.sex) == ("Zoe Newname", "other")
    assert AuditEvent.objects.count() == audits + 1
    assert AuditEvent.objects.order_by("-seq").values_list("action", "entity_type", "reason").first() == (
        "update",
        "Patient",
        "ehr_import:name,sex",
    )
    record = record_of(patient)
    assert record.version_id == "2"
    assert record.last_updated == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert "1 " in output.splitlines()[2]

    # The first version again (an older export replayed), and a version 3 that is older by time.
    older_by_time = _bumped(patient, 3, "2026-11-29T10:00:00Z", gender="female")
    counts = row_counts()
    output, _ = run_import(
        write_lines(tmp_path / "v1" / "Patient.ndjson", [patient]),
        write_lines(tmp_path / "v3" / "Patient.002.ndjson", [older_by_time]),
    )
    child.refresh_from_db()
    assert (child.name, child.sex) == ("Zoe Newname", "other")
    assert row_counts() == counts
    row = next(line for line in output.splitlines() if line.startswith("Patient "))
    assert row.split()[1:5] == ["0", "0", "0", "2"]  # created, updated, unchanged, older


def test_same_content_with_a_new_version_moves_only_the_bookkeeping(small_hospital, tmp_path, frozen):
    run_import(write_export(small_hospital, tmp_path / "export"))
    visit = small_hospital.resources["Appointment"][0]
    counts = row_counts()
    run_import(write_lines(tmp_path / "v2" / "Appointment.ndjson", [_bumped(visit, 7, "2026-11-30T00:00:00Z")]))
    assert row_counts() == counts
    assert record_of(visit).version_id == "7"
