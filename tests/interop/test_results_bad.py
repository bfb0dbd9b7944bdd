"""Results and visit summaries the portal cannot show faithfully or safely are rejected line by line,
with a reason that repeats nothing of the record; the good lines around them are imported."""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from care.models import TestResult, VisitSummary
from interop.mapping import documents
from interop.models import ImportIssue
from tests.canaries import ADA_NAME, hits
from tests.interop.conftest import run_import, write_lines

pytestmark = pytest.mark.django_db

SAFE_PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def _text(data: bytes) -> dict[str, Any]:
    return {"attachment": {"contentType": "text/plain", "data": base64.b64encode(data).decode()}}


def _pdf(data: bytes) -> dict[str, Any]:
    return {"attachment": {"contentType": "application/pdf", "data": base64.b64encode(data).decode()}}


def _patient_export(small_hospital, tmp_path):
    export = tmp_path / "export"
    write_lines(export / "Patient.ndjson", small_hospital.resources["Patient"][:1])
    return export, small_hospital.resources["Patient"][0]["id"]


def test_observations_the_portal_cannot_show_are_reported(small_hospital, tmp_path, frozen, caplog, settings):
    export, pid = _patient_export(small_hospital, tmp_path)
    good = copy.deepcopy(next(o for o in small_hospital.resources["Observation"] if "valueQuantity" in o))
    good["subject"]["reference"] = f"Patient/{pid}"

    def variant(ident, **changes):
        bad = copy.deepcopy(good)
        bad["id"], bad["identifier"][0]["value"] = ident, ident
        for key in [k for k in bad if k.startswith("value")]:
            del bad[key]
        bad.update(changes)
        return bad

    lines = [
        good,
        variant("range", valueRange={"low": {"value": 1}, "high": {"value": 2}}),
        variant("empty"),
        variant("month", valueString=ADA_NAME, effectiveDateTime="2026-11"),
        variant("unknown", valueString="x", status="unknown"),
        variant("nameless", valueString="x", code={"coding": [{"system": "http://loinc.org", "code": "718-7"}]}),
        variant("day", valueString="Negative", effectiveDateTime="2026-11-20"),
    ]
    write_lines(export / "Observation.ndjson", lines)
    caplog.set_level(logging.DEBUG)

    output, failed = run_import(export)

    assert failed
    issues = list(ImportIssue.objects.order_by("line").values_list("file_name", "line", "reason"))
    assert issues == [
        ("Observation.ndjson", 2, "observation_value:valueRange"),
        ("Observation.ndjson", 3, "observation_without_value"),
        ("Observation.ndjson", 4, "partial_date"),
        ("Observation.ndjson", 5, "observation_status:unknown"),
        ("Observation.ndjson", 6, "no_test_name"),
    ]
    assert TestResult.objects.count() == 2
    # A date alone is midnight in the hospital's time zone.
    day = TestResult.objects.get(value_is_numeric=False)
    assert day.effective_at == datetime(2026, 11, 20, tzinfo=ZoneInfo(settings.PORTAL_HOSPITAL_TIME_ZONE))
    assert hits(output) == [] and hits(caplog.text) == []


def test_unsafe_oversized_or_unreadable_attachments_reject_their_summary(
    small_hospital, tmp_path, frozen, caplog, monkeypatch
):
    monkeypatch.setattr(documents, "PDF_MAX_BASE64", 4000)
    export, pid = _patient_export(small_hospital, tmp_path)
    good = copy.deepcopy(small_hospital.resources["DocumentReference"][0])
    good["subject"]["reference"] = f"Patient/{pid}"
    good.pop("context")

    def variant(ident, *content):
        bad = copy.deepcopy(good)
        bad["id"], bad["identifier"][0]["value"] = ident, ident
        bad["content"] = list(content)
        return bad

    canary = ADA_NAME.encode()
    scripted = SAFE_PDF.replace(b"<< /Type /Catalog >>", b"<< /Type /Catalog /OpenAction << /JavaScript (x) >> >>")
    mismatched = _text(b"Seen today, " + canary)
    mismatched["attachment"]["hash"] = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    lines = [
        good,
        variant("script", _pdf(scripted)),
        variant("large", _pdf(SAFE_PDF + b"%" + b"x" * 4000 + b"\n%%EOF\n")),
        variant("trailing", _pdf(SAFE_PDF + canary)),
        variant("url", {"attachment": {"contentType": "application/pdf", "url": "https://ehr.example/doc/1"}}),
        variant("html", {"attachment": {"contentType": "text/html", "data": base64.b64encode(canary).decode()}}),
        variant("hash", mismatched),
        variant("latin", _text("Caf\u00e9".encode("latin-1"))),
        variant("pdf-only", _pdf(SAFE_PDF)),
    ]
    write_lines(export / "DocumentReference.ndjson", lines)
    caplog.set_level(logging.DEBUG)

    output, failed = run_import(export)

    assert failed
    issues = list(ImportIssue.objects.order_by("line").values_list("line", "reason"))
    assert issues == [
        (2, "attachment:pdf_invalid"),
        (3, "attachment_too_large"),
        (4, "attachment:pdf_invalid"),
        (5, "attachment_url_only"),
        (6, "no_supported_attachment"),
        (7, "attachment_hash_mismatch"),
        (8, "attachment_not_utf8"),
    ]
    assert VisitSummary.objects.count() == 2
    assert (len(SAFE_PDF), "") in [(s.pdf_size, s.text) for s in VisitSummary.objects.all()]
    assert hits(output) == [] and hits(caplog.text) == []
    for record in caplog.records:
        assert hits(str(record.__dict__)) == []


def test_a_line_too_long_to_read_is_reported_and_the_rest_imported(small_hospital, tmp_path, frozen, monkeypatch):
    from interop import importer

    monkeypatch.setattr(importer, "MAX_LINE_CHARS", 3000)
    monkeypatch.setattr(importer, "BATCH_MAX_CHARS", 2500)  # a batch per line or two: progress still exact
    export, pid = _patient_export(small_hospital, tmp_path)
    documents_of = []
    for n, resource in enumerate(small_hospital.resources["DocumentReference"][:4]):
        document = copy.deepcopy(resource)
        document["subject"]["reference"] = f"Patient/{pid}"
        document.pop("context")
        document["content"] = [_text(b"Seen today." + (b" " + ADA_NAME.encode()) * (400 if n == 1 else 0))]
        documents_of.append(document)
    path = write_lines(export / "DocumentReference.ndjson", documents_of)
    assert len(path.read_text().splitlines()[1]) > 3000 > max(len(x) for x in path.read_text().splitlines()[2:])

    output, failed = run_import(export)

    assert failed
    assert list(ImportIssue.objects.values_list("line", "reason")) == [(2, "line_too_large")]
    assert VisitSummary.objects.count() == 3
    assert hits(output) == []
    # The type could not be read whole: a full export removes none of it.
    output, _ = run_import(export, full_export=True)
    assert "DocumentReference: deletions skipped" in output
