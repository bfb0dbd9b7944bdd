"""The import works in chunks: one transaction and one checkpoint per chunk, what a chunk's lines
look up read once for the chunk, and its records written at its end."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from care.models import TestResult
from fixtures import fhir_hospital
from interop import mapping
from interop.importer import import_files
from interop.mapping import ORDER
from interop.mapping.base import Mapping
from interop.models import ImportFile, ImportRun, SourceRecord
from portal.models import AuditEvent
from tests.interop.conftest import ANCHOR, record_of, row_counts, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db


class Interrupted(RuntimeError):
    """Stands for the process being killed (or the database going away) mid-chunk."""


class _Discard(Exception):
    """Rolls back a clean import made only to count its rows."""


def _clean_counts(export: Path, batch_size: int) -> dict[str, int]:
    try:
        with transaction.atomic():
            run_import(export, batch_size=batch_size)
            counts = row_counts()
            raise _Discard
    except _Discard:
        pass
    assert not SourceRecord.objects.exists()
    return counts


def test_a_failure_mid_chunk_keeps_the_chunks_before_and_the_rerun_matches_a_clean_import(
    small_hospital, tmp_path, frozen, monkeypatch
):
    export = write_export(small_hospital, tmp_path / "export")
    clean = _clean_counts(export, batch_size=10)
    original = mapping.MAPPINGS["Observation"]
    calls: list[str] = []

    def flaky(ctx: Any, resource: Any, record: Any) -> Any:
        calls.append(resource.id)
        if len(calls) == 15:  # past the first chunk of ten lines, before the end of the file
            raise Interrupted
        return original.apply(ctx, resource, record)

    monkeypatch.setitem(mapping.MAPPINGS, "Observation", Mapping(original.target_type, flaky, original.remove))
    with pytest.raises(Interrupted):
        run_import(export, batch_size=10)

    progress = ImportFile.objects.get(name="Observation.ndjson")
    assert progress.lines_committed and progress.lines_committed % 10 == 0 and not progress.completed
    created = progress.counts["Observation"].get("created", 0)
    # The committed chunks are whole; nothing of the interrupted one is left (rows, records, audit).
    assert TestResult.objects.count() == created
    assert SourceRecord.objects.filter(resource_type="Observation").count() == created
    assert AuditEvent.objects.filter(entity_type="Observation", action="create").count() == created

    monkeypatch.setitem(mapping.MAPPINGS, "Observation", original)
    output, _ = run_import(export, batch_size=10)

    assert "(continued)" in output
    assert ImportRun.objects.get().status == ImportRun.Status.FINISHED
    assert row_counts() == clean


def test_two_versions_of_a_resource_in_one_chunk(small_hospital, tmp_path, frozen):
    """The later line sees the record the earlier one made (not yet written): the newer version
    wins whichever comes first, and the resource has one record."""
    export = write_export(small_hospital, tmp_path / "export")
    run_import(export)
    observation = small_hospital.resources["Observation"][0]
    newer = copy.deepcopy(observation) | {
        "id": "moved-1",
        "meta": {"versionId": "3", "lastUpdated": "2026-12-01T12:00:00Z"},
    }
    newer["note"] = [{"text": "repeated"}]
    changed = copy.deepcopy(newer) | {"meta": {"versionId": "4", "lastUpdated": "2026-12-01T13:00:00Z"}}
    changed["status"] = "amended"
    older = copy.deepcopy(newer) | {"meta": {"versionId": "2", "lastUpdated": "2026-12-01T11:00:00Z"}}
    path = write_lines(tmp_path / "v2" / "Observation.ndjson", [newer, changed, older, newer])

    output, _ = run_import(path)

    row = next(line for line in output.splitlines() if line.startswith("Observation "))
    # created, updated, unchanged, older: the first is an update of the first import's record.
    assert row.split()[1:5] == ["0", "2", "0", "2"]
    record = record_of(observation)
    assert (record.version_id, record.resource_id) == ("4", "moved-1")
    assert TestResult.objects.get(pk=record.target).status == "amended"


# --- Statements per chunk ----------------------------------------------------------------------

# The import's own lookups, read once per chunk whatever its size: the chunk's records, the records
# its references point to, and what a mapping reads for all of its lines (``Mapping.prefetch``).
PER_CHUNK_READS = ("interop_sourcerecord",)
# Statements per resource at most, by type, measured on the generated hospital: what is left is the
# services' own work for each resource (the line's savepoint, the row's lookup and insert, its events
# and their audience; audit rows are written once per chunk). An Observation: SAVEPOINT and RELEASE
# for the line and for the row's insert, the row's lookup, its INSERT, the child's guardians and
# care team (the event's audience) and the event.
PER_RESOURCE = {
    "Patient": 10,
    "Appointment": 7,
    "MedicationRequest": 7,
    "DiagnosticReport": 6,
    "Observation": 9,
}


def _statements(queries: list[dict[str, str]]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for query in queries:
        sql = query["sql"]
        verb = sql.split(None, 1)[0].upper()
        table = next((word.strip('"') for word in sql.split() if word.startswith('"')), "")
        counted[f"{verb} {table.split('.')[0].strip(chr(34))}"] += 1
    return counted


def _import_counted(path: Path) -> Counter[str]:
    with CaptureQueriesContext(connection) as captured:
        import_files([path], batch_size=1000)
    return _statements(captured.captured_queries)


@pytest.mark.parametrize("kind", list(PER_RESOURCE))
def test_a_chunk_reads_its_lookups_once_and_each_resource_costs_a_bounded_number_of_statements(kind, tmp_path, frozen):
    hospital = fhir_hospital.generate(patients=18, seed=5, anchor=ANCHOR)
    folder = write_export(hospital, tmp_path / "export")
    before = [folder / f"{other}.ndjson" for other in ORDER[: ORDER.index(kind)]]
    if before:
        import_files([path for path in before if path.exists()])
    resources = hospital.resources[kind]
    third = len(resources) // 3
    assert third >= 5
    small = write_lines(tmp_path / "a" / f"{kind}.ndjson", resources[:third])
    large = write_lines(tmp_path / "b" / f"{kind}.ndjson", resources[third : 3 * third])

    counts = {name: _import_counted(path) for name, path in (("small", small), ("large", large))}

    for table in PER_CHUNK_READS:
        reads = counts["small"][f"SELECT {table}"], counts["large"][f"SELECT {table}"]
        assert reads[0] == reads[1] and reads[1] <= 4, (table, reads, counts["large"].most_common(30))
    if connection.vendor == "postgresql":  # SQLite splits a long INSERT by its parameter limit
        assert counts["large"]["INSERT interop_sourcerecord"] == 1
        assert counts["large"]["INSERT portal_auditevent"] == 1
    # Twice the lines cost the extra lines' own statements and nothing more (give or take a few
    # once-per-chunk statements that depend on what the lines hold, such as an empty prefetch).
    extra = sum(counts["large"].values()) - sum(counts["small"].values())
    assert extra <= PER_RESOURCE[kind] * third + 4, (extra, third, (counts["large"] - counts["small"]).most_common(12))
