"""The care team's pages in a real browser: Debian's chromium driven by Playwright on a desktop viewport.

A guardian has asked for a refill; a clinician signs in with a password and the authenticator code, lands
on the care team's page, opens the refill queue and approves the request. axe-core (WCAG 2.x A and AA
rules, 2.2 included) finds no violation on any page, and the browser reports no Content-Security-Policy
violation. Desktop screenshots of each page go to docs/screenshots/ (README).

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from care.models import MedicationPlan, RefillRequest
from portal.audit import AuditEvent
from tests import care_data
from tests.conftest import PASSWORD, World, totp_code
from tests.web.browser import CHROMIUM, DESKTOP, LAUNCH_ARGS, axe_check, require_browser, screenshot

# Tuesday 10 March 2026, 14:00 UTC; the clock runs on from there (the TOTP code is computed from it).
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_a_clinician_at_a_desk_approves_the_refill_a_guardian_requested(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        plan = care_data.plan(world.ada, world.clinician)
        refill = care_data.refill(plan, world.guardian, note="We travel on Friday")
        # Playwright's sync API runs an event loop in this thread; the ORM calls below happen while no
        # browser call is in flight.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        csp_reports: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            page.on(
                "console",
                lambda message: csp_reports.append(message.text) if "Content Security Policy" in message.text else None,
            )
            page.goto(f"{live_server.url}/")
            assert page.url.endswith("/sign-in/")
            page.get_by_label("Email").fill("clinician@example.org")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            page.wait_for_url("**/sign-in/code/")
            axe_check(page, "authentication code")
            screenshot(page, "sign-in-code", "desktop")
            page.get_by_label("Code from your authenticator app").fill(totp_code())
            page.get_by_role("button", name="Continue").click()

            page.get_by_role("heading", name="Welcome, Dr. Cleo Clinician").wait_for()
            axe_check(page, "care team landing")
            screenshot(page, "care-landing", "desktop")

            page.get_by_role("link", name="Refill queue").click()
            page.get_by_role("heading", name="Refill queue").wait_for()
            page.get_by_text("We travel on Friday").wait_for()
            axe_check(page, "refill queue")
            screenshot(page, "care-refills", "desktop")

            page.get_by_role("button", name="Approve").click()
            page.get_by_text("Refill request updated: Approved.").wait_for()
            axe_check(page, "refill queue after approval")
            screenshot(page, "care-refills-approved", "desktop")
            assert page.get_by_role("button", name="Mark: Sent to the pharmacy").count() == 1
            browser.close()

        assert csp_reports == []
        approved = RefillRequest.objects.get(pk=refill.pk)
        assert approved.status == "approved" and approved.decided_by_id == world.clinician.pk
        assert MedicationPlan.objects.get(pk=plan.pk).refills_remaining == 2
        assert AuditEvent.objects.filter(action="update", reason="refill:requested->approved").count() == 1
