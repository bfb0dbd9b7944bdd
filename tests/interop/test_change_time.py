"""``meta.lastUpdated`` is the change time of children, guardian links, medication plans, doses and
coverage: a change made through the services (``save`` with ``update_fields``, ``QuerySet.update``)
moves the row past a ``_lastUpdated=gt`` cursor an engine took before it."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from care.models import Coverage, DoseLog, MedicationPlan, RefillRequest
from care.services import coverage as coverage_services
from care.services import refills
from fixtures import fhir_hospital
from interop import fhir_read
from interop.outbound.common import instant
from portal.access import resolve_access
from portal.models import Child, GuardianLink
from portal.services import links
from tests import care_data
from tests.conftest import World
from tests.interop.conftest import ANCHOR, NOW
from tests.interop.smart_keys import access_token, bearer, register, rsa_key

pytestmark = pytest.mark.django_db
BASE = "https://portal.example.org/fhir/R4"
LATER = NOW + timedelta(hours=1)


@pytest.fixture(autouse=True)
def frozen() -> Any:
    """Before the personas are made (autouse fixtures come first), so their links are in force."""
    with time_machine.travel(NOW, tick=False):
        yield


def _ids(resource_type: str, since: str) -> dict[str, str]:
    """What a ``_lastUpdated=gt`` search finds (every page), by id, with its lastUpdated."""
    params: dict[str, list[str]] = {"_lastUpdated": [f"gt{since}"], "_count": ["1000"]}
    bundle = fhir_read.search(resource_type, params, base_url=BASE)
    assert not [link for link in bundle["link"] if link["relation"] == "next"]
    return {e["resource"]["id"]: e["resource"]["meta"]["lastUpdated"] for e in bundle["entry"]}


def _cursor(resource_type: str) -> str:
    """The newest lastUpdated the engine has seen of the type: where its next poll starts."""
    bundle = fhir_read.search(resource_type, {"_count": ["1000"]}, base_url=BASE)
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in bundle["entry"]]
    assert stamps
    return max(stamps)


def _moves_past_the_cursor(resource_type: str, row_id: Any, change: Callable[[], Any]) -> None:
    since = _cursor(resource_type)
    assert str(row_id) not in _ids(resource_type, since)
    with time_machine.travel(LATER, tick=False):
        change()
    assert _ids(resource_type, since) == {str(row_id): instant(LATER)}
    found = fhir_read.read(resource_type, str(row_id))
    assert found is not None and found["meta"]["lastUpdated"] == instant(LATER)


def test_a_patient_updated_by_the_ehr(world: World) -> None:
    key = rsa_key()
    register("engine", key, scopes="system/*.rs system/*.cud")
    patient = fhir_hospital.generate(patients=1, seed=5, anchor=ANCHOR).resources["Patient"][0]

    def push(resource: dict[str, Any]) -> None:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": resource, "request": {"method": "PUT", "url": f"Patient/{resource['id']}"}}],
        }
        # A token of the moment (they live five minutes).
        token = access_token("engine", key, "system/*.rs system/*.cud")
        response = bearer(token).post("/fhir/R4", json.dumps(bundle), content_type="application/fhir+json")
        assert response.status_code == 200, response.content

    push(patient)
    child = Child.objects.exclude(pk__in=[world.ada.pk, world.ben.pk]).get()
    newer = copy.deepcopy(patient)
    newer["meta"] = {"versionId": "2", "lastUpdated": "2026-11-30T12:00:00Z"}
    newer["birthDate"] = "2019-02-03"
    _moves_past_the_cursor("Patient", child.pk, lambda: push(newer))
    child.refresh_from_db()
    assert child.updated_at == LATER and child.created_at == NOW


def test_a_guardian_link_changed_by_staff(world: World) -> None:
    access = resolve_access(world.admin, world.ada)
    link = world.links["co_guardian"]
    _moves_past_the_cursor(
        "RelatedPerson",
        link.pk,
        lambda: links.link_update(actor=world.admin, access=access, link_id=link.pk, scope="limited"),
    )


def test_a_guardian_link_revoked(world: World) -> None:
    access = resolve_access(world.admin, world.ada)
    link = world.links["co_guardian"]
    _moves_past_the_cursor(
        "RelatedPerson", link.pk, lambda: links.link_revoke(actor=world.admin, access=access, link_id=link.pk)
    )


def test_guardian_links_expired_in_bulk(world: World) -> None:
    """``links_expire`` writes with ``QuerySet.update``: it sets the change time itself."""
    link = world.links["co_guardian"]
    GuardianLink.objects.filter(pk=link.pk).update(valid_until=NOW + timedelta(minutes=30))
    _moves_past_the_cursor("RelatedPerson", link.pk, lambda: links.links_expire())
    link.refresh_from_db()
    assert link.status == GuardianLink.Status.EXPIRED


def test_a_plan_whose_refill_is_approved(world: World) -> None:
    """Approval uses up a refill with ``QuerySet.update`` on the plan: it sets the change time too."""
    plan = care_data.plan(world.ada, world.clinician, refills_allowed=2, refills_remaining=2)
    refill = care_data.refill(plan, world.guardian)
    access = resolve_access(world.clinician, world.ada)
    _moves_past_the_cursor(
        "MedicationRequest",
        plan.pk,
        lambda: refills.refill_transition(
            actor=world.clinician, access=access, refill_id=refill.pk, to=RefillRequest.Status.APPROVED
        ),
    )
    assert MedicationPlan.objects.get(pk=plan.pk).refills_remaining == 1


def test_a_dose_saved_again(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    dose = DoseLog.objects.create(
        plan=plan, client_id=uuid.uuid4(), occurred_at=NOW, status="given", recorded_by=world.guardian
    )

    def correct() -> None:
        dose.note = "Given with breakfast"
        dose.save()

    _moves_past_the_cursor("MedicationAdministration", dose.pk, correct)
    dose.refresh_from_db()
    assert dose.recorded_at == NOW and dose.updated_at == LATER


def test_coverage_verified_by_staff(world: World) -> None:
    pending = care_data.coverage(world.ada, world.guardian, status="pending", member_id="NEW-2")
    access = resolve_access(world.admin, world.ada)
    _moves_past_the_cursor(
        "Coverage",
        pending.pk,
        lambda: coverage_services.coverage_verify(
            actor=world.admin, access=access, coverage_id=pending.pk, accept=False, reason="Unreadable card"
        ),
    )
    assert Coverage.objects.get(pk=pending.pk).status == Coverage.Status.REJECTED


def _touch(rows: list[Any]) -> None:
    with time_machine.travel(LATER, tick=False):
        for row in rows:
            row.save()


MAKERS: dict[str, Callable[[World], Any]] = {
    "Patient": lambda world: Child.objects.get(pk=world.ada.pk),
    "RelatedPerson": lambda world: GuardianLink.objects.create(
        child=world.ada, relationship="other", status="invited", guardian=None
    ),
    "MedicationRequest": lambda world: care_data.plan(world.ada, world.clinician),
    "MedicationAdministration": lambda world: DoseLog.objects.create(
        plan=care_data.plan(world.ada, world.clinician),
        client_id=uuid.uuid4(),
        occurred_at=NOW,
        status="given",
        recorded_by=world.guardian,
    ),
    "Coverage": lambda world: care_data.coverage(world.ada, world.guardian, status="pending"),
}


@pytest.mark.parametrize("resource_type", sorted(MAKERS))
def test_a_since_search_takes_a_fixed_number_of_queries(world: World, resource_type: str) -> None:
    since = instant(NOW)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert _ids(resource_type, since)
        return len(captured)

    _touch([MAKERS[resource_type](world) for _ in range(2)])
    few = queries()
    _touch([MAKERS[resource_type](world) for _ in range(12)])
    assert queries() == few
