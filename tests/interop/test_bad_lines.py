"""A bad NDJSON line is reported by file, line and reason (never a value) and the rest is imported;
references to a rejected resource are reported as unresolved. No PHI reaches the output or logs."""

from __future__ import annotations

import copy
import logging

import pytest

from care.models import Coverage
from interop.models import ImportIssue
from portal.models import Child
from tests.canaries import ADA_MRN, ADA_NAME, hits
from tests.interop.conftest import record_of, run_import, write_lines

pytestmark = pytest.mark.django_db


def test_bad_lines_are_reported_and_the_rest_imported(small_hospital, tmp_path, frozen, caplog):
    patients = copy.deepcopy(small_hospital.resources["Patient"][:3])
    given, family = ADA_NAME.split()
    planted = copy.deepcopy(patients[1])
    planted["name"] = [{"use": "official", "family": family, "given": [given]}]
    planted["identifier"][0]["value"] = ADA_MRN
    planted["birthDate"] = f"{ADA_MRN}-not-a-date"  # invalid, and carrying PHI the report must not repeat
    lines = [
        write_lines(tmp_path / "x.ndjson", [patients[0]]).read_text(),
        '{"resourceType": "Patient", "name": "' + ADA_NAME + '"\n',  # not JSON (cut off)
        write_lines(tmp_path / "y.ndjson", [planted]).read_text(),
        write_lines(tmp_path / "z.ndjson", [patients[2]]).read_text(),
    ]
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text("".join(lines))
    coverage = [
        c for c in small_hospital.resources["Coverage"] if c["beneficiary"]["reference"] == f"Patient/{planted['id']}"
    ]
    write_lines(export / "Coverage.ndjson", coverage)
    caplog.set_level(logging.DEBUG)

    output, failed = run_import(export)

    assert failed
    assert Child.objects.count() == 2
    assert {record_of(p).resource_id for p in (patients[0], patients[2])} == {patients[0]["id"], patients[2]["id"]}
    issues = list(ImportIssue.objects.order_by("file_name", "line").values_list("file_name", "line", "reason"))
    assert issues == [
        ("Coverage.ndjson", 1, "unresolved_reference:Patient"),
        ("Patient.ndjson", 2, "not_json"),
        ("Patient.ndjson", 3, "invalid:birthDate:value_error"),
    ]
    assert "Patient.ndjson:2: Patient rejected: not_json" in output
    assert "Patient.ndjson:3: Patient rejected: invalid:birthDate:value_error" in output
    assert "3 line(s) rejected" in output
    assert not Coverage.objects.exists()
    assert hits(output) == []
    assert hits(caplog.text) == []
    for record in caplog.records:
        assert hits(str(record.__dict__)) == []


def test_types_without_a_mapping_are_counted_unsupported_not_rejected(tmp_path, frozen):
    export = tmp_path / "export"
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    write_lines(export / "Encounter.ndjson", [encounter, encounter])
    output, failed = run_import(export)
    assert not failed
    rows = {line.split()[0]: line.split()[1:] for line in output.splitlines()[2:]}
    assert rows["Encounter"][7] == "2"  # unsupported
    assert rows["Encounter"][5] == "0"  # not rejected
