"""The installable app in a real browser on a 390x844 phone: the service worker registers with scope
"/", keeps static files and the offline page only (never a page a guardian opened), shows the offline
page when the network is gone, and after sign-out nothing but static files is left. The settings page
with its "Notifications on this device" section and the offline page pass axe-core, and the browser
reports no Content-Security-Policy violation.

Runs under the same conditions as ``test_browser.py`` (``tests/web/browser.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from messaging import push
from tests.canaries import ADA_NAME
from tests.conftest import World
from tests.messaging.test_push import TEST_VAPID_PRIVATE
from tests.web.browser import axe_check, launch, new_page, require_browser, submit_sign_in
from web import pwa

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
CACHED_PATHS = """async () => {
  const paths = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) paths.push(new URL(request.url).pathname);
  }
  return paths.sort();
}"""
CONTROLLED = """() => navigator.serviceWorker.ready.then(() => new Promise(done => {
  if (navigator.serviceWorker.controller) done(true);
  else navigator.serviceWorker.addEventListener("controllerchange", () => done(true));
}))"""


def test_the_installed_app_keeps_no_page_and_works_offline(
    transactional_db: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests.conftest import build_world

    settings.PORTAL_VAPID_PRIVATE_KEY = TEST_VAPID_PRIVATE
    push.reset_keys()
    allowed = {f"/static/{name}" for name in pwa.PRECACHE_ASSETS} | {"/offline/"}
    with time_machine.travel(NOW, tick=True):
        world: World = build_world()
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        csp_reports: list[str] = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = new_page(browser, "phone", csp_reports)
            page.goto(f"{live_server.url}/sign-in/")
            assert page.evaluate(CONTROLLED) is True
            scope = page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.scope)")
            assert scope == f"{live_server.url}/"
            submit_sign_in(page, world.guardian.email)
            page.wait_for_url(f"{live_server.url}/children/{world.ada.pk}/")
            page.get_by_text(ADA_NAME).first.wait_for()
            kept = page.evaluate(CACHED_PATHS)
            assert set(kept) == allowed, kept  # static files and the offline page; not the child's page

            page.get_by_role("link", name="Settings").click()
            page.get_by_role("heading", name="Notifications on this device").wait_for()
            page.get_by_role("button", name="Turn on notifications on this device").wait_for()
            axe_check(page, "settings with notifications")
            assert set(page.evaluate(CACHED_PATHS)) == allowed

            page.context.set_offline(True)
            page.goto(f"{live_server.url}/children/{world.ada.pk}/")
            page.get_by_role("heading", name="You are offline").wait_for()
            assert ADA_NAME not in page.content()
            axe_check(page, "offline")
            page.context.set_offline(False)

            page.goto(f"{live_server.url}/account/")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{live_server.url}/sign-in/")
            assert set(page.evaluate(CACHED_PATHS)) <= allowed
            browser.close()
    push.reset_keys()
    assert csp_reports == []
