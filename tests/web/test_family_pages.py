"""The family's pages beyond "today": appointments (confirm, ask to change), the doctors' schedule,
medicines and refill progress, coverage with a card photo, who opened the record, notification
preferences and language, each behind the JSON API's access policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from care.models import Appointment, Coverage, DoseLog, RefillTransition, WorkingHours
from messaging.models import Attachment, Message, NotificationPreference, Thread
from portal.audit import AuditEvent
from portal.models import GuardianLink
from tests import care_data
from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import World
from tests.messaging.data import EXE, JPEG

# Tuesday 10 March 2026, 14:00 UTC = 10:00 in New York (Ada's zone).
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
MEMBER_ID = "MEMBER-CANARY-771"
PHI = (ADA_NAME, ADA_MRN, care_data.INSULIN, "Follow-up", MEMBER_ID, "Bring the glucose meter")


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def care(clock: Any, world: World) -> dict[str, Any]:
    plan = care_data.plan(world.ada, world.clinician)
    visit = care_data.appointment(world.ada, world.clinician)
    past = care_data.appointment(world.ada, world.clinician, hours_from_now=-72, status="fulfilled")
    coverage = care_data.coverage(world.ada, world.guardian, member_id=MEMBER_ID, status="active")
    DoseLog.objects.create(
        plan=plan,
        client_id=uuid.uuid4(),
        status="given",
        occurred_at=datetime(2026, 3, 9, 12, 5, tzinfo=UTC),
        scheduled_for=datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
        recorded_by=world.guardian,
    )
    return {"plan": plan, "visit": visit, "past": past, "coverage": coverage}


def browser(world: World, persona: str, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(world.users[persona])
    return client


def url(world: World, page: str) -> str:
    return f"/children/{world.ada.pk}/{page}/"


def photo_bytes() -> bytes:
    return JPEG


def upload(data: bytes, name: str = "card.jpg") -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def card(**extra: Any) -> dict[str, Any]:
    return {"payer": "Blue River Health", "member_id": "BR-2002", "subscriber_relationship": "parent", **extra}


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]


def assert_no_phi(response: Any) -> None:
    body = response.content.decode()
    for value in PHI:
        assert value not in body, value


def denials() -> int:
    return AuditEvent.objects.filter(action="deny").count()


# -- appointments -----------------------------------------------------------------------------------


def test_appointments_shows_upcoming_and_past_with_actions(care: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(url(world, "appointments"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Coming up" in body and "Past visits" in body
    assert "Bring the glucose meter" in body and "Clinic B, room 4" in body  # full scope: the visit as it is
    assert "Done" in body  # the fulfilled past visit
    assert f"/appointments/{care['visit'].pk}/confirm/" in body
    assert f"/appointments/{care['visit'].pk}/change/" in body
    assert f"/appointments/{care['past'].pk}/confirm/" not in body


def test_a_guardian_confirms_a_visit(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    response = client.post(url(world, f"appointments/{care['visit'].pk}/confirm"))
    assert response.status_code == 302 and response["Location"] == url(world, "appointments")
    care["visit"].refresh_from_db()
    assert care["visit"].guardian_confirmed_at == NOW
    page = client.get(url(world, "appointments")).content.decode()
    assert "attendance is confirmed" in page and "You confirmed you will come." in page
    assert f"/appointments/{care['visit'].pk}/confirm/" not in page


def test_a_past_visit_cannot_be_confirmed_and_says_so(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    client.post(url(world, f"appointments/{care['past'].pk}/confirm"))
    care["past"].refresh_from_db()
    assert care["past"].guardian_confirmed_at is None
    assert "Only a proposed or booked appointment" in client.get(url(world, "appointments")).content.decode()


def test_a_guardian_asks_to_move_a_visit_with_reason_and_times(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    change = url(world, f"appointments/{care['visit'].pk}/change")
    page = client.get(change)
    assert page.status_code == 200 and "Clinic B, room 4" in page.content.decode()
    response = client.post(
        change, {"action": "reschedule", "reason": "School trip", "preferred_times": "Thursday afternoon"}
    )
    assert response.status_code == 302
    care["visit"].refresh_from_db()
    assert care["visit"].change_request == "reschedule"
    assert care["visit"].change_note == "School trip\nPreferred times: Thursday afternoon"
    assert care["visit"].change_requested_by == world.guardian
    assert "asked to move this visit" in client.get(url(world, "appointments")).content.decode()


def test_a_change_request_that_is_not_whole_changes_nothing(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    change = url(world, f"appointments/{care['visit'].pk}/change")
    for data in ({"reason": "no action"}, {"action": "delete"}, {"action": "cancel", "reason": "bad\x00text"}):
        response = client.post(change, data)
        assert response.status_code == 400, data
    assert "Choose one." in client.post(change, {"reason": "x"}).content.decode()
    care["visit"].refresh_from_db()
    assert care["visit"].change_request == "" and care["visit"].change_requested_at is None
    assert client.get(url(world, f"appointments/{care['past'].pk}/change")).status_code == 404  # not upcoming


def test_a_limited_scope_guardian_sees_neutral_visits_and_may_still_confirm(care: dict[str, Any], world: World) -> None:
    GuardianLink.objects.filter(pk=world.links["guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    client = browser(world, "guardian")
    response = client.get(url(world, "appointments"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Follow-up" not in body and "Clinic B" not in body and "glucose" not in body
    assert "/medicines/" not in body  # the clinical pages are not offered
    assert client.post(url(world, f"appointments/{care['visit'].pk}/confirm")).status_code == 302
    care["visit"].refresh_from_db()
    assert care["visit"].guardian_confirmed_at is not None


# -- the doctors' schedule --------------------------------------------------------------------------


def test_the_schedule_shows_the_care_teams_hours_and_open_times(care: dict[str, Any], world: World) -> None:
    for weekday in range(5):
        WorkingHours.objects.create(
            clinician=world.clinician,
            weekday=weekday,
            start=time(9),
            end=time(12),
            location="Clinic B",
            time_zone="America/New_York",
        )
    response = browser(world, "guardian").get(url(world, "schedule"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Dr. Cleo Clinician" in body and "Endocrinology" in body
    assert "Tuesday 10 March, 10:00 – 10:20 · Clinic B" in body  # open now: the next slot starts now
    assert "Next open times" in body and "Clinic hours" in body


def test_the_schedule_at_limited_scope_names_no_department(care: dict[str, Any], world: World) -> None:
    GuardianLink.objects.filter(pk=world.links["guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    WorkingHours.objects.create(clinician=world.clinician, weekday=2, start=time(9), end=time(12), location="Clinic B")
    body = browser(world, "guardian").get(url(world, "schedule")).content.decode()
    assert "Dr. Cleo Clinician" in body
    assert "Endocrinology" not in body and "Clinic B" not in body


# -- medicines and refills --------------------------------------------------------------------------


def test_medicines_show_next_dose_recent_doses_adherence_and_refill_steps(care: dict[str, Any], world: World) -> None:
    refill = care_data.refill(care["plan"], world.guardian, status="approved")
    RefillTransition.objects.create(
        refill=refill, from_status="", to_status="requested", actor=world.guardian, at=NOW - timedelta(days=1)
    )
    RefillTransition.objects.create(
        refill=refill, from_status="requested", to_status="approved", actor=world.clinician, at=NOW - timedelta(hours=2)
    )
    response = browser(world, "guardian").get(url(world, "medicines"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert care_data.INSULIN in body
    assert "Next dose:" in body and "Tuesday 10 March, 20:00" in body  # 08:00 is overdue, 20:00 is next
    assert "Monday 9 March, 08:05" in body  # the recorded dose, in New York time
    assert "Last 7 days" in body and "Last 30 days" in body and "7%</strong> (1 of 14 given)" in body
    assert 'aria-current="step"' in body and "Sent to the pharmacy" in body
    assert "9 March, 10:00: Requested" in body and "10 March, 08:00: Approved" in body


# -- coverage ---------------------------------------------------------------------------------------


def test_coverage_shows_the_card_on_file(care: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").get(url(world, "coverage"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Acme Health" in body and MEMBER_ID in body and "Active" in body
    assert 'accept="image/*" capture="environment"' in body and 'enctype="multipart/form-data"' in body


def test_a_new_card_with_a_photo_goes_to_the_hospital(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    response = client.post(url(world, "coverage"), {**card(), "photo": upload(photo_bytes())})
    assert response.status_code == 302 and response["Location"] == url(world, "coverage")
    pending = Coverage.objects.get(status="pending")
    assert pending.payer == "Blue River Health" and pending.member_id == "BR-2002"
    assert pending.submitted_by == world.guardian
    attachment = Attachment.objects.get()
    assert attachment.content_type == "image/jpeg" and attachment.message is not None
    thread = Thread.objects.get()
    assert thread.topic == "billing" and thread.child == world.ada
    assert "PHI" not in thread.subject and MEMBER_ID not in Message.objects.get().body
    page = client.get(url(world, "coverage")).content.decode()
    assert "Blue River Health" in page and "Waiting for the hospital to check it" in page


def test_a_new_card_without_a_photo_is_accepted_too(care: dict[str, Any], world: World) -> None:
    response = browser(world, "guardian").post(url(world, "coverage"), card(period_start="2026-04-01"))
    assert response.status_code == 302
    assert Coverage.objects.filter(status="pending").count() == 1
    assert not Thread.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"photo": "not-a-file"}, "Only JPEG, PNG and PDF files can be attached."),
        ({"photo": EXE}, "Only JPEG, PNG and PDF files"),
        ({"photo": b"polyglot"}, "The file contains another file or a script."),
        ({"member_id": ""}, "This field is required."),
        ({"payer": "Acme\x07"}, "Remove the control characters"),
        ({"payer": "Acme\x00"}, "Null characters are not allowed."),
        ({"period_start": "2026-05-01", "period_end": "2026-04-01"}, "The end date must come after the start date."),
        ({"period_start": "1901-01-01"}, "This date is not possible for a card."),
    ],
)
def test_a_bad_card_is_refused_in_words_and_nothing_is_written(
    care: dict[str, Any], world: World, data: dict[str, Any], message: str
) -> None:
    fields = card(**{key: value for key, value in data.items() if key != "photo"})
    if "photo" in data:
        raw = data["photo"]
        if raw == b"polyglot":  # a real JPEG hiding a script before its end marker
            jpeg = photo_bytes()
            raw = jpeg[:-2] + b"<script>alert(1)</script>" + jpeg[-2:]
        fields["photo"] = upload(raw.encode() if isinstance(raw, str) else raw)
    response = browser(world, "guardian").post(url(world, "coverage"), fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Coverage.objects.filter(status="pending").exists()
    assert not Attachment.objects.exists() and not Thread.objects.exists()


def test_a_too_large_photo_is_refused(care: dict[str, Any], world: World, settings: Any) -> None:
    settings.PORTAL_ATTACHMENT_MAX_BYTES = 100
    response = browser(world, "guardian").post(url(world, "coverage"), {**card(), "photo": upload(photo_bytes())})
    assert response.status_code == 400 and "at most 10 MB" in response.content.decode()
    assert not Coverage.objects.filter(status="pending").exists() and not Attachment.objects.exists()


def test_the_care_team_sees_coverage_but_cannot_submit_for_the_family(care: dict[str, Any], world: World) -> None:
    client = browser(world, "clinician")
    page = client.get(url(world, "coverage"))
    assert page.status_code == 200 and MEMBER_ID in page.content.decode()
    assert 'capture="environment"' not in page.content.decode()
    before = denials()
    assert client.post(url(world, "coverage"), card()).status_code == 404
    assert denials() == before + 1
    assert not Coverage.objects.filter(status="pending").exists()


# -- who opened the record --------------------------------------------------------------------------


def test_the_access_log_names_who_opened_the_record(care: dict[str, Any], world: World) -> None:
    browser(world, "clinician").get(url(world, "medicines"))
    response = browser(world, "guardian").get(url(world, "access-log"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Dr. Cleo Clinician" in body and "care team (primary clinician)" in body and "Viewed" in body


# -- limited scope: clinical pages explain instead -------------------------------------------------


@pytest.mark.parametrize("page", ["medicines", "coverage", "access-log"])
def test_a_limited_scope_guardian_is_told_why_a_clinical_page_is_closed(
    care: dict[str, Any], world: World, page: str
) -> None:
    GuardianLink.objects.filter(pk=world.links["guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    before = denials()
    response = browser(world, "guardian").get(url(world, page))
    assert response.status_code == 403
    assert "is limited" in response.content.decode()
    assert care_data.INSULIN not in response.content.decode() and MEMBER_ID not in response.content.decode()
    assert denials() == before + 1
    posted = browser(world, "guardian").post(url(world, "coverage"), card())
    assert posted.status_code == 403 and not Coverage.objects.filter(status="pending").exists()


# -- notification preferences and language ----------------------------------------------------------


def test_notification_preferences_are_shown_and_saved(world: World) -> None:
    client = browser(world, "guardian")
    page = client.get("/account/")
    assert page.status_code == 200
    assert_private(page)
    assert 'name="email" id="id_email" checked' in page.content.decode()
    response = client.post("/account/notifications/", {"sms": "on", "quiet_start": "21:30", "quiet_end": "07:00"})
    assert response.status_code == 302 and response["Location"] == "/account/"
    pref = NotificationPreference.objects.get(user=world.guardian)
    assert (pref.email, pref.sms, pref.quiet_start, pref.quiet_end) == (False, True, time(21, 30), time(7, 0))
    body = client.get("/account/").content.decode()
    assert "notification choices are saved" in body and 'value="21:30"' in body


@pytest.mark.parametrize(
    "data",
    [{"quiet_start": "21:30"}, {"quiet_start": "25:00", "quiet_end": "07:00"}, {"email": "on", "quiet_end": "x"}],
)
def test_bad_preferences_are_refused_and_nothing_is_saved(world: World, data: dict[str, str]) -> None:
    response = browser(world, "guardian").post("/account/notifications/", data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Give both quiet-hour times" in body or "Enter a time such as 21:30." in body
    assert not NotificationPreference.objects.filter(user=world.guardian).exists()


def test_switching_the_language_switches_the_pages(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian")
    response = client.post("/account/language/", {"language": "es"})
    assert response.status_code == 302
    world.guardian.refresh_from_db()
    assert world.guardian.preferred_language == "es"
    page = client.get("/account/")
    body = page.content.decode()
    assert page["Content-Language"] == "es" and "Idioma cambiado." in body and "Ajustes" in body
    appointments = client.get(url(world, "appointments")).content.decode()
    assert "Próximas" in appointments and "Confirmar" in appointments
    assert client.post("/account/language/", {"language": "fr"}).status_code == 302
    world.guardian.refresh_from_db()
    assert world.guardian.preferred_language == "es"


# -- CSRF -------------------------------------------------------------------------------------------


def test_every_form_needs_its_csrf_token(care: dict[str, Any], world: World) -> None:
    client = browser(world, "guardian", csrf=True)
    posts = [
        (url(world, f"appointments/{care['visit'].pk}/confirm"), {}),
        (url(world, f"appointments/{care['visit'].pk}/change"), {"action": "cancel"}),
        (url(world, "coverage"), card()),
        ("/account/notifications/", {"sms": "on"}),
        ("/account/language/", {"language": "es"}),
    ]
    for target, data in posts:
        assert client.post(target, data).status_code == 403, target
    care["visit"].refresh_from_db()
    assert care["visit"].guardian_confirmed_at is None and care["visit"].change_request == ""
    assert not Coverage.objects.filter(status="pending").exists()
    assert not NotificationPreference.objects.exists()
    world.guardian.refresh_from_db()
    assert world.guardian.preferred_language != "es"


# -- the permission matrix --------------------------------------------------------------------------

DENIED = ("other_guardian", "revoked_guardian", "other_clinician", "stranger")


def _requests(world: World, care: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    visit = care["visit"].pk
    return [
        ("get", url(world, "appointments"), {}),
        ("post", url(world, f"appointments/{visit}/confirm"), {}),
        ("get", url(world, f"appointments/{visit}/change"), {}),
        ("post", url(world, f"appointments/{visit}/change"), {"action": "cancel"}),
        ("get", url(world, "schedule"), {}),
        ("get", url(world, "medicines"), {}),
        ("get", url(world, "coverage"), {}),
        ("post", url(world, "coverage"), card()),
        ("get", url(world, "access-log"), {}),
    ]


@pytest.mark.parametrize("persona", DENIED)
def test_others_get_404_without_phi_and_the_denial_is_audited(care: dict[str, Any], world: World, persona: str) -> None:
    client = browser(world, persona)
    for method, target, data in _requests(world, care):
        before = denials()
        response = getattr(client, method)(target, data)
        assert response.status_code == 404, (persona, method, target)
        assert_no_phi(response)
        assert_private(response)
        assert denials() == before + 1, (persona, target)
    care["visit"].refresh_from_db()
    assert care["visit"].guardian_confirmed_at is None and care["visit"].change_request == ""
    assert not Coverage.objects.filter(status="pending").exists()
    assert Appointment.objects.filter(change_requested_at__isnull=False).count() == 0


def test_a_revoked_guardian_is_told_why_on_a_childs_page(care: dict[str, Any], world: World) -> None:
    response = browser(world, "revoked_guardian").get(url(world, "appointments"))
    assert response.status_code == 404
    assert "ended by the care team" in response.content.decode()
    assert_no_phi(response)


def test_signed_out_visitors_go_to_sign_in(care: dict[str, Any], world: World) -> None:
    targets = [*_requests(world, care), ("get", "/account/", {}), ("post", "/account/language/", {"language": "es"})]
    for method, target, data in targets:
        response = getattr(Client(), method)(target, data)
        assert response.status_code == 302 and response["Location"] == "/sign-in/", target


def test_account_pages_show_only_the_accounts_own_settings(care: dict[str, Any], world: World) -> None:
    NotificationPreference.objects.create(user=world.guardian, email=False, sms=True, quiet_start=time(22))
    response = browser(world, "stranger").get("/account/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="22:00"' not in body and 'name="email" id="id_email" checked' in body
    assert_no_phi(response)


def test_the_today_page_links_to_the_other_pages(care: dict[str, Any], world: World) -> None:
    body = browser(world, "guardian").get(f"/children/{world.ada.pk}/").content.decode()
    for page in ("appointments", "schedule", "medicines", "coverage", "access-log"):
        assert url(world, page) in body, page
    assert 'href="/account/"' in body


def test_the_appointments_page_reads_in_a_fixed_number_of_queries(care: dict[str, Any], world: World) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = browser(world, "guardian")
    client.get(url(world, "appointments"))  # warm the session
    with CaptureQueriesContext(connection) as few:
        assert client.get(url(world, "appointments")).status_code == 200
    for hours in range(60, 60 + 24 * 8, 24):
        care_data.appointment(world.ada, world.clinician, hours_from_now=hours)
        care_data.appointment(world.ada, world.clinician, hours_from_now=-hours, status="fulfilled")
    with CaptureQueriesContext(connection) as many:
        assert client.get(url(world, "appointments")).status_code == 200
    assert len(many) == len(few)
