"""Who reaches the metrics, what they show (no PHI, small cells hidden), the dashboard's charts."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from portal import audit
from portal.metrics import derive, estimate, reports
from portal.metrics.imports import calls_import
from portal.metrics.models import CallRecord, DailyTopicRollup, MetricsPatient, SelfServiceEvent
from portal.metrics.population import patients_sync
from portal.metrics.refresh import metrics_refresh
from portal.metrics.rollups import rollups_refresh
from portal.models import AuditEvent
from portal.vocabulary import Resource
from tests.conftest import PERSONAS, World
from tests.matrix import phi_strings
from tests.metrics.conftest import seed_and_roll

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/api/v1/metrics/report", "/api/v1/metrics/comparison", "/api/v1/metrics/export?period=week"]
SVG = "{http://www.w3.org/2000/svg}"


def _seeded_world(world: World) -> None:
    seed_and_roll(patients=1500, months=12, effect=0.5, seed=3)
    # Real children are part of the same population (synced, hashed, no PHI).
    patients_sync()


def test_only_view_metrics_holders_reach_the_endpoints(world: World) -> None:
    _seeded_world(world)
    for url in ENDPOINTS:
        for persona in PERSONAS:
            denied = AuditEvent.objects.filter(action="deny").count()
            response = world.client(persona).get(url)
            text = response.content.decode()
            assert not [secret for secret in phi_strings(world) if secret in text], (persona, url)
            if persona == "admin":
                assert response.status_code == 200, (url, text)
                continue
            assert response.status_code == 404, (persona, url)
            assert json.loads(text)["code"] == "not_found"
            assert AuditEvent.objects.filter(action="deny").count() == denied + 1
    assert Client().get(ENDPOINTS[0]).status_code == 401


def test_report_content_and_export_audit(world: World) -> None:
    _seeded_world(world)
    client = world.client("admin")
    body = client.get("/api/v1/metrics/report?period=month&group_by=topic").json()
    rows = body["rows"]
    assert {row["topic"] for row in rows} >= {"scheduling", "refill"}
    assert any(row["callbacks_expected"] for row in rows)
    monthly = client.get("/api/v1/metrics/report?period=month").json()["rows"]
    assert any(row["active_guardians"] for row in monthly)
    assert client.get("/api/v1/metrics/report?period=year").status_code == 422
    assert client.get("/api/v1/metrics/report?colour=red").status_code == 422
    exports = AuditEvent.objects.filter(action=audit.Action.EXPORT, entity_type="MetricsReport").count()
    response = client.get("/api/v1/metrics/export?period=month&group_by=department")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines()[0].startswith("period_start,topic,department,calls")
    assert AuditEvent.objects.filter(action=audit.Action.EXPORT, entity_type="MetricsReport").count() == exports + 1


def test_small_cells_are_suppressed_in_exports(world: World) -> None:
    patients = [MetricsPatient.objects.create(ref=f"s:x:{i}", source="synthetic", department="tiny") for i in range(3)]
    day = date(2025, 3, 3)
    for index, patient in enumerate(patients):
        CallRecord.objects.create(
            source="t",
            call_id=str(index),
            started_at=datetime(2025, 3, 3, 9, tzinfo=UTC),
            day=day,
            duration_seconds=10,
            direction="inbound",
            topic="refill",
            patient=patient,
            outcome="answered",
        )
    rollups_refresh(days=[day])
    assert DailyTopicRollup.objects.get(day=day).calls == 3
    response = world.client("admin").get("/api/v1/metrics/export?period=day&start=2025-03-03&end=2025-03-03")
    lines = response.content.decode().splitlines()
    header, row = lines[0].split(","), dict(zip(lines[0].split(","), lines[1].split(","), strict=False))
    assert "calls" in header and row["calls"] == "" and "calls" in row["suppressed"]
    rows = reports.report(period="day", window=reports.Window(day, day))
    assert rows[0]["calls"] is None and rows[0]["patients"] is None


def _dashboard_client(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def test_dashboard_is_for_view_metrics_holders_only(world: World) -> None:
    _seeded_world(world)
    for persona in PERSONAS:
        if persona == "admin":
            continue
        denied = AuditEvent.objects.filter(action="deny").count()
        assert _dashboard_client(world, persona).get("/metrics/dashboard").status_code == 404
        assert AuditEvent.objects.filter(action="deny").count() == denied + 1
    signed_out = Client().get("/metrics/dashboard")
    assert signed_out.status_code == 302 and signed_out["Location"] == "/sign-in/"
    assert "no-store" in signed_out["Cache-Control"]


def test_dashboard_renders_its_charts_as_svg(world: World) -> None:
    _seeded_world(world)
    estimate.estimate_refresh()
    response = _dashboard_client(world, "admin").get("/metrics/dashboard")
    assert response.status_code == 200
    html = response.content.decode()
    assert not [secret for secret in phi_strings(world) if secret in html]
    charts = []
    position = 0
    while (start := html.find("<svg", position)) != -1:
        end = html.index("</svg>", start) + len("</svg>")
        charts.append(ET.fromstring(html[start:end]))
        position = end
    ids = [
        {
            re.sub(r"-\d+$", "", g.get("id") or "")
            for g in chart.iter(f"{SVG}g")
            if g.get("id", "").startswith("series-")
        }
        for chart in charts
    ]
    assert {"series-scheduling", "series-refill"} <= ids[0]
    assert {"series-portal-actions"} <= ids[1]
    assert {"series-enrolled", "series-not-enrolled"} <= ids[2]
    assert {"series-effect", "series-interval"} <= ids[3]  # the event study with its band
    assert {"series-baseline", "series-period"} <= ids[4]  # match rates
    # Lines and bars were drawn, not just legends.
    assert any(True for _ in charts[0].iter(f"{SVG}path"))
    assert "Staggered-adoption estimate" in html or "Not credible" in html
    assert "Pre-trend test" in html and "never_enrolled" in html


def test_self_service_events_are_derived_from_the_audit_trail_incrementally(world: World, settings: Any) -> None:
    world.guardian.phone = "+1 555 010 0001"
    world.guardian.save(update_fields=["phone"])
    # A guardian looks at the schedule, then requests a refill; a clinician's read is not self-service.
    audit.reads(world.guardian, Resource.SCHEDULE, [world.ada.pk])
    audit.record(actor=world.guardian, action="create", entity_type=Resource.TASK, child_id=world.ada.pk)
    audit.reads(world.clinician, Resource.MEDICATION_REQUEST, [world.ada.pk])
    audit.reads(world.other_guardian, Resource.SCHEDULE, [world.ada.pk])  # not Ada's guardian
    metrics_refresh()
    events = list(SelfServiceEvent.objects.order_by("audit_seq").values_list("topic", "kind"))
    assert events == [("scheduling", "viewed_schedule"), ("refill", "requested_refill")]
    # Incremental: a second run reads only new rows and adds nothing twice.
    assert metrics_refresh().audit_rows == 0
    assert SelfServiceEvent.objects.count() == 2
    # The family calls about the refill two days later: a call-back, matched by the phone hash.
    now = datetime.now(tz=UTC)
    data = (
        "call_id,started_at,duration_seconds,direction,queue,reason,caller_phone,mrn,outcome\n"
        f"k1,{(now + timedelta(days=2)).isoformat()},60,inbound,pharmacy,refill,(555) 010-0001,,answered\n"
    )
    calls_import(actor=None, source="avaya", data=data.encode())
    metrics_refresh()
    cell = DailyTopicRollup.objects.get(topic="refill", calls=1)
    assert cell.callbacks == 1 and cell.cohort == 1  # Ada's family is enrolled
    patient = MetricsPatient.objects.get(child_id=world.ada.pk)
    assert patient.enrolled_on is not None and len(patient.family_hash) == 64
    dumped = json.dumps(list(SelfServiceEvent.objects.values()), default=str)
    # (Digits alone would be flaky: random hex hashes and ids contain "555" now and then.)
    for phone in ("5550100001", "555 010 0001", "(555) 010-0001"):
        assert phone not in dumped
    assert str(world.guardian.pk) not in dumped


@pytest.mark.parametrize("installed", [True, False])
def test_message_response_times_only_when_messaging_exists(world: World, monkeypatch: Any, installed: bool) -> None:
    monkeypatch.setattr(derive, "messaging_available", lambda: installed)
    audit.record(actor=world.guardian, action="create", entity_type=Resource.COMMUNICATION, child_id=world.ada.pk)
    audit.record(actor=world.clinician, action="create", entity_type=Resource.COMMUNICATION, child_id=world.ada.pk)
    metrics_refresh()
    from portal.metrics.models import DailyResponseRollup, MessageResponse

    assert MessageResponse.objects.count() == (1 if installed else 0)
    assert DailyResponseRollup.objects.filter(responses=1).count() == (1 if installed else 0)
    # The guardian's message is a self-service action whether or not response times are measured.
    assert SelfServiceEvent.objects.filter(kind="sent_message").count() == 1
