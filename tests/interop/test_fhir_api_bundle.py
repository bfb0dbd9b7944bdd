"""POST /fhir/R4: transaction and batch Bundles from the integration engine go through the import's
mappings; a transaction with one bad entry is refused whole, naming the entry, and leaves no row."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.test import override_settings

from fixtures import fhir_hospital
from interop.models import BackendClient, SourceRecord
from portal.models import AuditEvent, Child, GuardianLink
from tests.interop.conftest import ANCHOR, record_of, row_counts
from tests.interop.smart_keys import access_token, bearer, register, rsa_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]

FHIR = "application/fhir+json"


@pytest.fixture
def hospital() -> fhir_hospital.Hospital:
    return fhir_hospital.generate(patients=2, seed=5, anchor=ANCHOR)


@pytest.fixture
def engine() -> tuple[BackendClient, str]:
    key = rsa_key()
    client = register("engine", key, scopes="system/*.rs system/*.cud")
    return client, access_token("engine", key, "system/*.cud system/*.rs")


def entry(resource: dict[str, Any], method: str = "PUT") -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}" if method == "PUT" else resource["resourceType"]
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource, "request": {"method": method, "url": url}}


def family(hospital: fhir_hospital.Hospital) -> list[dict[str, Any]]:
    """The first patient and the guardians named on it, in an order that is not the dependency order."""
    patient = hospital.resources["Patient"][0]
    related = [
        r for r in hospital.resources["RelatedPerson"] if r["patient"]["reference"] == f"Patient/{patient['id']}"
    ]
    return [*related, patient]


def post(token: str, bundle: Any) -> Any:
    return bearer(token).post("/fhir/R4", json.dumps(bundle), content_type=FHIR)


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_a_transaction_is_applied_through_the_import_mappings_and_answered(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital, django_capture_on_commit_callbacks: Any
) -> None:
    client, token = engine
    resources = family(hospital)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(token, transaction(*(entry(r) for r in resources)))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(body)
    assert body["type"] == "transaction-response"
    # One response per entry, in the request's order (the patient was applied first all the same).
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * len(resources)
    assert body["entry"][-1]["response"]["location"].startswith(f"Patient/{resources[-1]['id']}/_history/")
    child = Child.objects.get(pk=record_of(resources[-1]).target)
    assert GuardianLink.objects.filter(child=child).count() == len(resources) - 1
    # The mappings' writes name the client's account; the call itself is audited too.
    assert AuditEvent.objects.filter(actor_id=client.account_id, entity_type="Patient", action="create").exists()
    assert AuditEvent.objects.filter(
        actor_id=client.account_id, entity_type="Bundle", reason="fhir_transaction"
    ).exists()
    # The same Bundle again changes nothing but the call's own audit row.
    before = row_counts()
    again = post(token, transaction(*(entry(r) for r in resources)))
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * len(resources)
    after = row_counts()
    assert after.pop("AuditEvent") == before.pop("AuditEvent") + 1
    assert after == before


def test_one_invalid_entry_rejects_the_whole_transaction_naming_it(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    client, token = engine
    resources = family(hospital)
    broken = copy.deepcopy(resources[-1])
    broken["birthDate"] = "not a date"
    before = row_counts()
    response = post(token, transaction(*(entry(r) for r in resources[:-1]), entry(broken)))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    index = len(resources) - 1
    assert issue["code"] == "invalid" and issue["expression"] == [f"Bundle.entry[{index}]"]
    assert f"Bundle.entry[{index}]" in issue["diagnostics"] and "birthDate" in issue["diagnostics"]
    assert "not a date" not in response.content.decode()
    after = row_counts()
    assert after.pop("AuditEvent") == before.pop("AuditEvent") + 1  # the refusal, nothing else
    assert after == before
    assert AuditEvent.objects.filter(actor_id=client.account_id, outcome="failure").exists()


def test_an_entry_the_mapping_refuses_rolls_the_whole_transaction_back(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    _, token = engine
    patient = hospital.resources["Patient"][0]
    orphan = copy.deepcopy(hospital.resources["RelatedPerson"][0])
    orphan["patient"] = {"reference": "Patient/never-sent"}
    before = row_counts()
    response = post(token, transaction(entry(patient), entry(orphan)))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1]"] and "unresolved_reference:Patient" in issue["diagnostics"]
    after = row_counts()
    after.pop("AuditEvent"), before.pop("AuditEvent")
    assert after == before
    assert not Child.objects.exists()


def test_a_batch_applies_the_good_entries_and_answers_each_bad_one(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    _, token = engine
    first, second = hospital.resources["Patient"][:2]
    bad = copy.deepcopy(second)
    bad["gender"] = 7
    response = post(token, transaction(entry(first), entry(bad), {"request": {"method": "GET"}}, kind="batch"))
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "400 Bad Request"]
    assert response.json()["type"] == "batch-response"
    assert Child.objects.count() == 1


def test_delete_entries_end_access_like_a_full_exports_removal(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    _, token = engine
    resources = family(hospital)
    assert post(token, transaction(*(entry(r) for r in resources))).status_code == 200
    patient = resources[-1]
    child = Child.objects.get(pk=record_of(patient).target)
    system, value = patient["identifier"][0]["system"], patient["identifier"][0]["value"]
    deletion = {"request": {"method": "DELETE", "url": f"Patient?identifier={system}|{value}"}}
    response = post(token, transaction(deletion))
    assert response.status_code == 200 and response.json()["entry"][0]["response"]["status"] == "204 No Content"
    assert not GuardianLink.objects.filter(child=child, status__in=["invited", "active"]).exists()
    assert Child.objects.filter(pk=child.pk).exists()  # the row and its history stay
    assert SourceRecord.objects.get(pk=record_of(patient).pk).deleted
    # Deleting again is harmless; deleting what was never sent names the entry.
    assert post(token, transaction(deletion)).json()["entry"][0]["response"]["status"] == "200 OK"
    unknown = post(token, transaction({"request": {"method": "DELETE", "url": "Patient/never-sent"}}))
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]


def test_writes_need_the_scope_for_each_entry(hospital: fhir_hospital.Hospital) -> None:
    key = rsa_key()
    client = register("reader", key, scopes="system/*.rs system/Patient.c")
    token = access_token("reader", key, "system/*.rs system/Patient.c")
    resources = family(hospital)
    response = post(token, transaction(*(entry(r) for r in resources)))
    assert response.status_code == 403
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]
    assert not Child.objects.exists()
    assert AuditEvent.objects.filter(actor_id=client.account_id, action="deny").exists()
    # The patient alone is within the scope; updating it later is not (no Patient.u).
    assert post(token, transaction(entry(resources[-1]))).status_code == 200
    changed = copy.deepcopy(resources[-1])
    changed["gender"] = "other"
    assert post(token, transaction(entry(changed))).status_code == 403


def test_bad_bundles_are_refused_with_a_clear_code(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    _, token = engine
    patient = hospital.resources["Patient"][0]
    cases = [
        ({"resourceType": "Patient"}, 400, "not_a_bundle"),
        (transaction(kind="collection"), 400, "bundle_type"),
        (
            transaction({"resource": patient, "request": {"method": "PATCH", "url": "Patient"}}),
            400,
            "method_not_supported",
        ),
        (
            transaction(
                {"resource": {"resourceType": "Location", "id": "s"}, "request": {"method": "POST", "url": "Location"}}
            ),
            400,
            "unsupported_type",
        ),
        (transaction(entry(patient) | {"request": {"method": "PUT", "url": "Patient/other-id"}}), 400, "url_mismatch"),
        (transaction(entry({**patient, "unknownField": 1})), 400, "invalid:"),
        ({**transaction(entry(patient)), "extra": 1}, 400, "unknown_field:Bundle"),
        (transaction(entry(patient) | {"note": "x"}), 400, "unknown_field:entry"),
        (transaction(entry(patient) | {"request": {"method": "PUT", "url": "Patient", "x": 1}}), 400, "unknown_field"),
    ]
    for bundle, status, reason in cases:
        response = post(token, bundle)
        assert response.status_code == status, (reason, response.content)
        assert reason in response.json()["issue"][0]["diagnostics"]
    not_json = bearer(token).post("/fhir/R4", "{", content_type=FHIR)
    assert not_json.status_code == 400
    wrong_type = bearer(token).post("/fhir/R4", "a=b", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    assert not Child.objects.exists()


@override_settings(PORTAL_FHIR_BUNDLE_MAX_ENTRIES=2, PORTAL_FHIR_BUNDLE_MAX_BYTES=20_000)
def test_size_limits(engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital) -> None:
    _, token = engine
    patients = hospital.resources["Patient"][:2]
    too_many = post(token, transaction(*(entry(p) for p in [*patients, patients[0]])))
    assert too_many.status_code == 413 and "at most 2" in too_many.json()["issue"][0]["diagnostics"]
    padded = transaction(entry(patients[0]))
    padded["id"] = "x" * 30_000
    too_big = post(token, padded)
    assert too_big.status_code == 413 and "20000 bytes" in too_big.json()["issue"][0]["diagnostics"]
    assert not Child.objects.exists()


def test_a_bundle_needs_a_token(hospital: fhir_hospital.Hospital) -> None:
    response = bearer("nothing").post(
        "/fhir/R4", json.dumps(transaction(entry(hospital.resources["Patient"][0]))), content_type=FHIR
    )
    assert response.status_code == 401
    assert not Child.objects.exists()


def test_entries_may_refer_to_each_other_by_urn_uuid(
    engine: tuple[BackendClient, str], hospital: fhir_hospital.Hospital
) -> None:
    _, token = engine
    patient, *related = reversed(family(hospital))
    sent = {key: value for key, value in patient.items() if key != "id"}
    urn = "urn:uuid:6f1c1d1e-2b7a-4c55-9a41-0d7f3c9e8b21"
    entries = [{"fullUrl": urn, "resource": sent, "request": {"method": "POST", "url": "Patient"}}]
    for person in related:
        entries.append(entry({**person, "patient": {"reference": urn}}))
    response = post(token, transaction(*entries))
    assert response.status_code == 200, response.content
    record = SourceRecord.objects.get(resource_type="Patient")
    assert record.resource_id == urn.removeprefix("urn:uuid:")
    assert GuardianLink.objects.filter(child_id=record.target).count() == len(related)
