"""Call imports: idempotent, all-or-nothing with a per-line report; the signed webhook."""

from __future__ import annotations

import json
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from portal import refusals
from portal.metrics.imports import ImportRejected, calls_import, webhook_signature
from portal.metrics.models import CallRecord, MetricsPatient
from portal.metrics.population import patients_sync
from portal.models import AuditEvent
from tests.canaries import ADA_MRN
from tests.conftest import World

pytestmark = pytest.mark.django_db

HEADER = "call_id,started_at,duration_seconds,direction,queue,reason,caller_phone,mrn,outcome\n"
GOOD = (
    HEADER
    + "c1,2025-03-03T09:00:00+00:00,120,inbound,main,appointment,+1 (555) 010-0001,,answered\n"
    + "c2,2025-03-03T10:00:00Z,60,inbound,pharmacy,refill,555-010-0002,,abandoned\n"
    + "c3,2025-03-04T11:00:00-05:00,300,outbound,nurse,symptoms,,,answered\n"
)


def test_reimporting_the_same_file_adds_nothing() -> None:
    first = calls_import(actor=None, source="avaya", data=GOOD.encode())
    again = calls_import(actor=None, source="avaya", data=GOOD.encode())
    assert (first.added, again.added, again.duplicates) == (3, 0, 3)
    assert CallRecord.objects.count() == 3
    # Phones are stored only as keyed hashes.
    stored = " ".join(CallRecord.objects.values_list("caller_hash", flat=True))
    assert "555" not in stored
    assert CallRecord.objects.get(call_id="c1").topic == "scheduling"


def test_one_bad_line_imports_nothing_and_names_the_line() -> None:
    bad = (
        GOOD
        + "c4,2025-03-05T09:00:00+00:00,abc,inbound,main,refill,,,answered\n"
        + "c5,yesterday,10,sideways,,x,,,answered\n"
    )
    with pytest.raises(ImportRejected) as caught:
        calls_import(actor=None, source="avaya", data=bad.encode())
    errors = [(e.line, e.column) for e in caught.value.line_errors]
    assert (5, "duration_seconds") in errors
    assert (6, "started_at") in errors and (6, "direction") in errors
    assert CallRecord.objects.count() == 0


def test_unknown_columns_and_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ImportRejected) as caught:
        calls_import(actor=None, source="avaya", data=(HEADER.strip() + ",patient_name\n").encode())
    assert caught.value.line_errors[0].column == "patient_name"
    dup = GOOD + "c1,2025-03-05T09:00:00+00:00,10,inbound,,refill,,,answered\n"
    with pytest.raises(ImportRejected) as caught:
        calls_import(actor=None, source="avaya", data=dup.encode())
    assert caught.value.line_errors[0].line == 5
    assert "line 2" in caught.value.line_errors[0].reason


def test_command_reports_bad_lines(tmp_path: Any) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(GOOD + "c9,2025-03-05T09:00:00,10,inbound,,refill,,,answered\n")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_calls", str(path), "--source", "avaya", stderr=err)
    assert "line 5, column started_at" in err.getvalue()
    assert CallRecord.objects.count() == 0
    path.write_text(GOOD)
    out = StringIO()
    call_command("import_calls", str(path), "--source", "avaya", stdout=out)
    assert "3 added" in out.getvalue()
    assert AuditEvent.objects.filter(entity_type="CallImport", action="create").count() == 1


def test_a_call_with_an_mrn_is_attributed_without_storing_the_mrn(world: World) -> None:
    data = HEADER + f"m1,2025-03-03T09:00:00+00:00,120,inbound,main,refill,,{ADA_MRN},answered\n"
    calls_import(actor=None, source="avaya", data=data.encode())
    call = CallRecord.objects.get(call_id="m1")
    assert call.patient is not None and call.patient.child_id == world.ada.pk
    patients_sync()
    for row in CallRecord.objects.values():
        assert ADA_MRN not in json.dumps(row, default=str)
    assert not MetricsPatient.objects.filter(ref__contains="MRN").exists()


def test_admin_upload(world: World) -> None:
    client = Client()
    client.force_login(world.admin)
    url = "/admin/metrics/callimportbatch/upload/"
    bad = GOOD + "c4,2025-03-05T09:00:00+00:00,abc,inbound,main,refill,,,answered\n"
    response = client.post(url, {"source": "avaya", "file": _file(bad)})
    assert response.status_code == 200 and b"duration_seconds" in response.content
    assert CallRecord.objects.count() == 0
    response = client.post(url, {"source": "avaya", "file": _file(GOOD)})
    assert response.status_code == 302
    assert CallRecord.objects.count() == 3
    stranger = Client()
    stranger.force_login(world.guardian)
    assert stranger.post(url, {"source": "avaya", "file": _file(GOOD)}).status_code in (302, 404)


def _file(text: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("calls.csv", text.encode(), content_type="text/csv")


# --- webhook -------------------------------------------------------------------------------------

SECRET = "whsec-test-0123456789"
URL = "/api/v1/metrics/calls"


@pytest.fixture
def secrets(settings: Any) -> None:
    settings.PORTAL_METRICS_WEBHOOK_SECRETS = f"genesys:{SECRET}"


def _body(call_id: str = "w1") -> bytes:
    call = {
        "call_id": call_id,
        "started_at": "2025-03-03T09:00:00+00:00",
        "duration_seconds": 90,
        "direction": "inbound",
        "reason": "billing",
        "caller_phone": "+15550100003",
        "outcome": "answered",
    }
    return json.dumps({"calls": [call]}).encode()


def _post(body: bytes, *, timestamp: int | None = None, secret: str = SECRET, source: str = "genesys") -> Any:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    return Client().post(
        URL,
        data=body,
        content_type="application/json",
        headers={
            "X-Metrics-Source": source,
            "X-Metrics-Timestamp": stamp,
            "X-Metrics-Signature": webhook_signature(secret, stamp, body),
        },
    )


def test_webhook_accepts_a_signed_delivery_and_dedups_by_call_id(secrets: None) -> None:
    response = _post(_body())
    assert response.status_code == 201, response.content
    assert response.json()["added"] == 1
    later = _post(_body(), timestamp=int(time.time()) + 1)  # a new delivery repeating the call
    assert later.status_code == 201 and later.json()["added"] == 0
    assert CallRecord.objects.count() == 1


def _denials() -> int:
    """Refusals in the trail, coalesced ones counted by their ``count`` (portal.refusals)."""
    refusals.flush(everything=True)
    return sum(AuditEvent.objects.filter(action="deny").values_list("count", flat=True))


def test_webhook_refuses_bad_signature_old_timestamp_and_replay(secrets: None) -> None:
    denied = _denials()
    wrong = _post(_body(), secret="not-the-secret")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_signature")
    unknown = _post(_body(), source="nobody")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "invalid_signature")
    old = _post(_body(), timestamp=int(time.time()) - 3600)
    assert (old.status_code, old.json()["code"]) == (401, "stale_timestamp")
    assert CallRecord.objects.count() == 0
    stamp = str(int(time.time()))
    body = _body("w2")
    headers = {
        "X-Metrics-Source": "genesys",
        "X-Metrics-Timestamp": stamp,
        "X-Metrics-Signature": webhook_signature(SECRET, stamp, body),
    }
    assert Client().post(URL, data=body, content_type="application/json", headers=headers).status_code == 201
    replay = Client().post(URL, data=body, content_type="application/json", headers=headers)
    assert (replay.status_code, replay.json()["code"]) == (409, "replayed")
    assert CallRecord.objects.count() == 1
    assert _denials() == denied + 4


def test_webhook_rejects_unknown_fields_and_bad_values(secrets: None) -> None:
    extra = json.loads(_body())
    extra["calls"][0]["patient_name"] = "x"
    response = _post(json.dumps(extra).encode())
    assert (response.status_code, response.json()["code"]) == (422, "invalid_input")
    bad = json.loads(_body())
    bad["calls"][0]["direction"] = "sideways"
    response = _post(json.dumps(bad).encode())
    assert (response.status_code, response.json()["code"]) == (422, "import_rejected")
    assert response.json()["errors"] == [{"line": 1, "column": "direction", "reason": "must be inbound or outbound"}]
    assert CallRecord.objects.count() == 0
