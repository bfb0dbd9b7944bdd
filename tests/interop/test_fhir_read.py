"""Search and read: filters, keyset paging, refusals, and a fixed number of queries per page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from care.models import Appointment, DoseLog
from care.services.results import report_record
from interop import fhir_read
from interop.fhir_read import SearchError
from interop.models import SourceRecord
from interop.outbound import SOURCES
from portal import audit, services
from portal.models import CareTeamMembership, Child, DepartmentMembership, GuardianLink
from portal.vocabulary import Resource
from tests import care_data
from tests.care import results_data
from tests.conftest import World, make_user
from tests.interop import outbound_data

pytestmark = pytest.mark.django_db
BASE = "https://portal.example.org/fhir/R4"
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _children(count: int, start: datetime = START) -> list[Child]:
    made = []
    for n in range(count):
        with time_machine.travel(start + timedelta(minutes=n), tick=False):
            made.append(
                services.child_create(
                    actor=None, name=f"Kid {n} Test", mrn=f"MRN-{uuid.uuid4()}", date_of_birth=date(2019, 1, 1)
                )
            )
    return made


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle["entry"]]


def _next(bundle: dict[str, Any]) -> dict[str, list[str]] | None:
    link = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    if link is None:
        return None
    assert link.startswith(f"{BASE}/Patient?")
    return parse_qs(urlsplit(link).query)


def test_paging_walks_every_row_once_in_order():
    made = _children(25)
    params: dict[str, list[str]] | None = {"_count": ["10"], "_lastUpdated": ["ge2026-11-01"]}
    seen: list[str] = []
    pages = 0
    while params is not None:
        bundle = fhir_read.search("Patient", params, base_url=BASE)
        seen += _ids(bundle)
        pages += 1
        params = _next(bundle)
    assert pages == 3
    assert seen == [str(child.pk) for child in made]
    assert "total" not in bundle


def test_a_row_changed_while_paging_is_not_skipped(world: World):
    first = care_data.appointment(world.ada, world.clinician)
    second = care_data.appointment(world.ada, world.clinician, hours_from_now=72)
    with time_machine.travel(START, tick=False):
        Appointment.objects.filter(pk=first.pk).update(updated_at=START)
        Appointment.objects.filter(pk=second.pk).update(updated_at=START + timedelta(seconds=1))
    page = fhir_read.search("Appointment", {"_count": ["1"]}, base_url=BASE)
    assert _ids(page) == [str(first.pk)]
    # The first one changes after the first page: it comes again, after the second.
    Appointment.objects.filter(pk=first.pk).update(updated_at=START + timedelta(seconds=5))
    cursor = parse_qs(urlsplit(page["link"][1]["url"]).query)
    rest = fhir_read.search("Appointment", cursor | {"_count": ["5"]}, base_url=BASE)
    assert _ids(rest) == [str(second.pk), str(first.pk)]
    assert len(rest["link"]) == 1  # no next page


def test_last_updated_prefixes():
    made = _children(4)  # 12:00, 12:01, 12:02, 12:03 on 1 November
    ids = [str(child.pk) for child in made]

    def found(*values: str) -> list[str]:
        return _ids(fhir_read.search("Patient", {"_lastUpdated": list(values)}, base_url=BASE))

    assert found("gt2026-11-01T12:01:00Z") == ids[2:]
    assert found("ge2026-11-01T12:01:00Z") == ids[1:]
    assert found("lt2026-11-01T12:01:00Z") == ids[:1]
    assert found("le2026-11-01T12:01:00Z") == ids[:2]
    assert found("2026-11-01T12:02:00Z") == ids[2:3]
    assert found("eq2026-11-01T13:02:00+01:00") == ids[2:3]
    assert found("ge2026-11-01T12:01:00Z", "lt2026-11-01T12:03:00Z") == ids[1:3]
    assert found("2026-11-01") == ids
    assert found("2026-11") == ids
    assert found("gt2026-11-01") == []
    assert found("lt2026") == []
    # lastUpdated as given out: gt it is strictly after (microsecond precision).
    last = fhir_read.read("Patient", ids[1])
    assert last is not None
    assert found(f"gt{last['meta']['lastUpdated']}") == ids[2:]


def test_patient_narrows_to_the_child(world: World):
    care_data.appointment(world.ada, world.clinician)
    theirs = care_data.appointment(world.ben, world.other_clinician)
    bundle = fhir_read.search("Appointment", {"patient": [f"Patient/{world.ben.pk}"]}, base_url=BASE)
    assert _ids(bundle) == [str(theirs.pk)]
    both = fhir_read.search("Appointment", {"patient": [f"{world.ada.pk},{world.ben.pk}"]}, base_url=BASE)
    assert len(both["entry"]) == 2
    audit.record(
        actor=None,
        action=audit.Action.READ,
        entity_type=Resource.PATIENT,
        entity_id=world.ben.pk,
        child_id=world.ben.pk,
    )
    events = fhir_read.search("AuditEvent", {"patient": [str(world.ben.pk)]}, base_url=BASE)
    assert events["entry"] and all(
        any(e.get("what") == {"reference": f"Patient/{world.ben.pk}"} for e in entry["resource"]["entity"])
        for entry in events["entry"]
    )


@pytest.mark.parametrize(
    ("resource_type", "params", "code"),
    [
        ("Patient", {"name": ["x"]}, "unsupported_param"),
        ("Patient", {"patient": ["x"]}, "unsupported_param"),
        ("Practitioner", {"patient": [str(uuid.uuid4())]}, "unsupported_param"),
        ("Binary", {}, "unsupported_type"),
        ("Patient", {"_count": ["0"]}, "invalid_count"),
        ("Patient", {"_count": ["1001"]}, "invalid_count"),
        ("Patient", {"_count": ["ten"]}, "invalid_count"),
        ("Patient", {"_count": ["1", "2"]}, "invalid_count"),
        ("Patient", {"_lastUpdated": ["ne2026-01-01"]}, "unsupported_prefix"),
        ("Patient", {"_lastUpdated": ["sa2026-01-01"]}, "unsupported_prefix"),
        ("Patient", {"_lastUpdated": ["yesterday"]}, "invalid_date"),
        ("Patient", {"_lastUpdated": ["2026-02-30"]}, "invalid_date"),
        ("Patient", {"_lastUpdated": ["2026-01-01T10:00:00"]}, "invalid_date"),
        ("Patient", {"_lastUpdated": ["gt2026-01-01,lt2027-01-01"]}, "invalid_param"),
        ("Appointment", {"patient": ["Patient/not-a-uuid"]}, "invalid_reference"),
        ("Appointment", {"patient": ["a", "b"]}, "invalid_param"),
        ("Patient", {"_cursor": ["forged"]}, "invalid_cursor"),
    ],
)
def test_bad_searches_are_refused(resource_type, params, code):
    with pytest.raises(SearchError) as refused:
        fhir_read.search(resource_type, params, base_url=BASE)
    assert refused.value.code == code
    assert refused.value.message
    for values in params.values():
        for value in values:
            if len(value) > 3:
                assert value not in refused.value.message


def test_a_cursor_belongs_to_its_search():
    _children(3)
    first = fhir_read.search("Patient", {"_count": ["1"], "_lastUpdated": ["ge2026"]}, base_url=BASE)
    cursor = _next(first)
    assert cursor is not None
    with pytest.raises(SearchError) as refused:
        fhir_read.search("Patient", {"_cursor": cursor["_cursor"]}, base_url=BASE)
    assert refused.value.code == "invalid_cursor"
    with pytest.raises(SearchError):
        fhir_read.search("Appointment", {"_cursor": cursor["_cursor"], "_lastUpdated": ["ge2026"]}, base_url=BASE)
    # The page size may change between pages.
    assert len(fhir_read.search("Patient", cursor | {"_count": ["5"]}, base_url=BASE)["entry"]) == 2


def test_read_unknown_ids():
    assert fhir_read.read("Patient", str(uuid.uuid4())) is None
    assert fhir_read.read("Patient", "not-a-uuid") is None
    assert fhir_read.read("Binary", str(uuid.uuid4())) is None


def _report(world: World, n: int) -> None:
    report, _ = report_record(actor=None, child=world.ada, source_id=f"urn:reports|{uuid.uuid4()}", name="Panel")
    results_data.result(world.ada, world.clinician, report=report)
    results_data.result(world.ada, world.clinician, report=report)


def _tasks(world: World, n: int) -> None:
    care_data.refill(care_data.plan(world.ada, world.clinician), world.guardian)
    care_data.appointment(
        world.ada, world.clinician, hours_from_now=24 + n, change_request="cancel", change_requested_at=START
    )


def _link(world: World, n: int) -> None:
    guardian = make_user(f"g{uuid.uuid4().hex[:10]}@example.org", "Gus Guardian")
    GuardianLink.objects.create(guardian=guardian, child=world.ada, relationship="father", status="active")


def _practitioner(world: World, n: int) -> None:
    clinician = make_user(f"c{uuid.uuid4().hex[:10]}@example.org", "Dr. Cole")
    DepartmentMembership.objects.create(department=world.department, clinician=clinician, role="nurse")


def _plan_and_dose(world: World, n: int) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    DoseLog.objects.create(
        plan=plan, client_id=uuid.uuid4(), occurred_at=START, status="given", recorded_by=world.guardian
    )


def _condition(world: World, n: int) -> None:
    SourceRecord.objects.create(
        resource_type="Condition",
        resource_id=str(uuid.uuid4()),
        identifier=f"Condition|urn:conditions|{uuid.uuid4()}",
        content_hash="0" * 64,
        target_type="portal.Child",
        targets=[str(world.ada.pk)],
        state={"code": "46635009", "present": True},
        child_id=world.ada.pk,
    )


def _audit(world: World, n: int) -> None:
    audit.record(
        actor=world.guardian, action="read", entity_type=Resource.PATIENT, entity_id=world.ada.pk, child_id=world.ada.pk
    )


def _patient(world: World, n: int) -> None:
    _children(1, START + timedelta(hours=n))


def _care_team(world: World, n: int) -> None:
    child = _children(1, START + timedelta(hours=n))[0]
    CareTeamMembership.objects.create(child=child, clinician=world.clinician, role="nurse")


def _conversation(world: World, n: int) -> None:
    _, messages = outbound_data.conversation(world)
    outbound_data.attach(world, messages[0])


MAKERS: dict[str, Callable[[World, int], Any]] = {
    "Patient": _patient,
    "CareTeam": _care_team,
    "Appointment": lambda world, n: care_data.appointment(world.ada, world.clinician, hours_from_now=24 + n),
    "Observation": lambda world, n: results_data.result(world.ada, world.clinician),
    "DiagnosticReport": _report,
    "DocumentReference": lambda world, n: results_data.summary(world.ada, world.clinician),
    "Task": _tasks,
    "RelatedPerson": _link,
    "Practitioner": _practitioner,
    "MedicationRequest": _plan_and_dose,
    "MedicationAdministration": _plan_and_dose,
    "Coverage": lambda world, n: care_data.coverage(world.ada, world.guardian, status="pending"),
    "Condition": _condition,
    "AuditEvent": _audit,
    "Communication": _conversation,
}


def _make(resource_type: str, world: World, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        MAKERS[resource_type](world, n)


def _queries(resource_type: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        bundle = fhir_read.search(resource_type, {"_count": ["1000"]}, base_url=BASE)
    assert bundle["entry"]
    return len(queries.captured_queries)


@pytest.mark.parametrize("resource_type", sorted(SOURCES))
def test_queries_per_page_do_not_grow_with_the_page(resource_type, world: World, settings):
    settings.PORTAL_FHIR_COMMUNICATION = True
    _make(resource_type, world, 10)
    few = _queries(resource_type)
    _make(resource_type, world, 90, first=10)
    assert _queries(resource_type) == few
