"""The family web app in a real browser: Debian's chromium driven by Playwright on a 390x844 phone.

A guardian signs in, sees today, logs a dose as given and requests a refill; axe-core (WCAG 2.x A and
AA rules, 2.2 included) finds no violation on any of those pages, and the browser reports no
Content-Security-Policy violation. Screenshots of each page go to docs/screenshots/ (README).

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from care.models import DoseLog, RefillRequest
from tests import care_data
from tests.conftest import World
from tests.web.browser import axe_check, launch, new_page, require_browser, screenshot, submit_sign_in

# Tuesday 10 March 2026, 14:00 UTC = 10:00 in New York (Ada's zone); the clock runs on from there.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_a_guardian_on_a_phone_signs_in_logs_a_dose_and_requests_a_refill(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        plan = care_data.plan(world.ada, world.clinician)
        care_data.appointment(world.ada, world.clinician)
        # Playwright's sync API runs an event loop in this thread; the ORM calls below happen while no
        # browser call is in flight.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        csp_reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = new_page(browser, "phone", csp_reports)
            page.goto(f"{live_server.url}/")
            assert page.url.endswith("/sign-in/")
            axe_check(page, "sign-in")
            screenshot(page, "sign-in")
            submit_sign_in(page, "guardian@example.org")

            page.wait_for_url(f"**/children/{world.ada.pk}/")
            page.get_by_role("heading", name="Doses due").wait_for()
            axe_check(page, "today")
            screenshot(page, "today")
            page.locator("li.dose").first.get_by_role("button", name="Given").click()
            page.get_by_text("Dose recorded as given.").wait_for()
            axe_check(page, "today after a dose")

            page.get_by_role("link", name="Request a refill").first.click()
            page.get_by_role("heading", name="Request a refill").wait_for()
            axe_check(page, "refill")
            screenshot(page, "refill")
            page.get_by_label("Pharmacy").fill("Corner Pharmacy")
            page.get_by_role("button", name="Send the request").click()
            page.get_by_text("Refill requested.").wait_for()
            axe_check(page, "today after a refill")
            screenshot(page, "today-after-refill")
            browser.close()

        assert csp_reports == []
        dose = DoseLog.objects.get(plan=plan)
        assert dose.status == "given" and dose.recorded_by_id == world.guardian.pk
        refill = RefillRequest.objects.get(plan=plan)
        assert refill.pharmacy == "Corner Pharmacy" and refill.requested_by_id == world.guardian.pk
