"""The family's test results and visit summaries pages: what they show, what the JSON API's rules hide
(held, adolescent-confidential, limited scope), the results-seen marker the "today" page reads, the
PDF download, and the permission matrix on every page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from care.models import ResultsSeen
from care.services import results as results_service
from portal.audit import AuditEvent
from portal.models import GuardianLink
from tests.canaries import ADA_MRN, ADA_NAME
from tests.care import results_data
from tests.conftest import World

# Wednesday 6 March 2030, 15:00 UTC = 10:00 in New York (Ada's zone).
NOW = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)
PHI = (
    ADA_NAME,
    ADA_MRN,
    results_data.RESULT_NAME,
    results_data.SUMMARY_TITLE,
    results_data.COMMENT,
    "Keep the evening dose",
    "Metabolic panel",
)
DENIED = ("other_guardian", "revoked_guardian", "other_clinician", "stranger")


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def items(clock: Any, world: World) -> dict[str, Any]:
    report, _ = results_service.report_record(
        actor=None,
        child=world.ada,
        source_id="report-1",
        name="Metabolic panel",
        conclusion="Within the target range.",
        ordering_clinician=world.clinician,
    )
    glucose = results_data.result(world.ada, world.clinician, report=report)
    potassium = results_data.result(
        world.ada,
        world.clinician,
        report=report,
        name="Potassium",
        value_quantity=Decimal("6.1"),
        unit="mmol/L",
        range_low=Decimal("3.5"),
        range_high=Decimal("5.0"),
        interpretation="high",
    )
    loose = results_data.result(
        world.ada,
        None,
        name="Urine dipstick",
        value_quantity=None,
        value_text="trace",
        unit="",
        range_low=None,
        range_high=None,
        interpretation="abnormal",
        effective_at=NOW - timedelta(hours=5),  # older: its group comes after the panel's
    )
    results_service.result_comment_add(
        actor=world.clinician,
        access=_access(world, "clinician"),
        result_id=glucose.pk,
        body=results_data.COMMENT,
    )
    summary = results_data.summary(world.ada, world.clinician)
    return {"report": report, "glucose": glucose, "potassium": potassium, "loose": loose, "summary": summary}


def _access(world: World, persona: str) -> Any:
    from portal.access import Capability, child_for

    return child_for(world.users[persona], world.ada.pk, Capability.TREAT)


def browser(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def url(world: World, page: str) -> str:
    return f"/children/{world.ada.pk}/{page}/"


def body(response: Any) -> str:
    return str(response.content.decode())


def denials() -> int:
    return AuditEvent.objects.filter(action="deny").count()


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]


def assert_no_phi(response: Any) -> None:
    text = body(response)
    for value in PHI:
        assert value not in text, value


# -- results ----------------------------------------------------------------------------------------


def test_results_are_grouped_by_report_with_value_range_flag_and_orderer(items: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(url(world, "results"))
    assert response.status_code == 200
    assert_private(response)
    text = body(response)
    assert "Metabolic panel" in text and "Other results" in text
    assert text.index("Metabolic panel") < text.index("Potassium") < text.index("Other results")
    assert text.index("Other results") < text.index("Urine dipstick")
    assert results_data.RESULT_NAME in text and "5.4 mmol/L" in text and "3.9 – 7.8 mmol/L" in text
    # The flag is said in words, not only shown in a colour.
    assert '<span class="tag">High</span>' in text and "Outside the usual range" in text
    assert '<span class="ok">Normal</span>' in text
    assert "ordered by Dr. Cleo Clinician" in text and "6 March 2030, 08:00" in text  # New York time
    assert f'href="/children/{world.ada.pk}/results/{items["glucose"].pk}/"' in text
    assert AuditEvent.objects.filter(action="read", entity_type="Observation", actor_id=world.guardian.pk).exists()


def test_a_result_page_shows_the_report_and_the_care_teams_comment(items: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(url(world, f"results/{items['glucose'].pk}"))
    assert response.status_code == 200
    assert_private(response)
    text = body(response)
    assert f"<h1>{results_data.RESULT_NAME}</h1>" in text
    assert "Usual range" in text and "Within the target range." in text and "Metabolic panel" in text
    assert results_data.COMMENT in text and "Dr. Cleo Clinician" in text
    read = AuditEvent.objects.filter(action="read", entity_type="Observation", entity_id=str(items["glucose"].pk))
    assert read.count() == 1


def test_a_result_without_a_comment_says_so(items: dict[str, Any], world: World) -> None:
    text = body(browser(world, "guardian").get(url(world, f"results/{items['potassium'].pk}")))
    assert "has not added a note" in text and "Potassium" in text and "High" in text


def test_held_and_confidential_results_stay_hidden_from_the_family(
    items: dict[str, Any], world: World, settings: Any
) -> None:
    settings.PORTAL_RESULT_HOLD = {"genetic": 72.0}
    held = results_data.result(world.ada, world.clinician, name="Held GENETICCANARY", category="genetic")
    secret = results_data.result(world.ada, world.clinician, name="Private TEENCANARY", confidential=True)
    private_report, _ = results_service.report_record(
        actor=None, child=world.ada, source_id="report-2", name="Sealed REPORTCANARY", confidential=True
    )
    results_data.result(world.ada, world.clinician, report=private_report, name="Plain sodium")
    client = browser(world, "guardian")
    text = body(client.get(url(world, "results")))
    assert "GENETICCANARY" not in text and "TEENCANARY" not in text and "REPORTCANARY" not in text
    assert "Plain sodium" in text  # the result is the family's; its confidential report is not
    for row in (held, secret):
        before = denials()
        response = client.get(url(world, f"results/{row.pk}"))
        assert response.status_code == 404 and "CANARY" not in body(response)
        assert denials() == before + 1
    # The care team sees both, the held one marked as held.
    clinician = body(browser(world, "clinician").get(url(world, "results")))
    assert "GENETICCANARY" in clinician and "TEENCANARY" in clinician and "Held from the family until" in clinician


def test_a_limited_scope_guardian_is_told_why_and_sees_no_result(items: dict[str, Any], world: World) -> None:
    GuardianLink.objects.filter(pk=world.links["guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    client = browser(world, "guardian")
    pages = [
        "results",
        f"results/{items['glucose'].pk}",
        "visit-summaries",
        f"visit-summaries/{items['summary'].pk}",
        f"visit-summaries/{items['summary'].pk}/pdf",
    ]
    for page in pages:
        before = denials()
        response = client.get(url(world, page))
        assert response.status_code == 403, page
        assert "is limited" in body(response)
        assert results_data.RESULT_NAME not in body(response) and results_data.SUMMARY_TITLE not in body(response)
        assert denials() == before + 1
    assert not ResultsSeen.objects.exists()
    today = body(client.get(f"/children/{world.ada.pk}/"))
    assert "Results and visit summaries" not in today and url(world, "results") not in today


# -- seen, and the "today" page ---------------------------------------------------------------------


def test_today_counts_new_items_and_the_results_page_marks_them_seen(items: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    today = body(client.get(f"/children/{world.ada.pk}/"))
    assert "3 new test results" in today and "1 new visit summary" in today
    assert f'href="{url(world, "results")}"' in today and f'href="{url(world, "visit-summaries")}"' in today
    client.get(url(world, "results"))
    marker = ResultsSeen.objects.get(guardian=world.guardian, child=world.ada)
    assert marker.results_seen_at == NOW and marker.summaries_seen_at is None
    today = body(client.get(f"/children/{world.ada.pk}/"))
    assert "new test result" not in today and "1 new visit summary" in today
    client.get(url(world, f"visit-summaries/{items['summary'].pk}"))
    today = body(client.get(f"/children/{world.ada.pk}/"))
    assert "Nothing new since you last looked." in today
    # The other guardian's reading is their own.
    assert "3 new test results" in body(browser(world, "co_guardian").get(f"/children/{world.ada.pk}/"))


def test_opening_one_result_marks_what_came_out_until_it_seen(items: dict[str, Any], world: World, clock: Any) -> None:
    clock.shift(timedelta(hours=1))
    later = results_data.result(world.ada, world.clinician, name="Later result")
    client = browser(world, "guardian")
    client.get(url(world, f"results/{items['glucose'].pk}"))
    assert ResultsSeen.objects.get(guardian=world.guardian).results_seen_at == NOW
    assert "1 new test result" in body(client.get(f"/children/{world.ada.pk}/"))
    client.get(url(world, f"results/{later.pk}"))
    assert ResultsSeen.objects.get(guardian=world.guardian).results_seen_at == NOW + timedelta(hours=1)


def test_a_clinician_reading_moves_no_marker(items: dict[str, Any], world: World) -> None:
    client = browser(world, "clinician")
    assert client.get(url(world, "results")).status_code == 200
    assert client.get(url(world, f"results/{items['glucose'].pk}")).status_code == 200
    assert client.get(url(world, "visit-summaries")).status_code == 200
    assert not ResultsSeen.objects.exists()


def test_the_navigation_of_the_family_pages_links_results_and_summaries(items: dict[str, Any], world: World) -> None:
    text = body(browser(world, "guardian").get(url(world, "appointments")))
    assert f'href="{url(world, "results")}"' in text and f'href="{url(world, "visit-summaries")}"' in text


# -- visit summaries --------------------------------------------------------------------------------


def test_visit_summaries_list_and_text(items: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    listed = client.get(url(world, "visit-summaries"))
    assert listed.status_code == 200
    assert_private(listed)
    text = body(listed)
    assert results_data.SUMMARY_TITLE in text and "5 March 2030" in text and "with a PDF" in text
    assert "Keep the evening dose" not in text  # the text is on the summary's own page
    detail = client.get(url(world, f"visit-summaries/{items['summary'].pk}"))
    text = body(detail)
    assert detail.status_code == 200 and "Keep the evening dose" in text and "Dr. Cleo Clinician" in text
    pdf = url(world, f"visit-summaries/{items['summary'].pk}/pdf")
    assert f'href="{pdf}"' in text


def test_the_pdf_is_an_attachment_kept_nowhere(items: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(url(world, f"visit-summaries/{items['summary'].pk}/pdf"))
    assert response.status_code == 200 and response.content == results_data.PDF
    assert response["Content-Type"] == "application/pdf"
    name = items["summary"].pk
    assert response["Content-Disposition"] == f'attachment; filename="{name}.pdf"'
    assert_private(response)
    read = AuditEvent.objects.filter(action="read", entity_type="DocumentReference", reason="pdf")
    assert read.filter(actor_id=world.guardian.pk).count() == 1


def test_a_summary_without_a_pdf_has_no_link_and_no_download(clock: Any, world: World) -> None:
    text_only = results_data.summary(world.ada, world.clinician, pdf=None)
    client = browser(world, "guardian")
    assert "Download the PDF" not in body(client.get(url(world, f"visit-summaries/{text_only.pk}")))
    assert client.get(url(world, f"visit-summaries/{text_only.pk}/pdf")).status_code == 404


def test_a_held_summary_waits(clock: Any, world: World, settings: Any) -> None:
    settings.PORTAL_RESULT_HOLD = {"visit-summary": 24.0}
    held = results_data.summary(world.ada, world.clinician)
    client = browser(world, "guardian")
    assert results_data.SUMMARY_TITLE not in body(client.get(url(world, "visit-summaries")))
    for page in (f"visit-summaries/{held.pk}", f"visit-summaries/{held.pk}/pdf"):
        assert client.get(url(world, page)).status_code == 404
    assert "Held from the family until" in body(browser(world, "clinician").get(url(world, "visit-summaries")))


# -- the permission matrix --------------------------------------------------------------------------


def _pages(world: World, items: dict[str, Any]) -> list[str]:
    summary = items["summary"].pk
    return [
        url(world, "results"),
        url(world, f"results/{items['glucose'].pk}"),
        url(world, "visit-summaries"),
        url(world, f"visit-summaries/{summary}"),
        url(world, f"visit-summaries/{summary}/pdf"),
    ]


@pytest.mark.parametrize("persona", DENIED)
def test_others_get_404_without_phi_and_the_denial_is_audited(
    items: dict[str, Any], world: World, persona: str
) -> None:
    client = browser(world, persona)
    for target in _pages(world, items):
        before = denials()
        response = client.get(target)
        assert response.status_code == 404, (persona, target)
        assert response["Content-Type"].startswith("text/html")
        assert_no_phi(response)
        assert_private(response)
        assert denials() == before + 1, (persona, target)
    assert not ResultsSeen.objects.exists()


def test_a_clinician_of_another_team_cannot_reach_an_item_through_their_own_patient(
    items: dict[str, Any], world: World
) -> None:
    client = browser(world, "other_clinician")
    own = f"/children/{world.ben.pk}"
    targets = [
        f"{own}/results/{items['glucose'].pk}/",
        f"{own}/visit-summaries/{items['summary'].pk}/",
        f"{own}/visit-summaries/{items['summary'].pk}/pdf/",
    ]
    for target in targets:
        before = denials()
        response = client.get(target)
        assert response.status_code == 404, target
        assert_no_phi(response)
        assert denials() == before + 1
    assert results_data.RESULT_NAME not in body(client.get(f"{own}/results/"))


def test_a_revoked_guardian_is_told_why(items: dict[str, Any], world: World) -> None:
    response = browser(world, "revoked_guardian").get(url(world, "results"))
    assert response.status_code == 404 and "ended by the care team" in body(response)
    assert_no_phi(response)


def test_signed_out_visitors_go_to_sign_in(items: dict[str, Any], world: World) -> None:
    for target in _pages(world, items):
        response = Client().get(target)
        assert response.status_code == 302 and response["Location"] == "/sign-in/", target


def test_only_get_is_answered(items: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    for target in _pages(world, items):
        assert client.post(target).status_code == 405, target


def test_the_results_page_reads_in_a_fixed_number_of_queries(items: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    client.get(url(world, "results"))  # the session and the marker exist
    with CaptureQueriesContext(connection) as few:
        assert client.get(url(world, "results")).status_code == 200
    for index in range(6):
        results_data.result(world.ada, world.clinician, report=items["report"], name=f"Extra {index}")
    with CaptureQueriesContext(connection) as many:
        assert client.get(url(world, "results")).status_code == 200
    assert len(many) == len(few)


def test_a_spanish_speaking_guardian_reads_the_pages_in_spanish(items: dict[str, Any], world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    client = browser(world, "guardian")
    today = body(client.get(f"/children/{world.ada.pk}/"))
    assert "3 resultados de pruebas nuevos" in today and "1 resumen de visita nuevo" in today
    text = body(client.get(url(world, "results")))
    assert "Resultados de pruebas de" in text and "Alto" in text and "Fuera del rango habitual" in text
    text = body(client.get(url(world, f"visit-summaries/{items['summary'].pk}")))
    assert "Descargar el PDF" in text
