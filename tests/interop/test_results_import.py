"""DiagnosticReport, Observation and DocumentReference: a generated hospital's results and visit
summaries imported and checked value by value; re-import, older and newer versions, removals."""

from __future__ import annotations

import base64
import copy
import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from care.models import ResultReport, TestResult, VisitSummary
from care.services import results as results_service
from fixtures import fhir_hospital
from interop.fhir import parse_instant
from messaging.models import UserEvent
from portal.models import AuditEvent, User
from portal.vocabulary import EventType
from tests.interop.conftest import NOW, record_of, row_counts, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db

HOLD = {"genetic": 72.0}
FLAGS = {"N": "normal", "L": "low", "H": "high"}


@pytest.fixture
def held(settings):
    settings.PORTAL_RESULT_HOLD = HOLD


@pytest.fixture
def imported(small_hospital, tmp_path, frozen, held, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_export(small_hospital, tmp_path / "export"))
    return small_hospital.resources


@pytest.fixture
def events(django_capture_on_commit_callbacks):
    """Imports in the test publish their events (after commit, as in production)."""
    with django_capture_on_commit_callbacks(execute=True):
        yield


def _clinician(reference: str) -> User:
    """The clinician a ``Practitioner/<id>`` reference was imported as."""
    return User.objects.get(pk=record_of_id("Practitioner", reference.partition("/")[2]).target)


def record_of_id(kind, ident):
    from interop.models import SourceRecord

    return SourceRecord.objects.get(resource_type=kind, resource_id=ident)


def _report_listing(resources, observation):
    reference = f"Observation/{observation['id']}"
    return next((r for r in resources["DiagnosticReport"] if reference in str(r["result"])), None)


def test_reports_results_and_summaries_round_trip(imported):
    resources = imported
    assert TestResult.objects.count() == len(resources["Observation"])
    assert ResultReport.objects.count() == len(resources["DiagnosticReport"])
    assert VisitSummary.objects.count() == len(resources["DocumentReference"])
    for resource in resources["DiagnosticReport"]:
        report = ResultReport.objects.get(pk=record_of(resource).target)
        assert report.name == resource["code"]["text"]
        assert (report.code, report.code_system) == (resource["code"]["coding"][0]["code"], fhir_hospital.LOINC)
        section = resource["category"][0]["coding"][0]["code"]
        assert report.category == {"HM": "hematology", "CH": "chemistry", "GE": "genetic"}[section]
        assert report.conclusion == resource.get("conclusion", "")
        assert report.ordering_clinician == _clinician(resource["contained"][0]["requester"]["reference"])
        assert report.effective_at == parse_instant(resource["effectiveDateTime"])
        assert report.source_id.startswith("ehr:") and resource["identifier"][0]["value"] not in report.source_id
    for resource in resources["Observation"]:
        result = TestResult.objects.select_related("report").get(pk=record_of(resource).target)
        listing = _report_listing(resources, resource)
        assert result.name == resource["code"]["text"]  # the plain-language name, not the LOINC long name
        assert result.code == resource["code"]["coding"][0]["code"]
        assert result.effective_at == parse_instant(resource["effectiveDateTime"])
        assert result.issued_at == parse_instant(resource["issued"])
        assert result.status == "final"
        if "valueQuantity" in resource:
            quantity = resource["valueQuantity"]
            assert result.value_is_numeric and Decimal(result.value) == Decimal(str(quantity["value"]))
            assert result.unit == quantity["unit"]
            limits = resource["referenceRange"][0]
            assert Decimal(result.range_low) == Decimal(str(limits["low"]["value"]))
            assert Decimal(result.range_high) == Decimal(str(limits["high"]["value"]))
            assert result.interpretation == FLAGS[resource["interpretation"][0]["coding"][0]["code"]]
        else:
            concept = resource["valueCodeableConcept"]
            assert not result.value_is_numeric
            assert result.value == (concept.get("text") or concept["coding"][0]["display"])
        if listing is not None:
            assert result.report == ResultReport.objects.get(pk=record_of(listing).target)
            assert result.ordering_clinician == _clinician(listing["contained"][0]["requester"]["reference"])
        elif resource.get("performer"):
            assert result.report is None
            assert result.ordering_clinician == _clinician(resource["performer"][0]["reference"])
        confidential = any(label["code"] == "R" for label in resource["meta"].get("security", []))
        assert result.confidential == confidential
        genetic = listing is not None and listing["category"][0]["coding"][0]["code"] == "GE"
        # The genetic panel's result is coded laboratory, but held as its report's category.
        assert result.category == ("genetic" if genetic else "laboratory")
        if genetic:
            assert result.released_at is None and result.hold_until == NOW + timedelta(hours=72)
        else:
            assert result.released_at == NOW and result.hold_until is None
    flags = set(TestResult.objects.values_list("interpretation", flat=True))
    assert {"normal", "low", "high"} <= flags
    assert TestResult.objects.filter(confidential=True).exists()
    assert TestResult.objects.filter(category="genetic").exists()
    for resource in resources["DocumentReference"]:
        summary = VisitSummary.objects.get(pk=record_of(resource).target)
        attachments = {c["attachment"]["contentType"].split(";")[0]: c["attachment"] for c in resource["content"]}
        assert summary.text == base64.b64decode(attachments["text/plain"]["data"]).decode()
        if "application/pdf" in attachments:
            pdf = base64.b64decode(attachments["application/pdf"]["data"])
            assert summary.pdf_sha256 == hashlib.sha256(pdf).hexdigest() and summary.pdf_size == len(pdf)
        else:
            assert summary.pdf == "" and summary.pdf_size == 0
        assert summary.title == resource["description"]
        assert summary.date == parse_instant(resource["date"])
        assert summary.author == _clinician(resource["author"][0]["reference"])
        appointment = resource["context"]["related"][0]["reference"].partition("/")[2]
        assert str(summary.appointment_id) == record_of_id("Appointment", appointment).target
        assert (summary.category, summary.status, summary.released_at) == ("visit-summary", "current", NOW)
    assert VisitSummary.objects.filter(pdf_size__gt=0).exists()


def test_imported_writes_are_audited_and_announced_as_the_services_do(imported):
    released = TestResult.objects.filter(released_at__isnull=False)
    assert AuditEvent.objects.filter(entity_type="Observation", action="create").count() == TestResult.objects.count()
    assert AuditEvent.objects.filter(entity_type="Observation", reason="held").count() == (
        TestResult.objects.filter(released_at__isnull=True).count()
    )
    assert AuditEvent.objects.filter(entity_type="DiagnosticReport").count() == ResultReport.objects.count()
    assert AuditEvent.objects.filter(entity_type="DocumentReference").count() == VisitSummary.objects.count()
    # Held results are announced when released, not before.
    announced = UserEvent.objects.filter(type=EventType.RESULT_AVAILABLE)
    assert announced.exists()
    assert set(announced.values_list("entity_id", flat=True)) <= set(released.values_list("pk", flat=True))
    assert not announced.filter(entity_id__in=TestResult.objects.filter(category="genetic").values("pk")).exists()
    # The adolescent-confidential result is announced to the care team only, marked so.
    secret = TestResult.objects.get(confidential=True)
    assert set(announced.filter(entity_id=secret.pk).values_list("confidential", flat=True)) == {True}


def test_reimport_writes_nothing(small_hospital, tmp_path, frozen, held):
    export = write_export(small_hospital, tmp_path / "export")
    run_import(export)
    before = row_counts()
    rows = {r.pk: (r.updated_at, r.value, r.status) for r in TestResult.objects.all()}

    output, _ = run_import(export)

    assert row_counts() == before
    assert {r.pk: (r.updated_at, r.value, r.status) for r in TestResult.objects.all()} == rows
    for kind in ("DiagnosticReport", "Observation", "DocumentReference", "Schedule", "Slot"):
        line = next(line for line in output.splitlines() if line.startswith(kind + " "))
        assert line.split()[1:4] == ["0", "0", str(len(small_hospital.resources[kind]))]


def _version(resource, number, last_updated, **changes):
    newer = copy.deepcopy(resource)
    newer["meta"] = {**resource["meta"], "versionId": str(number), "lastUpdated": last_updated}
    newer.update(changes)
    return newer


def test_a_corrected_result_updates_and_an_older_version_is_ignored(imported, tmp_path, events):
    observation = next(
        o for o in imported["Observation"] if "valueQuantity" in o and _report_listing(imported, o) is not None
    )
    result = TestResult.objects.get(pk=record_of(observation).target)
    report = result.report
    corrected = _version(
        observation,
        2,
        "2026-11-30T12:00:00Z",
        status="corrected",
        valueQuantity={**observation["valueQuantity"], "value": 99.5},
    )
    run_import(write_lines(tmp_path / "v2" / "Observation.ndjson", [corrected]))
    result.refresh_from_db()
    assert (result.status, result.value, result.report) == ("corrected", "99.5", report)
    assert UserEvent.objects.filter(type=EventType.RESULT_CHANGED, entity_id=result.pk).exists()
    assert AuditEvent.objects.filter(entity_type="Observation", entity_id=str(result.pk), action="update").count() == 1

    counts = row_counts()
    output, _ = run_import(write_lines(tmp_path / "v1" / "Observation.ndjson", [observation]))
    result.refresh_from_db()
    assert (result.status, result.value) == ("corrected", "99.5")
    assert row_counts() == counts
    line = next(line for line in output.splitlines() if line.startswith("Observation "))
    assert line.split()[1:5] == ["0", "0", "0", "1"]


def test_a_report_that_drops_a_result_lets_it_go(imported, tmp_path):
    report_resource = next(r for r in imported["DiagnosticReport"] if len(r["result"]) > 1)
    report = ResultReport.objects.get(pk=record_of(report_resource).target)
    dropped_id = report_resource["result"][-1]["reference"].partition("/")[2]
    dropped = TestResult.objects.get(pk=record_of_id("Observation", dropped_id).target)
    assert dropped.report == report
    newer = _version(report_resource, 2, "2026-11-30T12:00:00Z", result=report_resource["result"][:-1])
    run_import(write_lines(tmp_path / "v2" / "DiagnosticReport.ndjson", [newer]))
    dropped.refresh_from_db()
    assert dropped.report is None
    assert report.results.count() == len(report_resource["result"]) - 1


def test_removal_withdraws_results_and_summaries_and_keeps_their_history(
    small_hospital, tmp_path, frozen, held, events
):
    run_import(write_export(small_hospital, tmp_path / "export"))
    report_resource = small_hospital.resources["DiagnosticReport"][0]
    members = {ref["reference"].partition("/")[2] for ref in report_resource["result"]}
    document = small_hospital.resources["DocumentReference"][0]
    results = list(TestResult.objects.filter(pk__in=[record_of_id("Observation", m).target for m in members]))
    summary = VisitSummary.objects.get(pk=record_of(document).target)
    report = ResultReport.objects.get(pk=record_of(report_resource).target)
    audits = set(AuditEvent.objects.values_list("seq", flat=True))
    gone = members | {report_resource["id"], document["id"]}
    trimmed = fhir_hospital.Hospital()
    for kind, resources in small_hospital.resources.items():
        trimmed.resources[kind] = [r for r in resources if r["id"] not in gone]

    output, _ = run_import(write_export(trimmed, tmp_path / "full"), full_export=True)

    for result in results:
        result.refresh_from_db()
        assert result.status == TestResult.Status.ENTERED_IN_ERROR
    summary.refresh_from_db()
    report.refresh_from_db()
    assert summary.status == VisitSummary.Status.ENTERED_IN_ERROR and summary.text  # hidden, kept
    assert report.status == "entered-in-error"
    now = NOW
    family = TestResult.objects.filter(results_service.family_results_q(now))
    assert not family.filter(pk__in=[r.pk for r in results]).exists()
    assert not VisitSummary.objects.filter(results_service.family_summaries_q(now), pk=summary.pk).exists()
    assert audits <= set(AuditEvent.objects.values_list("seq", flat=True))
    withdrawn = UserEvent.objects.filter(type=EventType.RESULT_CHANGED, entity_id=results[0].pk)
    assert withdrawn.exists()
    assert all(record_of_id("Observation", m).deleted for m in members)
    line = next(line for line in output.splitlines() if line.startswith("Observation "))
    assert line.split()[5] == str(len(members))  # deleted
    # The rest stayed as it was.
    assert TestResult.objects.exclude(status=TestResult.Status.ENTERED_IN_ERROR).count() == (
        len(small_hospital.resources["Observation"]) - len(members)
    )


def test_a_report_imported_after_its_results_gathers_them_and_passes_on_its_confidentiality(
    small_hospital, tmp_path, frozen
):
    resources = small_hospital.resources
    report_resource = copy.deepcopy(next(r for r in resources["DiagnosticReport"] if len(r["result"]) > 1))
    members = [ref["reference"].partition("/")[2] for ref in report_resource["result"]]
    first = fhir_hospital.Hospital()
    for kind, items in resources.items():
        first.resources[kind] = [] if kind == "DiagnosticReport" else items
    run_import(write_export(first, tmp_path / "first"))
    results = [TestResult.objects.get(pk=record_of_id("Observation", m).target) for m in members]
    assert all(r.report is None and not r.confidential for r in results)

    report_resource["meta"]["security"] = [{"system": fhir_hospital.CONFIDENTIALITY, "code": "V"}]
    run_import(write_lines(tmp_path / "later" / "DiagnosticReport.ndjson", [report_resource]))

    report = ResultReport.objects.get(pk=record_of(report_resource).target)
    assert report.confidential
    for result in results:
        result.refresh_from_db()
        assert result.report == report and result.confidential
    assert AuditEvent.objects.filter(entity_type="Observation", action="update").count() == len(members)


def test_importing_results_costs_a_bounded_number_of_queries_per_line(small_hospital, tmp_path, frozen):
    before = fhir_hospital.Hospital()
    for kind, items in small_hospital.resources.items():
        before.resources[kind] = [] if kind == "Observation" else items
    run_import(write_export(before, tmp_path / "rest"))
    observations = fhir_hospital.Hospital()
    observations.resources["Observation"] = small_hospital.resources["Observation"]
    path = write_export(observations, tmp_path / "results")
    with CaptureQueriesContext(connection) as queries:
        run_import(path)
    lines = len(observations.resources["Observation"])
    assert TestResult.objects.count() == lines
    # Per line: its record, child, report, the result, its audit row, event audience and record.
    assert len(queries) <= 18 * lines + 20
