"""The messenger in real browsers, live over the websocket: a guardian on a 390x844 phone sends a
message with a photo; a clinician in a second browser on a desktop claims it in the shared inbox and
answers while the guardian's socket has dropped; the guardian's open conversation reconnects, resumes
after the last event it received and shows the answer without reloading. axe-core finds no
violation on any page visited, the browser reports no Content-Security-Policy violation, and
screenshots of the pages go to docs/screenshots/ (README).

pytest-django's live server is WSGI and cannot serve the websocket, so daphne serves the application
(HTTP and the socket, ``portal.asgi``) from a subprocess against the test database. That needs a
database another process can open: PostgreSQL (CI's PostgreSQL + Redis pass, where
``PORTAL_BROWSER_TESTS`` is set). Nothing here depends on the time of day: the answer is awaited by its
words, whether or not an after-hours reply came first.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.conf import settings
from django.db import connection

from messaging.models import Attachment, Message, Thread
from tests.conftest import World
from tests.messaging import data
from tests.web.browser import ROOT, axe_check, enter_totp, launch, new_page, require_browser, screenshot, sign_in

SUBJECT = "Rash on the arm"
QUESTION = "The rash on her arm is bigger today. Photo attached."
ANSWER = "Thank you for the photo. Keep it dry; we will call you this afternoon."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def daphne(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """daphne serving ``portal.asgi`` (HTTP, static files and the websocket) on the test database."""
    require_browser()
    if connection.vendor != "postgresql":
        pytest.skip("the daphne subprocess needs a database it can open: runs on PostgreSQL (.ci/run's second pass)")
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "CHANNEL_PREFIX": f"webmsg-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(ROOT),
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    log = tmp_path / "daphne.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("daphne")), "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/sign-in/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("daphne did not start:\n" + log.read_text(errors="replace")) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_clinicians_answer_reaches_the_guardians_open_conversation_live(
    daphne: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below happen while no
    # browser call is in flight.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    url = daphne
    reports: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)

        # The guardian, on a phone: the conversations, then a new message with a photo.
        guardian = new_page(browser, "phone", reports)
        # Every event socket the page opens passes through here (to the real server), so the test can
        # drop one and see the page reconnect and resume after the last event it received.
        sockets: list[tuple[Any, Any]] = []
        guardian.route_web_socket(
            re.compile(r"/ws/v1/events"), lambda route: sockets.append((route, route.connect_to_server()))
        )
        sign_in(guardian, url, "guardian@example.org")
        guardian.wait_for_url(f"**/children/{world.ada.pk}/")
        guardian.get_by_role("link", name="Messages").click()
        guardian.get_by_role("heading", name="Messages about").wait_for()
        axe_check(guardian, "conversations")
        screenshot(guardian, "messages")
        guardian.get_by_role("link", name="New message").click()
        guardian.get_by_role("heading", name="New message").wait_for()
        guardian.get_by_label("Subject").fill(SUBJECT)
        guardian.get_by_label("Topic").select_option("medical")
        guardian.get_by_label("Your message").fill(QUESTION)
        picture: Any = {"name": "rash.png", "mimeType": "image/png", "buffer": data.PNG}
        guardian.get_by_label("Take a photo").set_input_files(files=[picture])
        axe_check(guardian, "new message")
        screenshot(guardian, "message-new")
        guardian.get_by_role("button", name="Send").click()
        guardian.get_by_role("heading", name=SUBJECT).wait_for()
        guardian.locator("#messages").get_by_role("link", name="rash.png").wait_for()
        # The socket is open (messenger.js marks the list); from here the page is never reloaded.
        guardian.locator('#messages[data-live="1"]').wait_for()
        guardian.evaluate("window.stillTheSamePage = true")
        axe_check(guardian, "conversation")
        screenshot(guardian, "message-thread")

        # The clinician, at a desk: the shared inbox, take the conversation, answer it.
        clinician = new_page(browser, "desktop", reports)
        sign_in(clinician, url, "clinician@example.org")
        enter_totp(clinician)
        clinician.get_by_role("link", name="Messages").click()
        clinician.get_by_role("heading", name="Shared inbox").wait_for()
        clinician.get_by_role("link", name=SUBJECT).wait_for()
        axe_check(clinician, "inbox")
        screenshot(clinician, "inbox", "desktop")
        clinician.get_by_role("button", name=f"Take it – {SUBJECT}").click()
        clinician.get_by_text("You took this conversation.").wait_for()
        clinician.get_by_text(QUESTION).wait_for()
        axe_check(clinician, "conversation, care team")
        # The guardian's socket drops; the answer is sent while the page reconnects.
        page_side, server_side = sockets[0]
        server_side.close(code=4000, reason="dropped")
        page_side.close(code=4000, reason="dropped")
        guardian.locator('#messages[data-live="0"]').wait_for()
        clinician.get_by_label("Your message").fill(ANSWER)
        clinician.get_by_role("button", name="Send").click()
        clinician.get_by_text("Message sent.").wait_for()
        screenshot(clinician, "message-thread", "desktop")

        # The answer appears in the guardian's open page, pushed over the websocket.
        guardian.locator("#messages").get_by_text(ANSWER).wait_for(timeout=15_000)
        assert guardian.evaluate("window.stillTheSamePage") is True
        # It reconnected once, resuming after the newest event it had received (the thread changed
        # when the clinician took it), not from the page's first position.
        assert len(sockets) == 2
        first, second = (int(parse_qs(urlparse(route.url).query)["after"][0]) for route, _ in sockets)
        assert second > first
        assert guardian.locator("#messages li").last.locator(".meta strong").text_content() == "Dr. Cleo Clinician"
        axe_check(guardian, "conversation with the answer")
        screenshot(guardian, "message-live-reply")
        browser.close()

    assert reports == []
    thread = Thread.objects.get()
    assert thread.assignee_id == world.clinician.pk and thread.status == "awaiting_family"
    question = Message.objects.get(thread=thread, author=world.guardian)
    assert Attachment.objects.get().message_id == question.pk
    assert [m.body for m in Message.objects.filter(thread=thread, author=world.clinician)] == [ANSWER]
