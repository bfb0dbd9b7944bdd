"""The care team's pages: the signed-in landing of clinicians and administrators and the refill queue,
behind the JSON API's access policy (its 404s and its audited denials)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from care.models import Appointment, Coverage, MedicationPlan, RefillRequest, RefillTransition
from portal.audit import AuditEvent
from portal.models import GuardianLink
from tests import care_data
from tests.canaries import ADA_MRN, ADA_NAME, BEN_NAME
from tests.conftest import PASSWORD, World, totp_code

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
PHI = (ADA_NAME, ADA_MRN, care_data.INSULIN)
QUEUE = "/care/refills/"


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def refill(clock: Any, world: World) -> RefillRequest:
    plan = care_data.plan(world.ada, world.clinician)
    return care_data.refill(plan, world.guardian, note="We leave on holiday on Friday")


def browser(world: World, persona: str, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(world.users[persona])
    return client


def decide_url(refill: RefillRequest) -> str:
    return f"/care/children/{refill.child_id}/refills/{refill.pk}/"


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]


def assert_no_phi(response: Any) -> None:
    body = response.content.decode()
    for value in PHI:
        assert value not in body


def denials() -> int:
    return AuditEvent.objects.filter(action="deny").count()


def unchanged(refill: RefillRequest) -> None:
    row = RefillRequest.objects.get(pk=refill.pk)
    assert row.status == "requested" and row.denial_reason == "" and row.decided_by_id is None
    assert MedicationPlan.objects.get(pk=refill.plan_id).refills_remaining == 3
    assert RefillTransition.objects.filter(refill=refill).count() == 0


# -- the landing ------------------------------------------------------------------------------------


def test_a_clinician_lands_on_the_queues(refill: RefillRequest, world: World) -> None:
    response = browser(world, "clinician").get("/")
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert QUEUE in body and "1 request waiting for a decision" in body
    assert "/groups/" in body
    assert "/metrics/dashboard" not in body  # no view_metrics
    assert_no_phi(response)  # the landing names no patient


def test_an_administrator_lands_on_the_metrics_dashboard_link(refill: RefillRequest, world: World) -> None:
    client = browser(world, "admin")
    body = client.get("/").content.decode()
    assert "/metrics/dashboard" in body
    assert QUEUE not in body  # not on a care team: no refill decisions
    assert client.get("/metrics/dashboard").status_code == 200


def test_a_clinician_who_is_also_a_guardian_keeps_the_way_to_the_child(refill: RefillRequest, world: World) -> None:
    GuardianLink.objects.create(guardian=world.other_clinician, child=world.ada, relationship="aunt", status="active")
    body = browser(world, "other_clinician").get("/").content.decode()
    assert f'href="/children/{world.ada.pk}/"' in body and ADA_NAME in body
    assert ADA_NAME not in browser(world, "clinician").get("/").content.decode()


def test_a_guardian_still_lands_on_the_familys_page(refill: RefillRequest, world: World) -> None:
    response = browser(world, "guardian").get("/")
    assert response.status_code == 302 and response["Location"] == f"/children/{world.ada.pk}/"


def test_a_signed_out_visit_to_the_dashboard_leads_to_sign_in_and_back_by_the_landing(world: World) -> None:
    client = Client()
    response = client.get("/metrics/dashboard")
    assert response.status_code == 302 and response["Location"] == "/sign-in/"
    client.post("/sign-in/", {"login": "admin@example.org", "password": PASSWORD})
    assert client.post("/sign-in/code/", {"code": totp_code()})["Location"] == "/"
    landing = client.get("/").content.decode()
    assert 'href="/metrics/dashboard"' in landing
    assert client.get("/metrics/dashboard").status_code == 200


def test_a_signed_in_account_without_the_permission_still_gets_the_audited_404(world: World) -> None:
    before = denials()
    assert browser(world, "clinician").get("/metrics/dashboard").status_code == 404
    assert denials() == before + 1


# -- the refill queue ------------------------------------------------------------------------------


def test_the_queue_shows_the_clinicians_patients_only(refill: RefillRequest, world: World) -> None:
    ben_plan = care_data.plan(world.ben, world.other_clinician, medication="Levetiracetam")
    care_data.refill(ben_plan, world.other_guardian)
    response = browser(world, "clinician").get(QUEUE)
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert ADA_NAME in body and care_data.INSULIN in body and "We leave on holiday on Friday" in body
    assert BEN_NAME not in body and "Levetiracetam" not in body
    assert decide_url(refill) in body and 'value="approved"' in body and 'value="denied"' in body
    other = browser(world, "other_clinician").get(QUEUE)
    assert other.status_code == 200 and BEN_NAME in other.content.decode()
    assert_no_phi(other)


def test_the_queue_reads_a_fixed_number_of_queries(clock: Any, world: World) -> None:
    client = browser(world, "clinician")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(QUEUE).status_code == 200
        return len(queries)

    care_data.refill(care_data.plan(world.ada, world.clinician, medication="Med A"), world.guardian)
    count()  # the first request of a session also loads what the session caches
    one = count()
    for name in ("Med B", "Med C", "Med D"):
        care_data.refill(care_data.plan(world.ada, world.clinician, medication=name), world.guardian)
    assert count() == one


def test_a_clinician_approves_a_refill(refill: RefillRequest, world: World) -> None:
    client = browser(world, "clinician")
    response = client.post(decide_url(refill), {"to": "approved"})
    assert response.status_code == 302 and response["Location"] == QUEUE
    row = RefillRequest.objects.get(pk=refill.pk)
    assert row.status == "approved" and row.decided_by_id == world.clinician.pk
    assert MedicationPlan.objects.get(pk=refill.plan_id).refills_remaining == 2
    assert AuditEvent.objects.filter(action="update", reason="refill:requested->approved").count() == 1
    page = client.get(QUEUE).content.decode()
    assert "Refill request updated: Approved." in page
    assert 'value="sent_to_pharmacy"' in page  # the next step is offered


def test_the_pharmacy_steps_follow_approval(refill: RefillRequest, world: World) -> None:
    client = browser(world, "clinician")
    for step in ("approved", "sent_to_pharmacy", "ready", "picked_up"):
        assert client.post(decide_url(refill), {"to": step}).status_code == 302, step
        assert RefillRequest.objects.get(pk=refill.pk).status == step
    assert ADA_NAME not in client.get(QUEUE).content.decode()  # picked up: no longer open


def test_a_denial_needs_a_reason_and_half_of_one_writes_nothing(refill: RefillRequest, world: World) -> None:
    client = browser(world, "clinician")
    response = client.post(decide_url(refill), {"to": "denied", "reason": "   "})
    assert response.status_code == 422
    assert "reason for the denial" in response.content.decode()
    unchanged(refill)
    response = client.post(decide_url(refill), {"to": "denied", "reason": "Dose changes at Thursday's visit"})
    assert response.status_code == 302
    row = RefillRequest.objects.get(pk=refill.pk)
    assert row.status == "denied" and row.denial_reason == "Dose changes at Thursday's visit"
    assert MedicationPlan.objects.get(pk=refill.plan_id).refills_remaining == 3


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"to": "cancelled"}, "not one the refill queue offers"),
        ({"to": "teleported"}, "not one the refill queue offers"),
        ({}, "not one the refill queue offers"),
        ({"to": "denied", "reason": "x" * 501}, "at most 500 characters"),
        ({"to": "denied", "reason": "no\x00"}, "Null characters are not allowed"),
        ({"to": "denied", "reason": "ring\x07"}, "control characters"),
        ({"to": "ready"}, "cannot go from requested to ready"),
    ],
)
def test_bad_input_is_refused_in_words_and_writes_nothing(
    refill: RefillRequest, world: World, data: dict[str, str], words: str
) -> None:
    response = browser(world, "clinician").post(decide_url(refill), data)
    assert response.status_code in (400, 409)
    assert words in response.content.decode()
    assert_private(response)
    unchanged(refill)


def test_a_spanish_speaking_clinician_reads_the_refusal_in_spanish(refill: RefillRequest, world: World) -> None:
    world.clinician.preferred_language = "es"
    world.clinician.save(update_fields=["preferred_language"])
    response = browser(world, "clinician").post(decide_url(refill), {"to": "denied"})
    assert response.status_code == 422
    body = response.content.decode()
    assert "Cola de renovaciones" in body and "motivo" in body
    unchanged(refill)


def test_deciding_needs_the_csrf_token(refill: RefillRequest, world: World) -> None:
    client = browser(world, "clinician", enforce_csrf_checks=True)
    assert client.post(decide_url(refill), {"to": "approved"}).status_code == 403
    unchanged(refill)


# -- access ----------------------------------------------------------------------------------------

NOT_CARE_TEAM = ("guardian", "co_guardian", "other_guardian", "revoked_guardian", "stranger")


@pytest.mark.parametrize("persona", NOT_CARE_TEAM)
def test_families_and_strangers_cannot_open_the_care_queues(refill: RefillRequest, world: World, persona: str) -> None:
    client = browser(world, persona)
    for method, url, data in (("get", QUEUE, {}), ("post", decide_url(refill), {"to": "approved"})):
        before = denials()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url)
        assert_no_phi(response)
        assert_private(response)
        assert denials() == before + 1, (persona, url)
    unchanged(refill)


@pytest.mark.parametrize("persona", ("other_clinician", "admin"))
def test_a_clinician_of_another_team_cannot_act_on_the_refill(
    refill: RefillRequest, world: World, persona: str
) -> None:
    client = browser(world, persona)
    for step in ("approved", "denied"):
        before = denials()
        response = client.post(decide_url(refill), {"to": step, "reason": "not mine"})
        assert response.status_code == 404
        assert_no_phi(response)
        assert denials() == before + 1
    unchanged(refill)


def test_a_refill_of_another_child_under_my_patients_id_is_a_404(clock: Any, world: World) -> None:
    ben_refill = care_data.refill(care_data.plan(world.ben, world.other_clinician), world.other_guardian)
    care_data.plan(world.ada, world.clinician)
    # Ada's care team names Ada in the URL but Ben's refill: the service finds no such refill of Ada's.
    response = browser(world, "clinician").post(
        f"/care/children/{world.ada.pk}/refills/{ben_refill.pk}/", {"to": "approved"}
    )
    assert response.status_code == 404
    assert BEN_NAME not in response.content.decode()
    assert RefillRequest.objects.get(pk=ben_refill.pk).status == "requested"


def test_an_unknown_refill_is_a_404(refill: RefillRequest, world: World) -> None:
    response = browser(world, "clinician").post(
        f"/care/children/{world.ada.pk}/refills/{uuid.uuid4()}/", {"to": "approved"}
    )
    assert response.status_code == 404
    unchanged(refill)


def test_signed_out_visitors_go_to_sign_in(refill: RefillRequest, world: World) -> None:
    for method, url in (("get", QUEUE), ("post", decide_url(refill))):
        response = getattr(Client(), method)(url, {"to": "approved"})
        assert response.status_code == 302 and response["Location"] == "/sign-in/"
    unchanged(refill)


def test_decisions_are_post_only(refill: RefillRequest, world: World) -> None:
    assert browser(world, "clinician").get(decide_url(refill)).status_code == 405
    unchanged(refill)


# -- coverage verification -------------------------------------------------------------------------

COVERAGE_QUEUE = "/care/coverage/"
MEMBER_ID = "MEMBER-CANARY-NEW"


@pytest.fixture
def card(clock: Any, world: World) -> Coverage:
    care_data.coverage(world.ada, world.guardian)  # the card in force
    return care_data.coverage(world.ada, world.guardian, status="pending", payer="Beacon Health", member_id=MEMBER_ID)


def coverage_url(card: Coverage) -> str:
    return f"/care/children/{card.child_id}/coverage/{card.pk}/"


def card_unchanged(card: Coverage) -> None:
    row = Coverage.objects.get(pk=card.pk)
    assert row.status == "pending" and row.verified_by_id is None and row.rejection_reason == ""
    assert Coverage.objects.get(child=card.child, payer="Acme Health").status == "active"


@pytest.mark.parametrize("persona", ("clinician", "admin"))
def test_the_care_team_and_portal_managers_see_cards_waiting(card: Coverage, world: World, persona: str) -> None:
    response = browser(world, persona).get(COVERAGE_QUEUE)
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert ADA_NAME in body and MEMBER_ID in body and "Beacon Health" in body
    assert "Acme Health" not in body  # the card in force is not waiting
    assert COVERAGE_QUEUE in browser(world, persona).get("/").content.decode()


def test_a_card_verified_replaces_the_one_in_force(card: Coverage, world: World) -> None:
    client = browser(world, "clinician")
    response = client.post(coverage_url(card), {"decision": "accept"})
    assert response.status_code == 302 and response["Location"] == COVERAGE_QUEUE
    row = Coverage.objects.get(pk=card.pk)
    assert row.status == "active" and row.verified_by_id == world.clinician.pk
    assert Coverage.objects.get(child=world.ada, payer="Acme Health").status == "superseded"
    assert AuditEvent.objects.filter(entity_type="Coverage", reason="verified").count() == 1
    page = client.get(COVERAGE_QUEUE).content.decode()
    assert "Coverage verified." in page and MEMBER_ID not in page
    again = client.post(coverage_url(card), {"decision": "reject"})
    assert again.status_code == 409 and "Only pending coverage" in again.content.decode()


def test_a_card_rejected_keeps_the_reason(card: Coverage, world: World) -> None:
    response = browser(world, "admin").post(coverage_url(card), {"decision": "reject", "reason": "Card is expired"})
    assert response.status_code == 302
    row = Coverage.objects.get(pk=card.pk)
    assert row.status == "rejected" and row.rejection_reason == "Card is expired"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"decision": "maybe"}, "accept or to reject"),
        ({"decision": "reject", "reason": "x" * 201}, "at most 200 characters"),
        ({"decision": "reject", "reason": "bell\x07"}, "control characters"),
    ],
)
def test_bad_coverage_decisions_write_nothing(card: Coverage, world: World, data: dict[str, str], words: str) -> None:
    response = browser(world, "clinician").post(coverage_url(card), data)
    assert response.status_code == 400 and words in response.content.decode()
    card_unchanged(card)


@pytest.mark.parametrize("persona", NOT_CARE_TEAM)
def test_families_and_strangers_cannot_open_the_coverage_queue(card: Coverage, world: World, persona: str) -> None:
    client = browser(world, persona)
    for method, url, data in (("get", COVERAGE_QUEUE, {}), ("post", coverage_url(card), {"decision": "accept"})):
        before = denials()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url)
        assert MEMBER_ID not in response.content.decode()
        assert_no_phi(response)
        assert denials() == before + 1
    card_unchanged(card)


def test_a_clinician_of_another_team_neither_sees_nor_verifies_the_card(card: Coverage, world: World) -> None:
    client = browser(world, "other_clinician")
    page = client.get(COVERAGE_QUEUE)
    assert page.status_code == 200 and MEMBER_ID not in page.content.decode()
    assert_no_phi(page)
    before = denials()
    assert client.post(coverage_url(card), {"decision": "accept"}).status_code == 404
    assert denials() == before + 1
    card_unchanged(card)


# -- appointment change requests ------------------------------------------------------------------

CHANGES = "/care/appointment-requests/"


@pytest.fixture
def visit(clock: Any, world: World) -> Appointment:
    return care_data.appointment(
        world.ada,
        world.clinician,
        change_request="reschedule",
        change_note="Mornings suit us better",
        change_requested_at=NOW,
        change_requested_by=world.guardian,
    )


def answer_url(visit: Appointment) -> str:
    return f"/care/children/{visit.child_id}/appointments/{visit.pk}/"


def visit_unchanged(visit: Appointment) -> None:
    row = Appointment.objects.get(pk=visit.pk)
    assert row.status == "booked" and row.change_request == "reschedule" and row.start == visit.start


def test_the_clinician_sees_the_familys_request(visit: Appointment, world: World) -> None:
    client = browser(world, "clinician")
    response = client.get(CHANGES)
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert ADA_NAME in body and "Mornings suit us better" in body and "asks for a new time" in body
    assert "Thursday 12 March 2026, 10:00" in body  # 14:00 UTC in New York (EDT)
    assert "1 request waiting" in client.get("/").content.decode()
    assert "Mornings" not in browser(world, "other_clinician").get(CHANGES).content.decode()


def test_moving_the_visit_answers_the_request(visit: Appointment, world: World) -> None:
    client = browser(world, "clinician")
    response = client.post(
        answer_url(visit), {"answer": "move", "start": "2026-03-13T09:00", "end": "2026-03-13T09:30"}
    )
    assert response.status_code == 302 and response["Location"] == CHANGES
    row = Appointment.objects.get(pk=visit.pk)
    assert row.start == datetime(2026, 3, 13, 13, 0, tzinfo=UTC)  # 09:00 in New York
    assert row.end == datetime(2026, 3, 13, 13, 30, tzinfo=UTC)
    assert row.change_request == "" and row.change_note == ""
    assert AuditEvent.objects.filter(entity_type="Appointment", reason__startswith="changed:").count() == 1
    assert "Mornings" not in client.get(CHANGES).content.decode()


@pytest.mark.parametrize(("answer", "status"), [("cancel", "cancelled"), ("dismiss", "booked")])
def test_cancelling_or_closing_the_request(visit: Appointment, world: World, answer: str, status: str) -> None:
    assert browser(world, "clinician").post(answer_url(visit), {"answer": answer}).status_code == 302
    row = Appointment.objects.get(pk=visit.pk)
    assert row.status == status and row.change_request == ""


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        ({"answer": "move"}, 400, "new start and end"),
        ({"answer": "move", "start": "next week", "end": "2026-03-13T09:30"}, 400, "as a date and a time"),
        ({"answer": "move", "start": "2026-03-13T09:30", "end": "2026-03-13T09:00"}, 422, "end must come after"),
        ({"answer": "move", "start": "2099-03-13T09:00", "end": "2099-03-13T09:30"}, 400, "outside the dates"),
        ({"answer": "ignore"}, 400, "how to answer"),
    ],
)
def test_bad_answers_write_nothing(
    visit: Appointment, world: World, data: dict[str, str], status: int, words: str
) -> None:
    response = browser(world, "clinician").post(answer_url(visit), data)
    assert response.status_code == status and words in response.content.decode()
    visit_unchanged(visit)


@pytest.mark.parametrize("persona", (*NOT_CARE_TEAM, "admin"))
def test_only_clinicians_open_the_change_requests(visit: Appointment, world: World, persona: str) -> None:
    client = browser(world, persona)
    for method, url, data in (("get", CHANGES, {}), ("post", answer_url(visit), {"answer": "cancel"})):
        before = denials()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url)
        assert "Mornings" not in response.content.decode()
        assert_no_phi(response)
        assert denials() == before + 1
    visit_unchanged(visit)


def test_a_clinician_of_another_team_cannot_answer(visit: Appointment, world: World) -> None:
    before = denials()
    assert browser(world, "other_clinician").post(answer_url(visit), {"answer": "cancel"}).status_code == 404
    assert denials() == before + 1
    visit_unchanged(visit)


def test_answers_need_the_csrf_token(visit: Appointment, card: Coverage, world: World) -> None:
    client = browser(world, "clinician", enforce_csrf_checks=True)
    assert client.post(answer_url(visit), {"answer": "cancel"}).status_code == 403
    assert client.post(coverage_url(card), {"decision": "accept"}).status_code == 403
    visit_unchanged(visit)
    card_unchanged(card)
