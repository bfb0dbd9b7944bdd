"""The account pages in a real browser on a 390x844 phone: a guardian whose invitation was texted to
her verifies her phone (the code read from the SMS backend), is refused an invitation code with the
reason shown, redeems the right one, and looks at her sessions. axe-core finds no violation on any
of these pages and the browser reports no Content-Security-Policy violation.

Runs under the same conditions as ``test_browser.py`` (``tests/web/browser.py``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from interop.context import import_actor
from messaging.sms import LocmemSmsBackend
from portal import services
from portal.models import GuardianLink, User
from tests.conftest import World
from tests.web.browser import axe_check, launch, new_page, require_browser, screenshot, sign_in

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_a_guardian_verifies_her_phone_and_redeems_a_texted_invitation(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        invitation, code = services.invitation_create_for_system(
            actor=import_actor(),
            child=world.ben,
            relationship="mother",
            recipient_phone="+1 312 555 0142",
            reason="ehr_import",
        )
        LocmemSmsBackend.outbox.clear()
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        csp_reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = new_page(browser, "phone", csp_reports)
            sign_in(page, live_server.url, "stranger@example.org")
            page.wait_for_url(f"{live_server.url}/")

            # The code before the phone is verified: refused, with the reason and the way out.
            page.get_by_role("link", name="Invitation code").click()
            page.get_by_role("heading", name="Redeem an invitation").wait_for()
            axe_check(page, "redeem")
            page.get_by_label("Invitation code").fill(code)
            page.get_by_role("button", name="Redeem").click()
            page.get_by_role("alert").get_by_text("sent by text message").wait_for()
            axe_check(page, "redeem refused")
            screenshot(page, "account-redeem-refused")

            page.get_by_role("link", name="Verify my phone number").click()
            page.get_by_role("heading", name="My phone number").wait_for()
            axe_check(page, "phone")
            page.get_by_label("Mobile phone number").fill("(312) 555-0142")
            page.get_by_role("button", name="Save and send a code").click()
            page.get_by_role("heading", name="Verify my phone number").wait_for()
            axe_check(page, "phone verify")
            screenshot(page, "account-phone-verify")
            [text] = LocmemSmsBackend.outbox
            assert text.to == "+13125550142"
            found = re.search(r"\b(\d{6})\b", text.body)
            assert found
            page.get_by_label("Code from the text message").fill(found.group(1))
            page.get_by_role("button", name="Verify", exact=True).click()
            page.get_by_text("Your phone number is verified.").wait_for()
            axe_check(page, "phone verified")

            page.get_by_role("link", name="Invitation code").click()
            page.get_by_label("Invitation code").fill(code)
            page.get_by_role("button", name="Redeem").click()
            page.get_by_text("Invitation accepted.").wait_for()
            axe_check(page, "after redeeming")

            page.get_by_role("link", name="Sessions").click()
            page.get_by_role("heading", name="My sessions").wait_for()
            page.get_by_text("this device").wait_for()
            axe_check(page, "sessions")
            screenshot(page, "account-sessions")
            browser.close()

        assert csp_reports == []
        link = GuardianLink.objects.get(pk=invitation.link_id)
        assert (link.guardian_id, link.status) == (world.stranger.pk, GuardianLink.Status.ACTIVE)
        assert User.objects.get(pk=world.stranger.pk).phone_verified_at is not None
