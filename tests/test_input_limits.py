"""Bad and oversized input gets a clean 4xx with a code and a message, never a 500 and never a row:
bodies over the limit (413), bodies that are not JSON (415), oversized URLs (414) and headers (431),
control characters in any text field (422, found by walking the OpenAPI document), dates outside each
field's window (422), and unknown time zones (a system check for settings; a stored one degrades only
its own item)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from care.models import Appointment, Coverage, DoseLog, MedicationPlan
from messaging.models import Message, Thread
from portal.apiroot import api
from portal.models import Child
from tests import care_data
from tests.conftest import World, app_client

# Later than the moment the personas' links and care teams start (they start at the real now), so the
# tests can travel there; the windows are checked against it.
NOW = (datetime.now(UTC) + timedelta(days=30)).replace(hour=15, minute=0, second=0, microsecond=0)


YEARS = timedelta(days=366)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT10:00:00Z")


def post(client: Client, url: str, body: Any, content_type: str = "application/json") -> Any:
    return client.post(url, data=json.dumps(body), content_type=content_type)


def coverage_url(world: World) -> str:
    return f"/api/v1/children/{world.ada.pk}/coverage"


# -- size -------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_with_the_limit_in_the_message(world: World, settings) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {"payer": "P", "member_id": "M", "plan_name": "x" * (limit + 10)}
    response = post(world.client("guardian"), coverage_url(world), body)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert str(limit) in response.json()["message"]
    assert not Coverage.objects.exists()


def test_the_ninja_handler_answers_request_data_too_big_with_413(rf, world: World, settings) -> None:
    from django.core.exceptions import RequestDataTooBig

    from portal.apiroot import _too_big

    request = rf.post(coverage_url(world), data=b"{}", content_type="application/json")
    response = _too_big(request, RequestDataTooBig("too big"))
    assert response.status_code == 413
    assert json.loads(response.content)["code"] == "payload_too_large"
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in json.loads(response.content)["message"]


def test_an_attachment_may_be_larger_than_a_json_body(world: World, settings) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.messaging import data

    blob = data.PDF.replace(b"trailer", b"%" + b"a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1000) + b"\ntrailer")
    response = world.client("guardian").post(
        f"/api/v1/children/{world.ada.pk}/attachments",
        {"file": SimpleUploadedFile("report.pdf", blob, content_type="application/pdf")},
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_json_endpoint_refuses_other_content_types_with_415(world: World, content_type: str) -> None:
    body = json.dumps({"payer": "P", "member_id": "M"})
    if content_type == "multipart/form-data":
        content_type += "; boundary=xyz"
    response = world.client("guardian").generic("POST", coverage_url(world), body, content_type=content_type)
    assert response.status_code == 415, response.content
    assert response.json()["code"] == "unsupported_media_type"
    assert not Coverage.objects.exists()


def test_json_with_a_charset_or_a_json_suffix_is_accepted(world: World) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = world.client("guardian").generic(
            "POST", coverage_url(world), json.dumps({"payer": "P", "member_id": "M"}), content_type=content_type
        )
        assert response.status_code == 201, (content_type, response.content)


def test_an_oversized_url_is_414_and_oversized_headers_431(world: World, settings) -> None:
    client = world.client("guardian")
    long_query = client.get("/api/v1/me?x=" + "a" * 100_000)
    assert long_query.status_code == 414 and long_query.json()["code"] == "uri_too_long"
    assert str(settings.PORTAL_MAX_URL_BYTES) in long_query.json()["message"]
    big_header = client.get("/api/v1/me", HTTP_X_PADDING="a" * 100_000)
    assert big_header.status_code == 431 and big_header.json()["code"] == "request_header_fields_too_large"
    assert client.get("/api/v1/me", HTTP_X_PADDING="a" * 1000).status_code == 200


# -- control characters ----------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _variants(schema: dict[str, Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, document)
    return [_resolve(part, document) for part in schema.get("anyOf", [schema])]


def _bad_value(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A value of this property's type that carries a NUL, or None when it holds no free text."""
    variants = _variants(schema, document)
    if any(variant.get("type") in {"number", "integer"} for variant in variants):
        return None  # a decimal also accepts a numeric string: not free text
    for variant in variants:
        if variant.get("type") == "string" and "enum" not in variant and "const" not in variant:
            if variant.get("format") in {"uuid", "date", "date-time", "time"}:
                continue
            return "Clinic\x00B"
        if variant.get("type") == "array":
            inner = _bad_value(variant.get("items", {}), document)
            if inner is not None:
                return [inner]
        if variant.get("type") == "object" and variant.get("additionalProperties"):
            return {"bad\x00key": "1"}
    return None


def _text_fields() -> list[tuple[str, str, str, Any]]:
    """(method, path, field, bad value) for every free-text field of every JSON request body."""
    document = api.get_openapi_schema()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            body = _resolve(content["application/json"]["schema"], document)
            for field, schema in body.get("properties", {}).items():
                bad = _bad_value(schema, document)
                if bad is not None:
                    found.append((method.upper(), path, field, bad))
    return found


TEXT_FIELDS = _text_fields()


def test_the_walk_finds_the_fields_that_once_stored_nul() -> None:
    walked = {(path.rsplit("/", 1)[-1], field) for _, path, field, _ in TEXT_FIELDS}
    for field in ("payer", "plan_name", "group_number", "member_id", "subscriber_name"):
        assert ("coverage", field) in walked
    for field in ("location", "visit_type", "preparation"):
        assert ("appointments", field) in walked
    for field in ("strength", "form", "dose_unit", "route", "pharmacy", "medication", "instructions"):
        assert ("medications", field) in walked
    assert ("refills", "pharmacy") in walked and ("threads", "body") in walked
    assert len(TEXT_FIELDS) >= 35


@pytest.mark.parametrize(("method", "path", "field", "bad"), TEXT_FIELDS, ids=lambda v: str(v)[:60])
def test_every_text_field_refuses_control_characters(world: World, method, path, field, bad) -> None:
    url = path
    names = ("child_id", "plan_id", "thread_id", "appointment_id", "coverage_id", "refill_id", "link_id", "result_id")
    for name in names:
        url = url.replace("{" + name + "}", str(world.ada.pk if name == "child_id" else uuid.uuid4()))
    url = url.replace("{group_id}", str(uuid.uuid4())).replace("{post_id}", str(uuid.uuid4()))
    assert "{" not in url, url
    client = world.client("admin" if "/groups" in url and method == "POST" and url.endswith("/groups") else "guardian")
    response = client.generic(method, url, json.dumps({field: bad}), content_type="application/json")
    assert response.status_code == 422, (url, field, response.status_code)
    errors = response.json()["errors"]
    assert any(e["loc"][-1] == field and "control characters" in e["msg"] for e in errors), (url, field, errors)


def test_nul_in_plaintext_and_encrypted_fields_stores_nothing(world: World) -> None:
    care_data.plan(world.ada, world.clinician)
    for body in (
        {"payer": "Acme\x00", "member_id": "M"},
        {"payer": "Acme", "member_id": "M\x00"},
        {"payer": "Acme", "member_id": "M", "subscriber_name": "Zoe\x1b[31m"},
        {"payer": "Acme", "member_id": "M", "group_number": "G\x7f"},
        {"payer": "Acme", "member_id": "M", "plan_name": "lone \ud800 surrogate"},
    ):
        response = world.client("guardian").post(
            coverage_url(world), data=json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 422, body
    assert not Coverage.objects.exists()
    thread = world.client("guardian").post(
        f"/api/v1/children/{world.ada.pk}/threads",
        data=json.dumps({"subject": "Hi", "topic": "other", "body": "a\x00b", "client_id": str(uuid.uuid4())}),
        content_type="application/json",
    )
    assert thread.status_code == 422 and not Message.objects.exists() and not Thread.objects.exists()
    # Line breaks and tabs are ordinary text.
    fine = post(world.client("guardian"), coverage_url(world), {"payer": "Acme\tHealth", "member_id": "M\n1"})
    assert fine.status_code == 201


def test_query_text_refuses_control_characters(world: World) -> None:
    response = world.client("admin").get("/api/v1/metrics/report?department=ab%00c")
    assert response.status_code == 422


# -- dates -------------------------------------------------------------------------------------------


def _appointment_body(world: World, start: str) -> dict[str, Any]:
    return {
        "clinician_id": str(world.clinician.pk),
        "start": start,
        "end": start.replace("T10", "T11"),
        "location": "Clinic",
        "visit_type": "Follow-up",
    }


def _plan_body(start: str) -> dict[str, Any]:
    return {
        "medication": "Amoxicillin",
        "dose_quantity": "5",
        "dose_unit": "mL",
        "schedule_kind": "fixed_times",
        "times_of_day": ["08:00"],
        "start": start,
    }


@pytest.mark.parametrize("year", ["0001", "1899", "9999"])
def test_absurd_dates_are_refused_for_doses_coverage_appointments_and_plans(world: World, year: str) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    with time_machine.travel(NOW, tick=False):
        ada = f"/api/v1/children/{world.ada.pk}"
        answers = [
            post(world.client("clinician"), f"{ada}/appointments", _appointment_body(world, f"{year}-06-01T10:00:00Z")),
            post(world.client("clinician"), f"{ada}/medications", _plan_body(f"{year}-06-01T10:00:00Z")),
            post(
                world.client("guardian"),
                f"{ada}/medications/{plan.pk}/doses",
                {"client_id": str(uuid.uuid4()), "status": "given", "occurred_at": f"{year}-06-01T10:00:00Z"},
            ),
            post(
                world.client("guardian"),
                f"{ada}/coverage",
                {"payer": "P", "member_id": "M", "period_start": f"{year}-01-01"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.content
        assert answer.json()["code"] == "invalid_input"
    assert not Appointment.objects.exists() and not DoseLog.objects.exists() and not Coverage.objects.exists()
    assert MedicationPlan.objects.count() == 1


def test_each_date_field_has_its_own_window(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician, start=NOW - timedelta(days=30))
    ada = f"/api/v1/children/{world.ada.pk}"
    with time_machine.travel(NOW, tick=False):
        inside = post(world.client("clinician"), f"{ada}/appointments", _appointment_body(world, iso(NOW + 4 * YEARS)))
        outside = post(world.client("clinician"), f"{ada}/appointments", _appointment_body(world, iso(NOW + 6 * YEARS)))
        assert (inside.status_code, outside.status_code) == (201, 422)
        assert "window" in outside.json()["errors"][0]["msg"]
        dose = {"client_id": str(uuid.uuid4()), "status": "given"}
        late = post(
            world.client("guardian"),
            f"{ada}/medications/{plan.pk}/doses",
            {**dose, "occurred_at": iso(NOW + timedelta(days=2))},
        )
        old = post(
            world.client("guardian"),
            f"{ada}/medications/{plan.pk}/doses",
            {**dose, "occurred_at": iso(NOW - timedelta(days=100))},
        )
        assert (late.status_code, old.status_code) == (422, 422)
        far_start = (NOW + 3 * YEARS).date().isoformat()
        far_body = {"payer": "P", "member_id": "M", "period_start": far_start}
        far = post(world.client("guardian"), f"{ada}/coverage", far_body)
        assert far.status_code == 422
    with time_machine.travel(NOW + 2 * YEARS, tick=False):
        # The same appointment date is inside the window once the clock has moved on.
        again = post(app_client(world.clinician), f"{ada}/appointments", _appointment_body(world, iso(NOW + 6 * YEARS)))
        assert again.status_code == 201, again.content


# -- time zones ---------------------------------------------------------------------------------------


def test_an_unknown_business_time_zone_fails_the_system_check() -> None:
    with override_settings(PORTAL_HOSPITAL_TIME_ZONE="Mars/Olympus"), pytest.raises(SystemCheckError) as failed:
        call_command("check")
    assert "portal.E002" in str(failed.value)
    with override_settings(PORTAL_BUSINESS_HOURS={"time_zone": "Nowhere/Atlantis"}), pytest.raises(SystemCheckError):
        call_command("check")
    call_command("check")


def test_model_inputs_validate_time_zones(world: World) -> None:
    from django.core.exceptions import ValidationError

    world.ada.time_zone = "Mars/Olympus"
    with pytest.raises(ValidationError):
        world.ada.full_clean()


def test_a_stored_unknown_time_zone_degrades_only_its_own_item(world: World) -> None:
    """A child and a guardian with a zone the tz database does not know (written before validation
    existed, or by hand) still get their today view, medicines, threads and calendar feed."""
    care_data.plan(world.ada, world.clinician, start=NOW - timedelta(days=3))
    care_data.appointment(world.ada, world.clinician)
    Child.objects.filter(pk=world.ada.pk).update(time_zone="Mars/Olympus")
    type(world.guardian).objects.filter(pk=world.guardian.pk).update(time_zone="Mars/Olympus")
    with time_machine.travel(NOW, tick=True):
        client = app_client(world.guardian)
        today = client.get("/api/v1/me/today")
        assert today.status_code == 200 and len(today.json()["children"]) == 1
        medications = client.get(f"/api/v1/children/{world.ada.pk}/medications")
        assert medications.status_code == 200 and medications.json()["items"][0]["next_due"]
        thread = post(
            client,
            f"/api/v1/children/{world.ada.pk}/threads",
            {"subject": "Hi", "topic": "other", "body": "Question", "client_id": str(uuid.uuid4())},
        )
        assert thread.status_code == 201, thread.content
        issued = post(client, "/api/v1/me/calendar-feed", {"include_doses": True})
        feed = Client().get(issued.json()["url"].split("testserver")[1])
        assert feed.status_code == 200
