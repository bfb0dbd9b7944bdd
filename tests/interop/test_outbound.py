"""Every resource type the portal gives out validates with the FHIR R4 (R4B) models, and says what
the row says."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import time_machine
from fhir.resources.R4B import get_fhir_model_class

from interop import fhir_read
from interop.fhir import business_identifier
from interop.mapping.timing import schedule
from interop.models import SourceRecord
from interop.outbound import SOURCES
from tests.care import results_data
from tests.interop import outbound_data
from tests.interop.conftest import run_import, write_export

pytestmark = pytest.mark.django_db
BASE = "https://portal.example.org/fhir/R4"
NOW = "2026-12-01T15:00:00Z"


def _all(resource_type: str) -> list[dict[str, Any]]:
    bundle = fhir_read.search(resource_type, {}, base_url=BASE)
    return [entry["resource"] for entry in bundle["entry"]]


@pytest.fixture
def rows(world):
    with time_machine.travel(NOW, tick=False):
        yield outbound_data.build(world)


def test_every_type_validates(rows, world, settings):
    settings.PORTAL_FHIR_COMMUNICATION = True
    for resource_type in SOURCES:
        resources = _all(resource_type)
        assert resources, resource_type
        for resource in resources:
            get_fhir_model_class(resource_type).model_validate(resource)
            assert resource["meta"]["lastUpdated"].endswith("Z")
            again = fhir_read.read(resource_type, resource["id"])
            assert again is not None and again["id"] == resource["id"]
            get_fhir_model_class(resource_type).model_validate(again)


def test_bundle_validates(rows):
    bundle = fhir_read.search("Observation", {"_count": ["1"]}, base_url=BASE)
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]


def test_medication_timing_is_the_inverse_of_the_import(rows):
    by_id = {r["id"]: r for r in _all("MedicationRequest")}
    for plan in (rows.plan, rows.as_needed):
        wanted = schedule(by_id[str(plan.pk)]["dosageInstruction"])
        assert wanted.schedule_kind == plan.schedule_kind
        assert wanted.times_of_day == plan.times_of_day
        assert wanted.min_interval_minutes == plan.min_interval_minutes
        assert wanted.max_per_day == plan.max_per_day
    fixed = by_id[str(rows.plan.pk)]
    assert fixed["dosageInstruction"][0]["timing"]["repeat"]["timeOfDay"] == ["08:00:00", "20:00:00"]
    assert fixed["dispenseRequest"]["numberOfRepeatsAllowed"] == 3


def test_values_come_from_the_rows(rows, world):
    coverage = {r["id"]: r for r in _all("Coverage")}
    assert coverage[str(rows.draft_coverage.pk)]["status"] == "draft"
    assert coverage[str(rows.coverage.pk)]["status"] == "active"
    assert coverage[str(rows.coverage.pk)]["subscriberId"] == "MEMBER-CANARY-77"
    tasks = {r["id"]: r for r in _all("Task")}
    assert tasks[str(rows.refill.pk)]["focus"] == {"reference": f"MedicationRequest/{rows.plan.pk}"}
    assert tasks[str(rows.change_request.pk)]["focus"] == {"reference": f"Appointment/{rows.change_request.pk}"}
    assert tasks[str(rows.change_request.pk)]["code"]["coding"][0]["code"] == "change"
    observation = fhir_read.read("Observation", str(rows.result.pk))
    assert observation is not None
    assert observation["valueQuantity"] == {"value": 5.4, "unit": "mmol/L"}
    assert observation["referenceRange"][0]["low"]["value"] == 3.9
    assert observation["note"][0]["text"] == results_data.COMMENT
    document = fhir_read.read("DocumentReference", str(rows.summary.pk))
    assert document is not None
    pdf = document["content"][1]["attachment"]
    assert base64.b64decode(pdf["data"]) == results_data.PDF
    listed = {r["id"]: r for r in _all("DocumentReference")}[str(rows.summary.pk)]
    assert "data" not in listed["content"][1]["attachment"]  # pages give the PDF's size, a read its bytes
    dose = fhir_read.read("MedicationAdministration", str(rows.dose.pk))
    assert dose is not None and dose["status"] == "completed"
    conditions = _all("Patient")
    assert {p["id"] for p in conditions} == {str(world.ada.pk), str(world.ben.pk)}


def test_audit_events_hold_only_what_the_row_holds(rows, world):
    events = _all("AuditEvent")
    denied = [e for e in events if e["outcome"] == "4"]
    assert denied and denied[0]["outcomeDesc"] == "no_view_access"
    text = str(events)
    for secret in (world.ada.name, world.ada.mrn, world.guardian.email, world.guardian.display_name):
        assert secret not in text


ROUND_TRIP_TYPES = (
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "CareTeam",
    "Appointment",
    "MedicationRequest",
    "Coverage",
    "Condition",
)


def _identifiers(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["system"], i["value"]) for i in resource.get("identifier", []) if i.get("system")}


def test_an_imported_hospital_reads_back_with_its_identifiers(
    small_hospital, tmp_path, frozen, django_capture_on_commit_callbacks
):
    export = write_export(small_hospital, tmp_path / "export")
    with django_capture_on_commit_callbacks(execute=True):
        run_import(export)
    for resource_type in ROUND_TRIP_TYPES:
        given = small_hospital.resources[resource_type]
        out = _all(resource_type)
        for resource in out:
            get_fhir_model_class(resource_type).model_validate(resource)
        produced = set().union(*(_identifiers(r) for r in out))
        imported = [
            r
            for r in given
            if SourceRecord.objects.filter(resource_type=resource_type, resource_id=r["id"], deleted=False)
            .exclude(targets=[])
            .exists()
        ]
        assert imported, resource_type
        for resource in imported:
            system, value = business_identifier(resource)[0].split("|", 2)[1:]
            assert (system, value) in produced, resource_type
    patients = {p["identifier"][0]["value"]: p for p in _all("Patient")}
    for patient in small_hospital.resources["Patient"]:
        mine = patients[patient["identifier"][0]["value"]]
        assert (mine["birthDate"], mine["gender"]) == (patient["birthDate"], patient["gender"])
        assert mine["name"][0]["family"] == patient["name"][0]["family"]
    plans = {next(iter(_identifiers(r))): r for r in _all("MedicationRequest")}
    for request in small_hospital.resources["MedicationRequest"]:
        _, system, value = business_identifier(request)[0].split("|", 2)
        pair = (system, value)
        if pair in plans:
            assert schedule(plans[pair]["dosageInstruction"]) == schedule(request["dosageInstruction"])
