"""Results, visit summaries and sign-in by emailed code in a real browser: Debian's chromium driven by
Playwright on a 390x844 phone.

A guardian asks for a sign-in code, types it from the email, sees the new results counted on the
"today" page, opens the results (grouped by report, flags in words), one result with the care team's
note, the visit summaries and one summary with its PDF download; axe-core (WCAG 2.x A and AA rules)
finds no violation on any page and the browser reports no Content-Security-Policy violation.
Screenshots go to docs/screenshots/ (README).

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import time_machine
from django.core import mail

from care.services import results as results_service
from portal.access import Capability, child_for
from tests.care import results_data
from tests.conftest import World
from tests.web.browser import axe_check, launch, new_page, require_browser, screenshot

# Wednesday 6 March 2030, 15:00 UTC = 10:00 in New York (Ada's zone); the clock runs on from there.
NOW = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)


def _mailed_code() -> str:
    found = re.search(r"^\s*([A-Z0-9]{4,}(?:-[A-Z0-9]{4,})*)\s*$", str(mail.outbox[-1].body), re.MULTILINE)
    assert found is not None
    return found.group(1)


def _items(world: World) -> dict[str, Any]:
    report, _ = results_service.report_record(
        actor=None,
        child=world.ada,
        source_id="report-1",
        name="Metabolic panel",
        conclusion="Within the target range.",
        ordering_clinician=world.clinician,
    )
    glucose = results_data.result(world.ada, world.clinician, report=report, name="Blood sugar (glucose)")
    results_data.result(
        world.ada,
        world.clinician,
        report=report,
        name="Potassium",
        value_quantity=Decimal("6.1"),
        range_low=Decimal("3.5"),
        range_high=Decimal("5.0"),
        interpretation="high",
    )
    access = child_for(world.clinician, world.ada.pk, Capability.TREAT)
    results_service.result_comment_add(
        actor=world.clinician,
        access=access,
        result_id=glucose.pk,
        body="Ada's blood sugar is where we want it. Keep the same evening dose.",
    )
    summary = results_data.summary(world.ada, world.clinician, title="Diabetes review")
    return {"glucose": glucose, "summary": summary}


def test_a_guardian_signs_in_by_code_and_reads_results_on_a_phone(transactional_db: Any, live_server: Any) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        items = _items(world)
        base = live_server.url
        child = f"{base}/children/{world.ada.pk}"
        reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = new_page(browser, "phone", reports)
            page.goto(f"{base}/sign-in/")
            page.get_by_role("link", name="Email me a sign-in code").click()
            page.get_by_role("heading", name="Sign in with a code").wait_for()
            axe_check(page, "sign-in-email")
            screenshot(page, "sign-in-email")
            page.get_by_label("Email").fill("guardian@example.org")
            page.get_by_role("button", name="Email me a sign-in code").click()
            page.get_by_role("heading", name="Sign-in code").wait_for()
            axe_check(page, "sign-in-email-code")
            screenshot(page, "sign-in-email-code")
            page.get_by_label("Code from the email").fill(_mailed_code())
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Results and visit summaries").wait_for()
            assert page.url == f"{child}/"
            assert page.get_by_role("link", name="2 new test results").is_visible()
            axe_check(page, "today-new-results")
            screenshot(page, "today-new-results")

            page.get_by_role("link", name="2 new test results").click()
            page.get_by_role("heading", name=f"Test results for {world.ada.name}").wait_for()
            assert page.get_by_text("High", exact=True).is_visible()
            axe_check(page, "results")
            screenshot(page, "results")

            page.get_by_role("link", name="Blood sugar (glucose)").click()
            page.get_by_role("heading", name="From the care team").wait_for()
            assert page.get_by_text("Keep the same evening dose.").is_visible()
            axe_check(page, "result")
            screenshot(page, "result")

            page.goto(f"{child}/visit-summaries/")
            page.get_by_role("heading", name=f"Visit summaries for {world.ada.name}").wait_for()
            axe_check(page, "visit-summaries")
            screenshot(page, "visit-summaries")
            page.get_by_role("link", name="Diabetes review").click()
            page.get_by_role("link", name="Download the PDF").wait_for()
            axe_check(page, "visit-summary")
            screenshot(page, "visit-summary")
            with page.expect_download() as download:
                page.get_by_role("link", name="Download the PDF").click()
            assert download.value.suggested_filename == f"{items['summary'].pk}.pdf"

            page.goto(f"{child}/")
            page.get_by_text("Nothing new since you last looked.").wait_for()
            browser.close()
        assert reports == []
