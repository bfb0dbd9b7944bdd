"""The family web app in a real browser: Debian's chromium driven by Playwright on a 390x844 phone.

A guardian signs in, sees today, logs a dose as given and requests a refill; axe-core (WCAG 2.x A and
AA rules, 2.2 included) finds no violation on any of those pages, and the browser reports no
Content-Security-Policy violation. Screenshots of each page go to docs/screenshots/ (README).

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from care.models import DoseLog, RefillRequest
from tests import care_data
from tests.conftest import PASSWORD, World

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: Any = {"width": 390, "height": 844}  # playwright's ViewportSize
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# Tuesday 10 March 2026, 14:00 UTC = 10:00 in New York (Ada's zone); the clock runs on from there.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def _missing() -> str:
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed (/usr/bin/chromium)"
    if not AXE.exists():
        return "the axe-core bundle is not installed (make axe)"
    return ""


@pytest.fixture
def browser_ready() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("PORTAL_BROWSER_TESTS"):
            pytest.fail(f"PORTAL_BROWSER_TESTS is set but {reason}")
        pytest.skip(reason)


def _axe(page: Any, name: str) -> None:
    """Run axe-core in the page (evaluated over the DevTools protocol, so the page's CSP still holds
    for everything the page itself loads) and require zero violations."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]
    assert violations == [], (name, violations)


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"phone-{name}.png"), full_page=True)


@pytest.mark.usefixtures("browser_ready")
def test_a_guardian_on_a_phone_signs_in_logs_a_dose_and_requests_a_refill(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
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
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.on(
                "console",
                lambda message: csp_reports.append(message.text) if "Content Security Policy" in message.text else None,
            )
            page.goto(f"{live_server.url}/")
            assert page.url.endswith("/sign-in/")
            _axe(page, "sign-in")
            _shot(page, "sign-in")
            page.get_by_label("Email").fill("guardian@example.org")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            page.wait_for_url(f"**/children/{world.ada.pk}/")
            page.get_by_role("heading", name="Doses due").wait_for()
            _axe(page, "today")
            _shot(page, "today")
            page.locator("li.dose").first.get_by_role("button", name="Given").click()
            page.get_by_text("Dose recorded as given.").wait_for()
            _axe(page, "today after a dose")

            page.get_by_role("link", name="Request a refill").first.click()
            page.get_by_role("heading", name="Request a refill").wait_for()
            _axe(page, "refill")
            _shot(page, "refill")
            page.get_by_label("Pharmacy").fill("Corner Pharmacy")
            page.get_by_role("button", name="Send the request").click()
            page.get_by_text("Refill requested.").wait_for()
            _axe(page, "today after a refill")
            _shot(page, "today-after-refill")
            browser.close()

        assert csp_reports == []
        dose = DoseLog.objects.get(plan=plan)
        assert dose.status == "given" and dose.recorded_by_id == world.guardian.pk
        refill = RefillRequest.objects.get(plan=plan)
        assert refill.pharmacy == "Corner Pharmacy" and refill.requested_by_id == world.guardian.pk
