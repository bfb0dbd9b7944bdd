"""What the browser tests share: Debian's chromium, the axe-core check and the README screenshots.

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests.conftest import PASSWORD, totp_code

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

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
DESKTOP: Any = {"width": 1366, "height": 900}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _missing() -> str:
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed (/usr/bin/chromium)"
    if not AXE.exists():
        return "the axe-core bundle is not installed (make axe)"
    return ""


def require_browser() -> None:
    """Skip (or, with ``PORTAL_BROWSER_TESTS`` set, fail) when chromium or axe-core is missing."""
    reason = _missing()
    if reason:
        if os.environ.get("PORTAL_BROWSER_TESTS"):
            pytest.fail(f"PORTAL_BROWSER_TESTS is set but {reason}")
        pytest.skip(reason)


def axe_check(page: Any, name: str) -> None:
    """Run axe-core in the page (evaluated over the DevTools protocol, so the page's CSP still holds
    for everything the page itself loads) and require zero violations."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]
    assert violations == [], (name, violations)


def screenshot(page: Any, name: str, device: str = "phone") -> None:
    """Write ``docs/screenshots/<device>-<name>.png`` (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{device}-{name}.png"), full_page=True)


Device = Literal["phone", "desktop"]


def launch(playwright: Playwright) -> Browser:
    """Debian's chromium, headless, with the flags the tests run it with."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)


def new_page(browser: Browser, device: Device = "phone", csp_reports: list[str] | None = None) -> Page:
    """A page in a fresh context: a 390x844 touch phone at 2x, or a 1366x900 desktop. With
    ``csp_reports``, every console message about the Content Security Policy is appended to it."""
    if device == "phone":
        context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    else:
        context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    if csp_reports is not None:
        reports = csp_reports
        page.on(
            "console",
            lambda message: reports.append(message.text) if "Content Security Policy" in message.text else None,
        )
    return page


def submit_sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill in the sign-in form the page shows and send it."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    """Open /sign-in/ and sign in with an email and password (a clinician lands on the code page)."""
    page.goto(f"{base_url}/sign-in/")
    submit_sign_in(page, email, password)


def enter_totp(page: Page) -> None:
    """On the authentication code page: type the authenticator's current code and continue."""
    page.get_by_label("Code from your authenticator app").fill(totp_code())
    page.get_by_role("button", name="Continue").click()
