"""Test results and visit summaries: recording keyed by the caller, the hold of sensitive categories and
its release (by a clinician or when it runs out), comments, the PDF, and who receives which event."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client, TestCase

from care.models import ResultComment, TestResult, VisitSummary
from care.services import results
from messaging.models import UserEvent
from portal.errors import ApiError
from portal.models import AuditEvent
from portal.settings import _result_hold
from tests.care import results_data
from tests.conftest import World

# A Wednesday morning; the clock stands still in every test that depends on it.
NOW = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)
HOLD = {"genetic": 72.0}
EVERYONE = ("guardian", "co_guardian", "other_guardian", "revoked_guardian", "clinician", "other_clinician", "admin")


def post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def base(world: World) -> str:
    return f"/api/v1/children/{world.ada.pk}"


def receivers(world: World, kind: str) -> set[str]:
    """The personas whose stream holds an event of ``kind``."""
    ids = set(UserEvent.objects.filter(type=kind).values_list("user_id", flat=True))
    return {persona for persona in EVERYONE if world.users[persona].pk in ids}


def polled(world: World, persona: str, kind: str) -> list[dict[str, Any]]:
    """What the persona's client gets from the stream (the delivery-time check applies)."""
    answer = world.client(persona).get("/api/v1/events?after=0").json()
    return [event for event in answer["events"] if event["type"] == kind]


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def held(settings: Any) -> None:
    settings.PORTAL_RESULT_HOLD = HOLD


# -- recording, keyed by the caller ---------------------------------------------------------------


def test_recording_again_changes_nothing_and_an_update_is_announced(world: World, frozen: Any) -> None:
    first = results_data.result(world.ada, world.clinician, source_id="lab-1")
    assert receivers(world, "result.available") == {"guardian", "co_guardian", "clinician"}
    audited = AuditEvent.objects.filter(entity_type="Observation").count()
    fields: dict[str, Any] = {
        "name": results_data.RESULT_NAME,
        "code": "2345-7",
        "code_system": "http://loinc.org",
        "value_quantity": Decimal("5.40"),
        "unit": "mmol/L",
        "range_low": Decimal("3.9"),
        "range_high": Decimal("7.8"),
        "interpretation": "normal",
        "effective_at": first.effective_at,
        "issued_at": first.issued_at,
        "ordering_clinician": world.clinician,
    }
    again, created = results.result_record(actor=None, child=world.ada, source_id="lab-1", **fields)
    assert (again.pk, created) == (first.pk, False)
    assert AuditEvent.objects.filter(entity_type="Observation").count() == audited
    assert not UserEvent.objects.filter(type="result.changed").exists()

    fields.update(value_quantity=Decimal("9.1"), interpretation="high", status="corrected")
    corrected, created = results.result_record(actor=None, child=world.ada, source_id="lab-1", **fields)
    assert created is False and corrected.value == "9.1" and corrected.interpretation == "high"
    assert AuditEvent.objects.filter(entity_type="Observation", action="update").count() == 1
    assert receivers(world, "result.changed") == {"guardian", "co_guardian", "clinician"}
    assert TestResult.objects.count() == 1
    # Withdrawn (entered in error): the family is told to look again, and finds nothing.
    UserEvent.objects.all().delete()
    fields.update(status="entered-in-error")
    results.result_record(actor=None, child=world.ada, source_id="lab-1", **fields)
    assert receivers(world, "result.changed") == {"guardian", "co_guardian", "clinician"}
    assert world.client("guardian").get(f"{base(world)}/results/{first.pk}").status_code == 404


def test_a_source_id_never_moves_to_another_child(world: World, frozen: Any) -> None:
    results_data.result(world.ada, source_id="lab-2")
    with pytest.raises(ApiError) as refused:
        results_data.result(world.ben, source_id="lab-2")
    assert refused.value.code == "source_id_conflict"
    with pytest.raises(ApiError) as bad:
        results_data.result(world.ada, interpretation="purple")
    assert bad.value.code == "invalid_interpretation"


def test_result_detail_shows_range_flag_report_and_orderer(world: World, frozen: Any) -> None:
    report, _ = results.report_record(
        actor=None,
        child=world.ada,
        source_id="report-1",
        name="Metabolic panel",
        conclusion="Within the target range.",
        ordering_clinician_name="Dr. Outside Lab",
    )
    row = results_data.result(
        world.ada, report=report, range_text="3.9-7.8 fasting", ordering_clinician=None, ordering_clinician_name="Dr. X"
    )
    answer = world.client("guardian").get(f"{base(world)}/results/{row.pk}")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["reference_range"] == {"low": "3.9", "high": "7.8", "text": "3.9-7.8 fasting"}
    assert body["interpretation"] == "normal" and body["value"] == "5.4" and body["value_is_numeric"] is True
    assert body["ordering_clinician_name"] == "Dr. X"
    assert body["report"]["conclusion"] == "Within the target range." and body["report_name"] == "Metabolic panel"
    assert body["released"] is True and body["hold_until"] is None and body["comments"] == []
    read = AuditEvent.objects.filter(action="read", entity_type="Observation", entity_id=str(row.pk))
    assert read.count() == 1


def test_a_confidential_report_is_not_shown_with_its_result(world: World, frozen: Any) -> None:
    report, _ = results.report_record(
        actor=None, child=world.ada, source_id="report-2", name="Private CANARYLAB", confidential=True
    )
    row = results_data.result(world.ada, report=report)
    guardian = world.client("guardian").get(f"{base(world)}/results/{row.pk}").json()
    assert guardian["report"] is None and guardian["report_id"] is None and "Private" not in json.dumps(guardian)
    clinician = world.client("clinician").get(f"{base(world)}/results/{row.pk}").json()
    assert clinician["report"]["name"] == "Private CANARYLAB"


def test_results_list_is_newest_first_bounded_and_paged(world: World, frozen: Any) -> None:
    for hours in (5, 1, 3):
        results_data.result(world.ada, effective_at=NOW - timedelta(hours=hours), name=f"R{hours}")
    results_data.result(world.ada, effective_at=NOW - timedelta(hours=2), name="Imaging", category="imaging")
    guardian = world.client("guardian")
    names = [row["name"] for row in guardian.get(f"{base(world)}/results").json()["items"]]
    assert names == ["R1", "Imaging", "R3", "R5"]
    first = guardian.get(f"{base(world)}/results?limit=1").json()
    assert [row["name"] for row in first["items"]] == ["R1"] and first["next"]
    page = guardian.get(f"{base(world)}/results", {"limit": 2, "cursor": first["next"]}).json()
    assert [row["name"] for row in page["items"]] == ["Imaging", "R3"]
    last = guardian.get(f"{base(world)}/results", {"limit": 2, "cursor": page["next"]}).json()
    assert [row["name"] for row in last["items"]] == ["R5"] and last["next"] is None
    imaging = guardian.get(f"{base(world)}/results?category=imaging").json()["items"]
    assert [row["name"] for row in imaging] == ["Imaging"]
    too_many = guardian.get(f"{base(world)}/results?limit=500")
    assert too_many.status_code == 422 and too_many.json()["code"] == "invalid_input"


def test_list_reads_a_fixed_number_of_queries(world: World, frozen: Any, django_assert_max_num_queries: Any) -> None:
    report, _ = results.report_record(actor=None, child=world.ada, source_id="report-3", name="Panel")
    for _ in range(6):
        results_data.result(world.ada, world.clinician, report=report)
    guardian = world.client("guardian")
    guardian.get(f"{base(world)}/results")  # warm the session
    with django_assert_max_num_queries(12):
        assert len(guardian.get(f"{base(world)}/results").json()["items"]) == 6


def test_statuses_families_do_not_read_stay_hidden_until_final(world: World, frozen: Any) -> None:
    row = results_data.result(world.ada, source_id="lab-3", status="registered")
    assert world.client("guardian").get(f"{base(world)}/results/{row.pk}").status_code == 404
    assert not UserEvent.objects.filter(type="result.available").exists()
    results_data.result(world.ada, source_id="lab-3", status="final", effective_at=row.effective_at)
    assert world.client("guardian").get(f"{base(world)}/results/{row.pk}").status_code == 200
    assert receivers(world, "result.available") == {"guardian", "co_guardian", "clinician"}


# -- the hold and its release ---------------------------------------------------------------------


def test_setting_parses_categories_and_hours() -> None:
    assert _result_hold(["genetic:72", " Imaging : 1.5 "]) == {"genetic": 72.0, "imaging": 1.5}
    from django.core.exceptions import ImproperlyConfigured

    for bad in (["genetic"], ["genetic:soon"], [":4"], ["genetic:-1"]):
        with pytest.raises(ImproperlyConfigured):
            _result_hold(bad)


def test_a_held_result_is_invisible_until_a_clinician_releases_it(world: World, frozen: Any, held: None) -> None:
    row = results_data.result(world.ada, world.clinician, category="genetic")
    assert row.released_at is None and row.hold_until == NOW + timedelta(hours=72)
    assert AuditEvent.objects.filter(entity_id=str(row.pk), action="create", reason="held").exists()
    guardian = world.client("guardian")
    assert guardian.get(f"{base(world)}/results").json()["items"] == []
    assert guardian.get(f"{base(world)}/results/{row.pk}").status_code == 404
    assert not UserEvent.objects.filter(type="result.available").exists()
    seen = world.client("clinician").get(f"{base(world)}/results/{row.pk}").json()
    assert seen["released"] is False and seen["hold_until"] is not None

    # Guardians cannot release; the care team can, once (a second release is a no-op).
    assert post(guardian, f"{base(world)}/results/{row.pk}/release").status_code == 404
    released = post(world.client("clinician"), f"{base(world)}/results/{row.pk}/release")
    assert released.status_code == 200 and released.json()["released"] is True
    assert post(world.client("clinician"), f"{base(world)}/results/{row.pk}/release").status_code == 200
    assert UserEvent.objects.filter(type="result.available").count() == 3
    assert receivers(world, "result.available") == {"guardian", "co_guardian", "clinician"}
    assert AuditEvent.objects.filter(entity_id=str(row.pk), reason="released", actor_id=world.clinician.pk).count() == 1
    assert [r["id"] for r in guardian.get(f"{base(world)}/results").json()["items"]] == [str(row.pk)]
    assert polled(world, "guardian", "result.available")[0]["entity_id"] == str(row.pk)


def test_the_hold_runs_out_and_the_sweep_announces_it(world: World, frozen: Any, held: None) -> None:
    row = results_data.result(world.ada, world.clinician, category="genetic")
    other = results_data.result(world.ada, world.clinician)  # not held: out at once
    summary = results_data.summary(world.ada, world.clinician, category="genetic")
    frozen.move_to(NOW + timedelta(hours=71, minutes=59))
    assert results.release_due() == 0
    assert world.client("guardian").get(f"{base(world)}/results/{row.pk}").status_code == 404
    frozen.move_to(NOW + timedelta(hours=72))
    # Families never wait for the sweep: the item is out the moment its hold ends.
    assert world.client("guardian").get(f"{base(world)}/results/{row.pk}").status_code == 200
    assert not UserEvent.objects.filter(type="result.available", entity_id=row.pk).exists()
    with TestCase.captureOnCommitCallbacks(execute=True):
        from messaging.worker import sweep

        sweep()
    assert receivers(world, "visit_summary.available") == {"guardian", "co_guardian", "clinician"}
    assert UserEvent.objects.filter(type="result.available", entity_id=row.pk).count() == 3
    assert UserEvent.objects.filter(type="result.available", entity_id=other.pk).count() == 3
    row.refresh_from_db()
    summary.refresh_from_db()
    assert row.released_at == NOW + timedelta(hours=72) and row.released_by is None
    assert summary.released_at is not None
    assert AuditEvent.objects.filter(entity_id=str(row.pk), reason="hold_expired", actor_id=None).count() == 1
    printed = io.StringIO()
    call_command("release_held_results", stdout=printed)
    assert printed.getvalue() == "0 held item(s) released.\n"


def test_a_clinician_release_after_the_hold_ended_still_announces_it(world: World, frozen: Any, held: None) -> None:
    row = results_data.result(world.ada, world.clinician, category="genetic")
    frozen.move_to(NOW + timedelta(hours=80))
    post(world.client("clinician"), f"{base(world)}/results/{row.pk}/release")
    assert UserEvent.objects.filter(type="result.available", entity_id=row.pk).count() == 3
    assert results.release_due() == 0


# -- comments -------------------------------------------------------------------------------------


def test_care_team_comments_reach_the_family(world: World, frozen: Any) -> None:
    row = results_data.result(world.ada, world.clinician)
    url = f"{base(world)}/results/{row.pk}/comments"
    made = post(world.client("clinician"), url, {"body": results_data.COMMENT})
    assert made.status_code == 201, made.content
    assert made.json()["author_name"] == "Dr. Cleo Clinician"
    detail = world.client("guardian").get(f"{base(world)}/results/{row.pk}").json()
    assert [c["body"] for c in detail["comments"]] == [results_data.COMMENT]
    assert receivers(world, "result.commented") == {"guardian", "co_guardian", "clinician"}
    event = polled(world, "guardian", "result.commented")[0]
    assert event["entity_id"] == str(row.pk) and "CANARYNOTE" not in json.dumps(event)
    comment = ResultComment.objects.get()
    assert "CANARYNOTE" not in str(ResultComment.objects.filter(pk=comment.pk).values_list("body", flat=True)[0])


def test_comment_input_is_checked(world: World, frozen: Any) -> None:
    row = results_data.result(world.ada, world.clinician)
    url = f"{base(world)}/results/{row.pk}/comments"
    clinician = world.client("clinician")
    for body in ({"body": ""}, {"body": "x" * 4001}, {"body": "ok", "urgent": True}, {"body": "a\x00b"}):
        answer = post(clinician, url, body)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_input", body
    blank = post(clinician, url, {"body": "   "})
    assert blank.status_code == 422 and blank.json()["code"] == "comment_empty"
    assert post(world.client("guardian"), url, {"body": "Thanks"}).status_code == 404
    assert post(clinician, f"{base(world)}/results/{uuid.uuid4()}/comments", {"body": "?"}).status_code == 404
    assert not ResultComment.objects.exists()


def test_a_comment_on_a_held_result_waits_with_it(world: World, frozen: Any, held: None) -> None:
    row = results_data.result(world.ada, world.clinician, category="genetic")
    post(world.client("clinician"), f"{base(world)}/results/{row.pk}/comments", {"body": "We will call you."})
    assert not UserEvent.objects.filter(type="result.commented").exists()


# -- events and confidentiality -------------------------------------------------------------------


def test_events_reach_only_those_who_may_read_the_result(world: World, frozen: Any) -> None:
    results_data.result(world.ada, world.clinician)
    assert receivers(world, "result.available") == {"guardian", "co_guardian", "clinician"}
    for persona in ("other_guardian", "revoked_guardian", "other_clinician", "admin", "stranger"):
        assert polled(world, persona, "result.available") == []
    UserEvent.objects.all().delete()
    secret = results_data.result(world.ada, world.clinician, confidential=True)
    assert receivers(world, "result.available") == {"clinician"}
    assert world.client("guardian").get(f"{base(world)}/results/{secret.pk}").status_code == 404
    # Limited scope (an adolescent's parent): no result event, and none replayed from before.
    UserEvent.objects.all().delete()
    results_data.result(world.ada, world.clinician)
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    assert polled(world, "co_guardian", "result.available") == []
    UserEvent.objects.all().delete()
    results_data.summary(world.ada, world.clinician)
    assert receivers(world, "visit_summary.available") == {"guardian", "clinician"}


# -- visit summaries ------------------------------------------------------------------------------


def test_visit_summary_text_and_pdf(world: World, frozen: Any) -> None:
    summary = results_data.summary(world.ada, world.clinician)
    guardian = world.client("guardian")
    listed = guardian.get(f"{base(world)}/visit-summaries").json()["items"]
    assert [row["id"] for row in listed] == [str(summary.pk)]
    assert listed[0]["has_pdf"] is True and listed[0]["pdf_size"] == len(results_data.PDF)
    assert "text" not in listed[0]
    detail = guardian.get(f"{base(world)}/visit-summaries/{summary.pk}").json()
    assert detail["text"].startswith("Keep the evening dose") and detail["author_name"] == "Dr. Cleo Clinician"
    pdf = guardian.get(f"{base(world)}/visit-summaries/{summary.pk}/pdf")
    assert pdf.status_code == 200 and pdf.content == results_data.PDF
    assert pdf["Content-Type"] == "application/pdf" and "no-store" in pdf["Cache-Control"]
    assert pdf["Content-Disposition"] == f'attachment; filename="{summary.pk}.pdf"'
    stored = VisitSummary.objects.filter(pk=summary.pk).values_list("pdf", "title")[0]
    assert stored[0].startswith("pe1:") and "CANARYDOC" not in stored[1]
    text_only = results_data.summary(world.ada, pdf=None)
    missing = guardian.get(f"{base(world)}/visit-summaries/{text_only.pk}/pdf")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_only_a_clean_pdf_is_kept(world: World, frozen: Any) -> None:
    for bad, code in (
        (b"GIF89a not a pdf", "pdf_invalid"),
        (results_data.PDF + b"MZ trailing", "pdf_invalid"),
        (b"%PDF-1.4\n<</OpenAction<</S/JavaScript/JS(app.alert(1))>>>>\n%%EOF\n", "pdf_invalid"),
        (b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024) + b"\n%%EOF", "pdf_too_large"),
    ):
        with pytest.raises(ApiError) as refused:
            results_data.summary(world.ada, pdf=bad)
        assert refused.value.code == code
    with pytest.raises(ApiError) as empty:
        results_data.summary(world.ada, pdf=None, text=" ")
    assert empty.value.code == "summary_empty"
    assert not VisitSummary.objects.exists()


def test_a_held_summary_waits_for_its_release(world: World, frozen: Any, held: None) -> None:
    summary = results_data.summary(world.ada, world.clinician, category="genetic")
    guardian = world.client("guardian")
    assert guardian.get(f"{base(world)}/visit-summaries").json()["items"] == []
    for path in ("", "/pdf"):
        assert guardian.get(f"{base(world)}/visit-summaries/{summary.pk}{path}").status_code == 404
    assert AuditEvent.objects.filter(action="deny", entity_type="DocumentReference").count() == 2
    assert post(guardian, f"{base(world)}/visit-summaries/{summary.pk}/release").status_code == 404
    released = post(world.client("clinician"), f"{base(world)}/visit-summaries/{summary.pk}/release")
    assert released.status_code == 200 and released.json()["released"] is True
    assert guardian.get(f"{base(world)}/visit-summaries/{summary.pk}/pdf").content == results_data.PDF
    assert receivers(world, "visit_summary.available") == {"guardian", "co_guardian", "clinician"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_recordings_of_one_item_make_one_row(needs_postgres: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from tests.conftest import build_world

    world = build_world()

    def record(index: int) -> bool:
        try:
            return results_data.result(world.ada, source_id="lab-race").recorded_at is not None
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(record, range(16)))
    assert TestResult.objects.filter(source_id="lab-race").count() == 1
    assert AuditEvent.objects.filter(entity_type="Observation", action="create").count() == 1
