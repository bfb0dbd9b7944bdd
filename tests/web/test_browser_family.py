"""The family's other pages in a real browser: Debian's chromium driven by Playwright on a 390x844 phone.

A guardian opens appointments (and confirms one), the change request form, the doctors' schedule,
medicines with a refill in progress, insurance (and sends a new card with a photo), who opened the
record and the settings; axe-core (WCAG 2.x A and AA rules, 2.2 included) finds no violation on any
of them and the browser reports no Content-Security-Policy violation. A Spanish-preferring guardian
sees Spanish; a revoked guardian is told why there is nothing to show. Screenshots of each page go to
docs/screenshots/ (README).

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import time_machine

from care.models import Appointment, Coverage, RefillTransition, WorkingHours
from messaging.models import Attachment
from tests import care_data
from tests.conftest import World
from tests.messaging.data import JPEG
from tests.web.browser import axe_check, launch, new_page, require_browser, screenshot, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FilePayload, Page

# Tuesday 10 March 2026, 14:00 UTC = 10:00 in New York (Ada's zone); the clock runs on from there.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def _sign_in(browser: Browser, base: str, email: str, reports: list[str]) -> Page:
    page = new_page(browser, "phone", reports)
    sign_in(page, base, email)
    page.wait_for_load_state()
    return page


def _visit(page: Any, url: str, heading: str, name: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    axe_check(page, name)
    screenshot(page, name)


def test_a_guardian_on_a_phone_visits_every_family_page(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        plan = care_data.plan(world.ada, world.clinician)
        visit = care_data.appointment(world.ada, world.clinician)
        care_data.appointment(world.ada, world.clinician, hours_from_now=-72, status="fulfilled")
        care_data.coverage(world.ada, world.guardian, status="active")
        for weekday in range(5):
            WorkingHours.objects.create(
                clinician=world.clinician,
                weekday=weekday,
                start=time(9),
                end=time(12),
                location="Clinic B",
                time_zone="America/New_York",
            )
        refill = care_data.refill(plan, world.guardian, status="approved")
        RefillTransition.objects.create(
            refill=refill, from_status="", to_status="requested", actor=world.guardian, at=NOW - timedelta(days=1)
        )
        RefillTransition.objects.create(
            refill=refill, from_status="requested", to_status="approved", actor=world.clinician, at=NOW
        )
        world.co_guardian.preferred_language = "es"
        world.co_guardian.save(update_fields=["preferred_language"])
        child = f"{live_server.url}/children/{world.ada.pk}"
        # Playwright's sync API runs an event loop in this thread; the ORM calls below happen while no
        # browser call is in flight.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)

            page = _sign_in(browser, live_server.url, "guardian@example.org", reports)
            page.get_by_role("link", name="Appointments").click()
            page.get_by_role("heading", name="Coming up").wait_for()
            axe_check(page, "appointments")
            screenshot(page, "appointments")
            page.get_by_role("button", name="Confirm").first.click()
            page.get_by_text("your attendance is confirmed").wait_for()
            axe_check(page, "appointments after confirming")
            page.get_by_role("link", name="Ask to change").first.click()
            page.get_by_role("heading", name="Ask to change a visit").wait_for()
            axe_check(page, "appointment-change")
            screenshot(page, "appointment-change")

            _visit(page, f"{child}/schedule/", "The doctors' schedule", "schedule")
            _visit(page, f"{child}/medicines/", "Medicines and refills", "medicines")
            _visit(page, f"{child}/coverage/", "Insurance", "coverage")
            page.get_by_label("Insurance company").fill("Blue River Health")
            page.get_by_label("Member ID").fill("BR-2002")
            card: FilePayload = {"name": "card.jpg", "mimeType": "image/jpeg", "buffer": JPEG}
            page.set_input_files("#id_photo", files=[card])
            page.get_by_role("button", name="Send the new card").click()
            page.get_by_text("The hospital will check the new card.").wait_for()
            axe_check(page, "coverage after sending a card")
            _visit(page, f"{child}/access-log/", "Who opened the record", "access-log")
            _visit(page, f"{live_server.url}/account/", "Settings", "settings")
            page.context.close()

            spanish = _sign_in(browser, live_server.url, "coguardian@example.org", reports)
            spanish.goto(f"{child}/appointments/")
            spanish.get_by_role("heading", name="Próximas").wait_for()
            assert spanish.locator("html").get_attribute("lang") == "es"
            assert spanish.get_by_role("button", name="Confirmar").count() == 0  # already confirmed
            axe_check(spanish, "appointments in Spanish")
            screenshot(spanish, "appointments-es")
            spanish.context.close()

            revoked = _sign_in(browser, live_server.url, "revoked@example.org", reports)
            revoked.get_by_text("ended by the care team").wait_for()
            revoked.goto(f"{child}/appointments/")
            revoked.get_by_role("heading", name="Not found").wait_for()
            assert "ended by the care team" in revoked.content()
            axe_check(revoked, "revoked")
            screenshot(revoked, "revoked")
            browser.close()

        assert reports == []
        visit.refresh_from_db()
        assert visit.guardian_confirmed_at is not None
        assert Appointment.objects.filter(guardian_confirmed_at__isnull=False).count() == 1
        pending = Coverage.objects.get(status="pending")
        assert pending.payer == "Blue River Health" and pending.submitted_by_id == world.guardian.pk
        assert Attachment.objects.get().content_type == "image/jpeg"
