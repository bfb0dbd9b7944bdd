"""``GET /api/v1/children/{id}/export``: the family's own copy, by the child endpoints' rules."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B import get_fhir_model_class

from portal.models import AuditEvent, CareTeamMembership
from tests import care_data
from tests.care import results_data
from tests.conftest import ADA_MRN, ADA_NAME, BEN_NAME, World
from tests.interop import outbound_data

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
HELD = "Held genetic CANARYHELD"
SECRET = "Confidential CANARYSECRET"


@pytest.fixture(autouse=True)
def frozen() -> Any:
    """Before the personas are made (autouse fixtures come first), so their links are in force."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def record(world: World, frozen: Any) -> outbound_data.Rows:
    rows = outbound_data.build(world)
    held = results_data.result(world.ada, world.clinician, category="genetic", name=HELD)
    held.hold_until, held.released_at = NOW + timedelta(days=3), None
    held.save(update_fields=["hold_until", "released_at"])
    results_data.result(world.ada, world.clinician, confidential=True, name=SECRET)
    results_data.summary(world.ada, world.clinician, title=f"Summary {SECRET}", confidential=True)
    care_data.appointment(world.ada, world.clinician, confidential=True, visit_type=f"Visit {SECRET}")
    care_data.plan(world.ada, world.clinician, confidential=True, medication=f"Pill {SECRET}")
    results_data.result(world.ben, world.other_clinician, name="Ben's result CANARYBEN")
    return rows


def _export(world: World, persona: str) -> Any:
    return world.client(persona).get(f"/api/v1/children/{world.ada.pk}/export")


def _by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        found.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return found


def test_a_full_scope_guardian_exports_what_they_may_read(world: World, record: outbound_data.Rows):
    response = _export(world, "guardian")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    text = response.content.decode()
    bundle = json.loads(text)
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "collection"
    for entry in bundle["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    found = _by_type(bundle)
    assert set(found) == {
        "Patient", "Practitioner", "RelatedPerson", "CareTeam", "Appointment", "Task", "MedicationRequest",
        "MedicationAdministration", "Coverage", "Condition", "Observation", "DiagnosticReport", "DocumentReference",
    }  # fmt: skip
    assert found["Patient"][0]["name"][0]["text"] == ADA_NAME
    assert [r["patient"] for r in found["RelatedPerson"]] == [{"reference": f"Patient/{world.ada.pk}"}]
    assert str(record.result.pk) in {r["id"] for r in found["Observation"]}
    assert found["Coverage"] and {c["status"] for c in found["Coverage"]} == {"active", "draft"}
    pdf = next(
        c["attachment"]
        for c in found["DocumentReference"][0]["content"]
        if c["attachment"]["contentType"] == "application/pdf"
    )
    assert base64.b64decode(pdf["data"]) == results_data.PDF
    assert results_data.COMMENT in text
    # The care team's: the MRN, clinicians' addresses; held, confidential and another child's items.
    for hidden in (ADA_MRN, world.clinician.email, "CANARYHELD", "CANARYSECRET", BEN_NAME, "CANARYBEN"):
        assert hidden not in text
    assert all(r["id"] != str(world.ben.pk) for r in found["Patient"])
    row = AuditEvent.objects.filter(action="export").get()
    assert (row.actor_id, row.child_id, row.entity_type, row.outcome) == (
        world.guardian.pk,
        world.ada.pk,
        "Patient",
        "success",
    )


def test_a_limited_scope_guardian_exports_the_schedule_only(world: World, record: outbound_data.Rows, settings):
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    response = _export(world, "co_guardian")
    assert response.status_code == 200
    found = _by_type(response.json())
    assert set(found) == {"Patient", "Practitioner", "RelatedPerson", "CareTeam", "Appointment", "Task"}
    for visit in found["Appointment"]:
        assert visit["serviceType"] == [{"text": settings.PORTAL_NEUTRAL_VISIT_LABEL}]
        assert "specialty" not in visit and "patientInstruction" not in visit
    text = response.content.decode()
    for hidden in ("CANARY", "46635009", "Follow-up", world.department.name, "Clinic B"):
        assert hidden not in text


def test_a_guardian_on_the_care_team_exports_the_familys_view(world: World, record: outbound_data.Rows):
    CareTeamMembership.objects.create(child=world.ada, clinician=world.guardian, role="nurse")
    text = _export(world, "guardian").content.decode()
    assert "CANARYSECRET" not in text and "CANARYHELD" not in text and ADA_MRN not in text


@pytest.mark.parametrize(
    ("persona", "reason"),
    [
        ("other_guardian", "no_view_access"),
        ("revoked_guardian", "no_view_access"),
        ("other_clinician", "no_view_access"),
        ("stranger", "no_view_access"),
        ("admin", "no_view_access"),
        ("clinician", "export_guardian_only"),
    ],
)
def test_others_get_404_no_phi_and_a_denial(world: World, record: outbound_data.Rows, persona: str, reason: str):
    denials = AuditEvent.objects.filter(action="deny", actor_id=world.users[persona].pk)
    before = denials.count()
    response = _export(world, persona)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    for secret in (ADA_NAME, ADA_MRN, "CANARY", str(record.result.pk)):
        assert secret not in response.content.decode()
    assert denials.count() == before + 1
    denial = denials.order_by("-seq").first()
    assert denial is not None
    assert (denial.reason, denial.entity_id) == (reason, str(world.ada.pk))
    assert not AuditEvent.objects.filter(action="export").exists()


def test_exports_are_rate_limited(world: World, settings, frozen: Any):
    settings.PORTAL_EXPORT_RATE = "2/h"
    assert [_export(world, "guardian").status_code for _ in range(3)] == [200, 200, 429]
    assert _export(world, "guardian").json()["code"] == "rate_limited"


def test_export_queries_do_not_grow_with_the_record(world: World, frozen: Any):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert _export(world, "guardian").status_code == 200
        return len(queries.captured_queries)

    outbound_data.build(world)
    count()  # the client's first call also checks its session
    few = count()
    for _ in range(5):
        outbound_data.build(world)
    assert count() == few


# --- Messages, when the hospital serves them as Communication ---------------------------------------


@pytest.fixture
def conversations(world: World, record: outbound_data.Rows, settings: Any) -> outbound_data.Rows:
    settings.PORTAL_FHIR_COMMUNICATION = True
    outbound_data.conversation(world, confidential=True, body=f"Adolescent {SECRET}")
    return record


def test_with_communication_on_a_guardian_exports_the_threads_they_may_read(
    world: World, conversations: outbound_data.Rows
):
    response = _export(world, "guardian")
    assert response.status_code == 200
    bundle = response.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    found = _by_type(bundle)
    for item in found["Communication"]:
        get_fhir_model_class("Communication").model_validate(item)
    assert [item["id"] for item in found["Communication"]] == [str(m.pk) for m in conversations.messages]
    question = found["Communication"][0]
    assert question["payload"][0] == {"contentString": outbound_data.FAMILY_BODY}
    # Attachments are described, their bytes stay behind the messenger's own download.
    assert "data" not in question["payload"][1]["contentAttachment"]
    # The clinician the messages name is among the practitioners (by name only).
    assert str(world.clinician.pk) in {item["id"] for item in found["Practitioner"]}
    text = response.content.decode()
    assert "CANARYSECRET" not in text and world.clinician.email not in text


def test_with_communication_on_a_limited_scope_guardian_gets_the_messages_too(
    world: World, conversations: outbound_data.Rows
):
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope", "updated_at"])
    found = _by_type(_export(world, "co_guardian").json())
    assert set(found) == {
        "Patient",
        "Practitioner",
        "RelatedPerson",
        "CareTeam",
        "Appointment",
        "Task",
        "Communication",
    }
    assert len(found["Communication"]) == len(conversations.messages)


@pytest.mark.parametrize("persona", ["other_guardian", "revoked_guardian", "other_clinician", "stranger", "clinician"])
def test_with_communication_on_others_still_get_404_and_no_message(
    world: World, conversations: outbound_data.Rows, persona: str
):
    response = _export(world, persona)
    assert response.status_code == 404
    text = response.content.decode()
    assert outbound_data.FAMILY_BODY not in text and outbound_data.REPLY_BODY not in text
    assert AuditEvent.objects.filter(action="deny", actor_id=world.users[persona].pk).exists()


def test_with_communication_on_export_queries_do_not_grow_with_the_threads(world: World, settings: Any):
    settings.PORTAL_FHIR_COMMUNICATION = True

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert _export(world, "guardian").status_code == 200
        return len(queries.captured_queries)

    outbound_data.build(world)
    count()
    few = count()
    for _ in range(4):
        outbound_data.conversation(world)
    assert count() == few
