"""Imported results and visit summaries follow the portal's access rules: the family sees what is
released and not confidential, the care team everything, and nobody else anything (404, audited)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import TestCase

from care.models import TestResult, VisitSummary
from portal.models import AuditEvent
from tests.canaries import ADA_MRN, ADA_NAME, hits
from tests.conftest import World
from tests.interop.conftest import record_of, run_import, write_lines

LOINC = "http://loinc.org"
OUTSIDERS = ("other_guardian", "revoked_guardian", "stranger", "other_clinician")


def _ada(world: World) -> dict[str, Any]:
    """Ada as the EHR knows her: the import adopts the child staff registered, by her MRN."""
    given, family = ADA_NAME.split()
    return {
        "resourceType": "Patient",
        "id": "ada",
        "meta": {"versionId": "1", "lastUpdated": "2026-11-01T00:00:00Z"},
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "https://ehr.example/mrn", "value": ADA_MRN}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": world.ada.date_of_birth.isoformat(),
    }


def _observation(ident: str, name: str, **body: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "meta": {"versionId": "1", "lastUpdated": "2026-11-30T10:00:00Z", **body.pop("meta", {})},
        "identifier": [{"system": "https://ehr.example/result", "value": ident}],
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "718-7"}], "text": name},
        "subject": {"reference": "Patient/ada"},
        "effectiveDateTime": "2026-11-30T09:00:00Z",
        "performer": [{"reference": "Practitioner/outside", "display": "Dr. Outside"}],
        **body,
    }


@pytest.fixture
def imported(world: World, tmp_path, frozen, settings) -> dict[str, Any]:
    settings.PORTAL_RESULT_HOLD = {"genetic": 72.0}
    export = tmp_path / "export"
    write_lines(export / "Patient.ndjson", [_ada(world)])
    hemoglobin = _observation(
        "hb", "Hemoglobin", valueQuantity={"value": 12.1, "unit": "g/dL"}, interpretation=[{"coding": [{"code": "N"}]}]
    )
    genetic = _observation("cf", "Cystic fibrosis gene test", valueString="No change found")
    private = _observation("ct", "Chlamydia test", valueString="Not detected", meta={"security": [{"code": "R"}]})
    write_lines(export / "Observation.ndjson", [hemoglobin, genetic, private])
    report = {
        "resourceType": "DiagnosticReport",
        "id": "gen",
        "identifier": [{"system": "https://ehr.example/report", "value": "gen"}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE"}]}],
        "code": {"text": "Cystic fibrosis gene test"},
        "subject": {"reference": "Patient/ada"},
        "result": [{"reference": "Observation/cf"}],
    }
    write_lines(export / "DiagnosticReport.ndjson", [report])
    summary = {
        "resourceType": "DocumentReference",
        "id": "avs",
        "identifier": [{"system": "https://ehr.example/document", "value": "avs"}],
        "status": "current",
        "subject": {"reference": "Patient/ada"},
        "date": "2026-11-30T18:00:00Z",
        "description": "After-visit summary",
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"Keep the diary.").decode()}}
        ],
    }
    write_lines(export / "DocumentReference.ndjson", [summary])
    with TestCase.captureOnCommitCallbacks(execute=True):
        output, failed = run_import(export)
    assert not failed, output
    return {
        "hb": TestResult.objects.get(pk=record_of(hemoglobin).target),
        "cf": TestResult.objects.get(pk=record_of(genetic).target),
        "ct": TestResult.objects.get(pk=record_of(private).target),
        "avs": VisitSummary.objects.get(pk=record_of(summary).target),
    }


def _base(world: World) -> str:
    return f"/api/v1/children/{world.ada.pk}"


def _names(world: World, persona: str) -> set[str]:
    answer = world.client(persona).get(f"{_base(world)}/results")
    assert answer.status_code == 200, answer.content
    return {row["name"] for row in answer.json()["items"]}


def test_the_family_sees_released_results_the_care_team_sees_all(frozen, world: World, imported) -> None:
    assert _names(world, "guardian") == {"Hemoglobin"}  # genetic held, adolescent-confidential hidden
    assert _names(world, "co_guardian") == {"Hemoglobin"}
    assert _names(world, "clinician") == {"Hemoglobin", "Cystic fibrosis gene test", "Chlamydia test"}
    detail = world.client("guardian").get(f"{_base(world)}/results/{imported['hb'].pk}").json()
    assert (detail["value"], detail["unit"], detail["interpretation"]) == ("12.1", "g/dL", "normal")
    assert detail["ordering_clinician_name"] == "Dr. Outside"  # an orderer the portal has no account for
    for hidden in ("cf", "ct"):
        assert world.client("guardian").get(f"{_base(world)}/results/{imported[hidden].pk}").status_code == 404
    summaries = world.client("guardian").get(f"{_base(world)}/visit-summaries").json()["items"]
    assert [s["title"] for s in summaries] == ["After-visit summary"]


def test_a_held_result_reaches_the_family_when_the_care_team_releases_it(frozen, world: World, imported) -> None:
    held = imported["cf"]
    assert held.released_at is None and held.category == "genetic"
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = world.client("clinician").post(f"{_base(world)}/results/{held.pk}/release")
    assert answer.status_code == 200, answer.content
    assert _names(world, "guardian") == {"Hemoglobin", "Cystic fibrosis gene test"}
    assert "Chlamydia test" not in _names(world, "guardian")


@pytest.mark.parametrize("persona", OUTSIDERS)
def test_nobody_else_sees_imported_results_or_summaries(frozen, world: World, imported, persona: str) -> None:
    client = world.client(persona)
    urls = [
        f"{_base(world)}/results",
        f"{_base(world)}/results/{imported['hb'].pk}",
        f"{_base(world)}/visit-summaries",
        f"{_base(world)}/visit-summaries/{imported['avs'].pk}",
    ]
    for url in urls:
        answer = client.get(url)
        assert answer.status_code == 404, (url, answer.status_code)
        body = answer.content.decode()
        assert "Hemoglobin" not in body and "diary" not in body and hits(body) == []
    denied = AuditEvent.objects.filter(actor_id=world.users[persona].pk, outcome="denied")
    assert denied.count() >= len(urls)
    assert json.dumps(list(denied.values_list("reason", flat=True))).count("no_") >= len(urls)
