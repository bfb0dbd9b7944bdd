"""Secure messages as FHIR Communication on /fhir/R4, only when the hospital turns it on
(``PORTAL_FHIR_COMMUNICATION``): off, the type is unknown to the API, its metadata and its outbox."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.communication import Communication

from interop import fhir_read
from interop.fhir_read import SearchError
from interop.models import BackendClient
from portal import ledger
from portal.models import AuditEvent
from tests.conftest import ADA_NAME, World
from tests.interop import outbound_data
from tests.interop.conftest import NOW
from tests.interop.smart_keys import access_token, bearer, register, rsa_key
from tests.messaging import data as messaging_data

pytestmark = pytest.mark.django_db
SECRET = "Confidential thread CANARYSECRET"


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def engine(frozen: None) -> tuple[BackendClient, str]:
    key = rsa_key()
    client = register("engine", key, scopes="system/*.rs system/*.cud")
    return client, access_token("engine", key, "system/*.rs system/*.cud")


@pytest.fixture
def enabled(settings: Any) -> None:
    settings.PORTAL_FHIR_COMMUNICATION = True


@pytest.fixture
def talk(frozen: None, world: World) -> outbound_data.Rows:
    rows = outbound_data.build(world)
    outbound_data.conversation(world, confidential=True, body=SECRET)
    return rows


def _resources(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in page["entry"]]


def _metadata_types(world: World) -> set[str]:
    body = world.client("stranger").get("/fhir/R4/metadata").json()
    return {item["type"] for item in body["rest"][0]["resource"]}


# --- Off (the default) ------------------------------------------------------------------------------


def test_off_the_type_is_not_served_nor_listed(
    world: World, talk: outbound_data.Rows, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    assert "Communication" not in _metadata_types(world)
    for path in ("/fhir/R4/Communication", f"/fhir/R4/Communication/{talk.messages[0].pk}"):
        response = bearer(token).get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-supported"
        assert outbound_data.FAMILY_BODY not in response.content.decode()
    assert fhir_read.read("Communication", str(talk.messages[0].pk)) is None
    with pytest.raises(SearchError) as refused:
        fhir_read.search("Communication", {}, base_url="https://portal.example.org/fhir/R4")
    assert refused.value.code == "unsupported_type"
    assert not AuditEvent.objects.filter(actor_id=client.account_id, entity_type="Communication").exists()


def test_off_the_outbox_lists_no_message(frozen: None, world: World, engine: tuple[BackendClient, str]) -> None:
    _, token = engine
    ledger.seal()
    start = bearer(token).get("/fhir/R4/$changes").json()
    since = next(link["url"] for link in start["link"] if link["relation"] == "next").split("_since=")[1].split("&")[0]
    assert messaging_data.start_thread(world).status_code == 201
    ledger.seal()
    page = bearer(token).get("/fhir/R4/$changes", {"_since": since}).json()
    assert not [e for e in page.get("entry", []) if e["request"]["url"].startswith("Communication/")]


# --- On -----------------------------------------------------------------------------------------------


def test_on_metadata_lists_it_with_its_search_parameters(enabled: None, world: World) -> None:
    body = world.client("stranger").get("/fhir/R4/metadata").json()
    entry = next(item for item in body["rest"][0]["resource"] if item["type"] == "Communication")
    assert {p["name"] for p in entry["searchParam"]} == {"_lastUpdated", "patient", "_count", "_cursor"}
    assert [i["code"] for i in entry["interaction"]] == ["read", "search-type"]


def test_search_renders_each_message_and_audits_each_read(
    enabled: None, world: World, talk: outbound_data.Rows, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    response = bearer(token).get("/fhir/R4/Communication", {"patient": f"Patient/{world.ada.pk}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    page = response.json()
    Bundle.model_validate(page)
    found = {item["id"]: item for item in _resources(page)}
    for item in found.values():
        Communication.model_validate(item)
    family, answer, automatic = (found[str(m.pk)] for m in talk.messages)
    ada, guardian_link = f"Patient/{world.ada.pk}", f"RelatedPerson/{world.links['guardian'].pk}"
    clinician = f"Practitioner/{world.clinician.pk}"
    # The guardian's question, from their link, to the clinician holding the thread, with its file.
    assert family["subject"] == {"reference": ada}
    assert family["sender"] == {"reference": guardian_link}
    assert family["recipient"] == [{"reference": clinician}]
    assert family["payload"][0] == {"contentString": outbound_data.FAMILY_BODY}
    assert family["payload"][1]["contentAttachment"] == {
        "contentType": "application/pdf",
        "size": len(outbound_data.ATTACHMENT_BYTES),
        "title": "rash-notes.pdf",
        "creation": family["sent"],
    }
    assert (family["status"], family["priority"], family["topic"]) == ("completed", "urgent", {"text": "Rash question"})
    assert "partOf" not in family and "inResponseTo" not in family
    assert family["meta"]["lastUpdated"] == family["sent"] == "2026-12-01T15:00:00.000000Z"
    # The answer: from the clinician to every active guardian of the child, in the thread.
    assert answer["sender"] == {"reference": clinician}
    active = {f"RelatedPerson/{world.links[p].pk}" for p in ("guardian", "co_guardian")}
    assert {r["reference"] for r in answer["recipient"]} == active
    assert answer["partOf"] == answer["inResponseTo"] == [{"reference": f"Communication/{family['id']}"}]
    assert automatic["sender"] == {"display": "Automatic reply"}
    assert automatic["inResponseTo"] == [{"reference": f"Communication/{answer['id']}"}]
    # The confidential thread is the hospital's too: labelled restricted, addressed to no guardian.
    secret = next(item for item in found.values() if item["payload"][0].get("contentString") == SECRET)
    assert secret["meta"]["security"][0]["code"] == "R"
    secret_answer = next(
        item for item in found.values() if item.get("inResponseTo") == [{"reference": f"Communication/{secret['id']}"}]
    )
    assert "recipient" not in secret_answer
    # Every resource found is audited with its child; the audit holds no message text.
    rows = AuditEvent.objects.filter(actor_id=client.account_id, reason="fhir_search", entity_type="Communication")
    assert set(rows.values_list("entity_id", flat=True)) == set(found)
    assert set(rows.values_list("child_id", flat=True)) == {world.ada.pk}
    trail = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert outbound_data.FAMILY_BODY not in trail and ADA_NAME not in trail


def test_a_read_carries_the_attachments_bytes(
    enabled: None, world: World, talk: outbound_data.Rows, engine: tuple[BackendClient, str]
) -> None:
    client, token = engine
    message = talk.messages[0]
    response = bearer(token).get(f"/fhir/R4/Communication/{message.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    Communication.model_validate(body)
    attachment = body["payload"][1]["contentAttachment"]
    assert base64.b64decode(attachment["data"]) == outbound_data.ATTACHMENT_BYTES
    row = AuditEvent.objects.get(actor_id=client.account_id, reason="fhir_read")
    assert (row.entity_type, row.entity_id, row.child_id) == ("Communication", str(message.pk), world.ada.pk)
    missing = bearer(token).get(f"/fhir/R4/Communication/{talk.thread.pk if talk.thread else ''}")
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"


def test_last_updated_patient_and_keyset_paging(
    enabled: None, world: World, talk: outbound_data.Rows, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    first = bearer(token).get("/fhir/R4/Communication", {"_count": "2"}).json()
    page, seen, pages = first, [item["id"] for item in _resources(first)], 1
    while following := next((link["url"] for link in page["link"] if link["relation"] == "next"), None):
        parts = urlsplit(following)
        assert "_cursor=" in parts.query
        page = bearer(token).get(f"{parts.path}?{parts.query}").json()
        seen += [item["id"] for item in _resources(page)]
        pages += 1
    # Two threads of three messages, two a page, each once, in (lastUpdated, id) order.
    assert len(seen) == len(set(seen)) == 6 and pages == 3
    stamp = _resources(first)[0]["meta"]["lastUpdated"]
    later = bearer(token).get("/fhir/R4/Communication", {"_lastUpdated": f"gt{stamp}"}).json()
    assert str(talk.messages[0].pk) not in {item["id"] for item in _resources(later)}
    assert len(_resources(later)) == 4  # the second and third message of each thread
    assert bearer(token).get("/fhir/R4/Communication", {"patient": str(world.ben.pk)}).json().get("entry") == []


def test_the_scope_is_needed_and_its_lack_is_audited(
    enabled: None, world: World, talk: outbound_data.Rows, frozen: None
) -> None:
    key = rsa_key()
    client = register("patients-only", key, scopes="system/Patient.rs")
    token = access_token("patients-only", key, "system/Patient.rs")
    refused = bearer(token).get("/fhir/R4/Communication")
    assert refused.status_code == 403 and "system/Communication.s" in refused.json()["issue"][0]["diagnostics"]
    assert outbound_data.FAMILY_BODY not in refused.content.decode()
    assert AuditEvent.objects.filter(
        actor_id=client.account_id, action="deny", entity_type="Communication", reason="fhir_scope"
    ).exists()
    reader = rsa_key()
    register("messages", reader, scopes="system/Communication.rs")
    allowed = access_token("messages", reader, "system/Communication.rs")
    assert bearer(allowed).get(f"/fhir/R4/Communication/{talk.messages[1].pk}").status_code == 200
    assert bearer(allowed).get(f"/fhir/R4/Patient/{world.ada.pk}").status_code == 403
    assert bearer("not-a-token").get("/fhir/R4/Communication").status_code == 401


def test_the_outbox_lists_messages_sent_in_the_portal(
    enabled: None, frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    ledger.seal()
    start = bearer(token).get("/fhir/R4/$changes").json()
    since = next(link["url"] for link in start["link"] if link["relation"] == "next").split("_since=")[1].split("&")[0]
    sent = messaging_data.start_thread(world, body="A question CANARYBODY")
    assert sent.status_code == 201, sent.content
    ledger.seal()
    page = bearer(token).get("/fhir/R4/$changes", {"_since": since})
    urls = [e["request"]["url"] for e in page.json()["entry"] if e["request"]["url"].startswith("Communication/")]
    assert len(urls) == 1
    assert "CANARYBODY" not in page.content.decode()
    found = bearer(token).get(f"/fhir/R4/{urls[0]}").json()
    assert found["payload"][0]["contentString"] == "A question CANARYBODY"


def test_a_page_takes_a_fixed_number_of_queries(
    enabled: None, frozen: None, world: World, engine: tuple[BackendClient, str]
) -> None:
    _, token = engine
    http = bearer(token)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = http.get("/fhir/R4/Communication", {"_count": "1000"})
        assert response.status_code == 200
        return len(captured)

    for _ in range(2):
        _, made = outbound_data.conversation(world)
        outbound_data.attach(world, made[0])
    few = queries()
    for _ in range(10):
        _, made = outbound_data.conversation(world)
        outbound_data.attach(world, made[0])
    assert queries() == few
