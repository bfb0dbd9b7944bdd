"""GET /fhir/R4/{type}/{id} and /fhir/R4/{type}?...: a bearer token with the type's scope (``r`` to
read, ``s`` to search), FHIR JSON answers and OperationOutcome errors, every read audited with the
client as actor; no user session opens any of it."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from fixtures import fhir_hospital
from interop.models import BackendClient
from portal import ledger, services
from portal.models import AuditEvent
from tests.conftest import ADA_MRN, ADA_NAME, BEN_NAME, PERSONAS, World
from tests.interop.conftest import ANCHOR, NOW
from tests.interop.smart_keys import access_token, bearer, register, rsa_key

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def engine(frozen: None) -> tuple[BackendClient, str]:
    key = rsa_key()
    client = register("engine", key, scopes="system/*.rs system/*.cud")
    return client, access_token("engine", key, "system/*.rs system/*.cud")


def scoped(scope: str) -> tuple[BackendClient, str]:
    key = rsa_key()
    client = register(f"client-{abs(hash(scope)) % 10_000}", key, scopes=scope)
    return client, access_token(client.client_id, key, scope)


def test_read_answers_the_resource_and_audits_the_child(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    response = bearer(token).get(f"/fhir/R4/Patient/{world.ada.pk}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    from fhir.resources.R4B.patient import Patient

    Patient.model_validate(body)
    assert body["id"] == str(world.ada.pk)
    assert any(i["value"] == ADA_MRN for i in body["identifier"])
    row = AuditEvent.objects.get(actor_id=client.account_id, action="read", entity_type="Patient")
    assert (row.entity_id, row.child_id, row.reason) == (str(world.ada.pk), world.ada.pk, "fhir_read")
    # Audit rows carry identities only.
    assert ADA_NAME not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_unknown_ids_and_types_are_operation_outcomes(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    missing = bearer(token).get("/fhir/R4/Patient/00000000-0000-0000-0000-000000000001")
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"
    assert bearer(token).get("/fhir/R4/Patient/not-a-uuid").status_code == 404
    unknown = bearer(token).get("/fhir/R4/Spaceship")
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["code"] == "not-supported"
    bad = bearer(token).get("/fhir/R4/Patient", {"name": "x"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert "unsupported_param" in bad.json()["issue"][0]["diagnostics"]


def test_search_pages_with_next_links_and_audits_each_resource(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    first = bearer(token).get("/fhir/R4/Patient", {"_count": "1"})
    assert first.status_code == 200
    page = first.json()
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(page)
    assert page["type"] == "searchset" and len(page["entry"]) == 1
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    parts = urlsplit(following)
    assert parts.path == "/fhir/R4/Patient"
    second = bearer(token).get(f"{parts.path}?{parts.query}").json()
    ids = {page["entry"][0]["resource"]["id"], second["entry"][0]["resource"]["id"]}
    assert ids == {str(world.ada.pk), str(world.ben.pk)}
    audited = set(
        AuditEvent.objects.filter(actor_id=client.account_id, reason="fhir_search").values_list("child_id", flat=True)
    )
    assert audited == {world.ada.pk, world.ben.pk}
    appointments = bearer(token).get("/fhir/R4/Appointment", {"patient": str(world.ada.pk)})
    assert appointments.status_code == 200 and appointments.json()["type"] == "searchset"


def test_scopes_split_read_and_search_per_type(frozen: None, world: World) -> None:
    reader, read_only = scoped("system/Patient.r")
    assert bearer(read_only).get(f"/fhir/R4/Patient/{world.ada.pk}").status_code == 200
    refused = bearer(read_only).get("/fhir/R4/Patient")
    assert refused.status_code == 403 and "system/Patient.s" in refused.json()["issue"][0]["diagnostics"]
    assert bearer(read_only).get(f"/fhir/R4/Coverage/{world.ada.pk}").status_code == 403
    denials = AuditEvent.objects.filter(actor_id=reader.account_id, action="deny", reason="fhir_scope")
    assert set(denials.values_list("entity_type", flat=True)) == {"Patient", "Coverage"}
    # A refusal names no data.
    assert ADA_NAME not in refused.content.decode()


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_user_session_opens_the_fhir_api(frozen: None, world: World, persona: str) -> None:
    """Guardians, clinicians, administrators and strangers alike: their sessions are not tokens here."""
    http = world.client(persona)
    browser = Client()
    browser.force_login(world.users[persona])
    for caller in (http, browser):
        for path in (f"/fhir/R4/Patient/{world.ada.pk}", "/fhir/R4/Patient", "/fhir/R4/$changes"):
            response = caller.get(path)
            assert response.status_code == 401, (persona, path)
            assert ADA_NAME not in response.content.decode() and BEN_NAME not in response.content.decode()
        posted = caller.post("/fhir/R4", json.dumps({"resourceType": "Bundle", "type": "batch"}), content_type=FHIR)
        assert posted.status_code == 401


def test_a_pushed_patient_reads_back_with_its_identifier(frozen: None, engine: tuple[BackendClient, str]) -> None:
    _, token = engine
    patient = fhir_hospital.generate(patients=1, seed=9, anchor=ANCHOR).resources["Patient"][0]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}],
    }
    assert bearer(token).post("/fhir/R4", json.dumps(bundle), content_type=FHIR).status_code == 200
    found = bearer(token).get("/fhir/R4/Patient").json()["entry"]
    assert len(found) == 1
    mrn = patient["identifier"][0]
    assert any(
        i.get("system") == mrn["system"] and i["value"] == mrn["value"] for i in found[0]["resource"]["identifier"]
    )
    assert found[0]["resource"]["birthDate"] == patient["birthDate"]


def _queries(http: Client, path: str, params: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = http.get(path, params)
    assert response.status_code == 200, response.content
    return len(captured)


def test_a_search_page_and_a_changes_page_take_a_fixed_number_of_queries(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    http = bearer(token)
    for n in range(4):
        services.child_create(actor=world.admin, name=f"Kid {n}", mrn=f"Q-{n}", date_of_birth=date(2019, 1, 1))
    ledger.seal()
    small = _queries(http, "/fhir/R4/Patient", {"_count": "1"})
    large = _queries(http, "/fhir/R4/Patient", {"_count": "6"})
    assert small == large
    ledger.seal()
    one = _queries(http, "/fhir/R4/$changes", {"_count": "1"})
    many = _queries(http, "/fhir/R4/$changes", {"_count": "10"})
    assert one == many


def test_unknown_paths_and_methods_answer_operation_outcomes(frozen: None, engine: tuple[BackendClient, str]) -> None:
    _, token = engine
    deep = bearer(token).get("/fhir/R4/Patient/a/_history/1")
    assert deep.status_code == 404 and deep.json()["issue"][0]["code"] == "not-found"
    strict = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {token}"})
    wrong = strict.delete("/fhir/R4/Patient/00000000-0000-0000-0000-000000000001")
    assert wrong.status_code == 405 and wrong.json()["issue"][0]["code"] == "not-supported"
    assert wrong["Allow"] == "GET, HEAD"
    assert Client().put("/fhir/R4/metadata").status_code == 405
