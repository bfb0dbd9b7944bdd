"""The care team's pages and the peer groups in a real browser: Debian's chromium driven by Playwright.

A guardian has asked for a refill; a clinician signs in with a password and the authenticator code, lands
on the care team's page, opens the refill queue and approves the request. A guardian on a phone finds a
group matching her child, joins under a pseudonym and posts; the clinician who moderates the group
approves the post from the moderation queue. axe-core (WCAG 2.x A and AA
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
from messaging.groups.models import Group, Membership, Post
from portal.audit import AuditEvent
from tests import care_data
from tests.conftest import World
from tests.web.browser import (
    axe_check,
    enter_totp,
    launch,
    new_page,
    require_browser,
    screenshot,
    sign_in,
    submit_sign_in,
)

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
            browser = launch(playwright)
            page = new_page(browser, "desktop", csp_reports)
            page.goto(f"{live_server.url}/")
            assert page.url.endswith("/sign-in/")
            submit_sign_in(page, "clinician@example.org")

            page.wait_for_url("**/sign-in/code/")
            axe_check(page, "authentication code")
            screenshot(page, "sign-in-code", "desktop")
            enter_totp(page)

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


def test_a_guardian_on_a_phone_joins_a_group_and_a_moderator_approves_the_first_post(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        group = Group.objects.create(
            name="Type 1 diabetes, under 10s",
            description="Parents of young children with diabetes",
            condition_codes=["46635009"],
            created_by=world.admin,
            rules="Be kind. No medical advice.",
        )
        Membership.objects.create(
            group=group, user=world.clinician, pseudonym="Dr C", role="moderator", kind="clinician"
        )
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        csp_reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = new_page(browser, "phone", csp_reports)
            sign_in(page, live_server.url, "guardian@example.org")
            page.wait_for_url(f"**/children/{world.ada.pk}/")

            page.get_by_role("link", name="Groups").click()
            page.get_by_text("Matches your child's care").wait_for()
            axe_check(page, "groups")
            screenshot(page, "groups")
            page.get_by_role("link", name="Type 1 diabetes, under 10s").click()
            page.get_by_label("Your pseudonym in this group").fill("Sunny Mum")
            axe_check(page, "group before joining")
            page.get_by_role("button", name="Join").click()
            page.get_by_text("Welcome to the group.").wait_for()
            page.get_by_label("Write a post as Sunny Mum").fill("Night lows got better with an earlier snack")
            page.get_by_role("button", name="Post", exact=True).click()
            page.get_by_text("once a moderator has read it").wait_for()
            axe_check(page, "group after posting")
            screenshot(page, "group")

            moderator = new_page(browser, "desktop")
            sign_in(moderator, live_server.url, "clinician@example.org")
            moderator.wait_for_url("**/sign-in/code/")
            enter_totp(moderator)
            moderator.get_by_role("link", name="Moderation: Type 1 diabetes, under 10s").click()
            moderator.get_by_text("Night lows got better with an earlier snack").wait_for()
            axe_check(moderator, "moderation queue")
            screenshot(moderator, "group-moderation", "desktop")
            moderator.get_by_role("button", name="Approve").click()
            moderator.get_by_text("Post approved.").wait_for()
            axe_check(moderator, "moderation queue after approval")
            browser.close()

        assert csp_reports == []
        post = Post.objects.get(group=group)
        assert post.status == "published" and post.moderated_by_id == world.clinician.pk
        assert post.author.pseudonym == "Sunny Mum"
