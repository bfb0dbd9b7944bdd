"""GET /fhir/R4/$changes: what the portal created, changed or removed, in ledger order, after a
cursor; a change whose transaction commits late still comes after the cursor, never behind it."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import time_machine
from django.db import connections, transaction

from fixtures import fhir_hospital
from interop.models import BackendClient
from portal import audit, ledger
from portal.models import AuditEvent
from tests.conftest import World
from tests.interop.conftest import ANCHOR, NOW
from tests.interop.smart_keys import access_token, bearer, register, rsa_key
from tests.test_ledger import seal_until


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def engine(db: Any) -> tuple[BackendClient, str]:
    key = rsa_key()
    client = register("engine", key, scopes="system/*.rs system/*.cud")
    return client, access_token("engine", key, "system/*.rs system/*.cud")


def poll(token: str, **params: Any) -> Any:
    response = bearer(token).get("/fhir/R4/$changes", params)
    assert response.status_code == 200, response.content
    return response.json()


def cursor_of(page: dict[str, Any]) -> int:
    link = next(item["url"] for item in page["link"] if item["relation"] == "next")
    return int(link.split("_since=")[1].split("&")[0])


def listed(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["request"]["method"], e["request"]["url"]) for e in page.get("entry", [])]


def add_coverage(world: World, member_id: str) -> str:
    response = world.client("guardian").post(
        f"/api/v1/children/{world.ada.pk}/coverage",
        {"payer": "Acme Health", "member_id": member_id},
        content_type="application/json",
    )
    assert response.status_code in {200, 201}, response.content
    return str(response.json()["id"])


@pytest.mark.django_db
def test_changes_made_in_the_portal_are_listed_after_the_cursor(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    ledger.seal()
    start = cursor_of(poll(token))
    first = add_coverage(world, "MEMBER-0001")
    second = add_coverage(world, "MEMBER-0002")
    ledger.seal()
    page = poll(token, _since=start)
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(page)
    assert page["type"] == "history"
    # The second submission supersedes the first: an update of the first, then the new one.
    assert listed(page) == [("POST", f"Coverage/{first}"), ("PUT", f"Coverage/{first}"), ("POST", f"Coverage/{second}")]
    assert page["entry"][0]["response"]["status"] == "201 Created"
    assert page["entry"][0]["fullUrl"] == f"http://testserver/fhir/R4/Coverage/{first}"
    # Identities only: no value of the record.
    assert "MEMBER-000" not in json.dumps(page) and "Acme" not in json.dumps(page)
    # Paging: one at a time, each page's next link continues where it stopped.
    one = poll(token, _since=start, _count=1)
    assert listed(one) == [("POST", f"Coverage/{first}")]
    two = poll(token, _since=cursor_of(one), _count=1)
    assert listed(two) == [("PUT", f"Coverage/{first}")]
    ledger.seal()
    assert listed(poll(token, _since=cursor_of(page))) == []
    # Every poll is audited with the client as actor.
    assert AuditEvent.objects.filter(actor_id=client.account_id, reason="fhir_changes").count() == 5


@pytest.mark.django_db
def test_the_ehrs_own_writes_are_not_echoed_and_scopes_filter_types(
    frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    ledger.seal()
    start = cursor_of(poll(token))
    patient = fhir_hospital.generate(patients=1, seed=3, anchor=ANCHOR).resources["Patient"][0]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}],
    }
    assert bearer(token).post("/fhir/R4", json.dumps(bundle), content_type="application/fhir+json").status_code == 200
    coverage = add_coverage(world, "MEMBER-0003")
    ledger.seal()
    # Of the patient the engine itself sent, nothing; of the coverage a guardian submitted, its creation.
    assert listed(poll(token, _since=start)) == [("POST", f"Coverage/{coverage}")]
    # A client that may read patients only is told of no coverage.
    key = rsa_key()
    register("patients-only", key, scopes="system/Patient.rs")
    narrow = access_token("patients-only", key, "system/Patient.rs")
    assert listed(poll(narrow, _since=start)) == []


@pytest.mark.django_db
def test_bad_parameters_are_refused(frozen: None, engine: tuple[BackendClient, str]) -> None:
    _, token = engine
    for params in ({"_since": "abc"}, {"_count": "0"}, {"_count": "100000"}, {"_since": "-2"}, {"patient": "x"}):
        response = bearer(token).get("/fhir/R4/$changes", params)
        assert response.status_code == 400, params
        assert response.json()["issue"][0]["code"] == "invalid"


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_change_committed_late_behind_the_cursor_is_not_skipped(needs_postgres: None) -> None:
    """A transaction that took its audit row's seq first but commits last: a cursor over seq would
    have moved past it; the ledger seals it only once it has ended, so it comes after the cursor."""
    key = rsa_key()
    register("engine", key, scopes="system/*.rs")
    token = access_token("engine", key)
    audit.record(actor=None, action=audit.Action.CREATE, entity_type=audit.Resource.TASK, entity_id="early")
    seal_until(AuditEvent.objects.count())
    cursor = cursor_of(poll(token))
    inserted, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                audit.record(actor=None, action=audit.Action.CREATE, entity_type=audit.Resource.TASK, entity_id="late")
                inserted.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert inserted.wait(timeout=10)
        audit.record(actor=None, action=audit.Action.UPDATE, entity_type=audit.Resource.TASK, entity_id="quick")
        late_seq = AuditEvent.objects.get(entity_id="quick").seq
        ledger.seal()
        # The quick row committed, but a transaction older than it is still open: nothing is handed out.
        page = poll(token, _since=cursor)
        assert listed(page) == []
        cursor = cursor_of(page)
    finally:
        release.set()
        writer.join(timeout=30)
    assert AuditEvent.objects.get(entity_id="late").seq < late_seq
    seal_until(AuditEvent.objects.count())
    page = poll(token, _since=cursor)
    assert listed(page) == [("POST", "Task/late"), ("PUT", "Task/quick")]
