"""An interrupted import continues from the last committed batch, with nothing duplicated."""

from __future__ import annotations

import pytest

from care.models import Appointment
from interop import mapping
from interop.mapping.base import Mapping
from interop.models import ImportFile, ImportRun
from portal.models import AuditEvent
from tests.interop.conftest import row_counts, run_import, write_export

pytestmark = pytest.mark.django_db


class Interrupted(RuntimeError):
    """Stands for the process being killed (or the database going away) mid-file."""


def test_a_run_interrupted_mid_file_continues_where_it_stopped(small_hospital, tmp_path, frozen, monkeypatch):
    export = write_export(small_hospital, tmp_path / "export")
    visits = len(small_hospital.resources["Appointment"])
    original = mapping.MAPPINGS["Appointment"]
    calls = []

    def flaky(ctx, resource, record):
        calls.append(resource.id)
        if len(calls) == 7:
            raise Interrupted
        return original.apply(ctx, resource, record)

    monkeypatch.setitem(mapping.MAPPINGS, "Appointment", Mapping(original.target_type, flaky, original.remove))
    with pytest.raises(Interrupted):
        run_import(export, batch_size=4)

    # Batches of 4: the first committed, the second (lines 5-8) rolled back with the interruption.
    progress = ImportFile.objects.get(name="Appointment.ndjson")
    assert (progress.lines_committed, progress.completed) == (4, False)
    assert Appointment.objects.count() == 4
    assert ImportFile.objects.get(name="Patient.ndjson").completed
    assert not ImportFile.objects.get(name="Coverage.ndjson").lines_committed

    monkeypatch.setitem(mapping.MAPPINGS, "Appointment", original)
    output, _ = run_import(export, batch_size=4)

    assert "(continued)" in output
    assert ImportRun.objects.count() == 1 and ImportRun.objects.get().status == ImportRun.Status.FINISHED
    assert Appointment.objects.count() == visits
    assert AuditEvent.objects.filter(entity_type="Appointment", action="create").count() == visits
    row = next(line for line in output.splitlines() if line.startswith("Appointment "))
    assert row.split()[1:4] == [str(visits), "0", "0"]  # counted once across both runs

    # And a further run over the same files is a new run that changes nothing.
    counts = row_counts()
    output, _ = run_import(export, batch_size=4)
    assert "(continued)" not in output and row_counts() == counts
