"""Benchmark: how long a clinician's reply takes to appear in a guardian's open conversation page in
Chromium (``web/static/web/messenger.js``: the socket announces it, the page fetches and draws it),
against the API's own socket delivery of the same message (a websocket client of ``/ws/v1/events``
signed in as the same guardian), in the same run on one daphne process (PostgreSQL + Redis).

For each reply: the clock starts before the clinician's ``POST /api/v1/children/{id}/threads/{id}/messages``;
the socket figure is when the ``message.created`` event for that message reaches the websocket client;
the page figure is when the reply's text is the last message drawn in the page (observed from here
through Playwright, so it includes one DevTools round trip). Replies are sent one after the other.
Goal (issue "web app"): page p99 <= 2x socket p99.

Usage (a fresh database each run; the script migrates it and creates the test personas)::

    createdb -h 127.0.0.1 -U postgres bench_live
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_live REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python tests/benchmarks/bench_live_reply.py --replies 100

Needs Debian's chromium (``/usr/bin/chromium``). Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-len(ordered) * q // 1)) - 1))]


def _prepare() -> dict[str, Any]:
    """Migrate, create the personas, sign the guardian and the clinician in (session keys)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.test import Client

    from portal.models import User
    from tests.conftest import build_world

    if User.objects.exists():
        raise SystemExit("Use a fresh database (see the docstring): this one already has accounts.")
    world = build_world()
    sessions = {}
    for persona in ("guardian", "clinician"):
        client = Client()
        client.force_login(world.users[persona])
        sessions[persona] = str(client.session.session_key)
    return {"child": str(world.ada.pk), **sessions}


def _post(port: int, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Session-Token": token},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


class SocketClock:
    """A websocket client of the event stream, signed in as the guardian, noting when each
    ``message.created`` event arrives (``time.monotonic``), by message id."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        import websockets

        url = f"ws://127.0.0.1:{self.port}/ws/v1/events"
        async with websockets.connect(url, additional_headers={"X-Session-Token": self.token}) as ws:
            self.ready.set()
            while not self.stop:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    return
                now = time.monotonic()
                message = json.loads(raw)
                if message["type"] == "event" and message["event"]["type"] == "message.created":
                    self.arrived[message["event"]["entity_id"]] = now


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=100)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("Set DATABASE_URL to a fresh PostgreSQL database and REDIS_URL (see the docstring).", file=sys.stderr)
        return 2
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PORTAL_TEST_CACHE_PREFIX": prefix,
            "CHANNEL_PREFIX": prefix,
            "PORTAL_MESSAGE_RATE": "100000/m",
        }
    )
    personas = _prepare()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    page_times: list[float] = []
    socket_times: list[float] = []
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        child = personas["child"]
        thread = _post(
            port,
            f"/children/{child}/threads",
            personas["guardian"],
            {"subject": "Benchmark", "topic": "other", "body": "Question", "client_id": str(uuid.uuid4())},
        )
        clock = SocketClock(port, personas["guardian"])
        clock.ready.wait(10)
        from playwright.sync_api import sync_playwright

        from tests.web.browser import CHROMIUM, LAUNCH_ARGS, PHONE

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            context = browser.new_context(viewport=PHONE)
            context.add_cookies(
                [{"name": "sessionid", "value": personas["guardian"], "url": f"http://127.0.0.1:{port}"}]
            )
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/children/{child}/messages/{thread['id']}/")
            page.locator('#messages[data-live="1"]').wait_for()
            path = f"/children/{child}/threads/{thread['id']}/messages"
            for n in range(args.replies + 5):  # the first five warm up
                text = f"Reply {n} {uuid.uuid4().hex[:6]}"
                started = time.monotonic()
                sent = _post(port, path, personas["clinician"], {"body": text, "client_id": str(uuid.uuid4())})
                page.wait_for_function(
                    "text => { const last = document.querySelector('#messages li:last-child .body');"
                    " return last !== null && last.textContent === text; }",
                    arg=text,
                    polling="raf",
                    timeout=15_000,
                )
                shown = time.monotonic()
                deadline = time.monotonic() + 15
                while sent["id"] not in clock.arrived and time.monotonic() < deadline:
                    time.sleep(0.001)
                if n >= 5:
                    page_times.append(shown - started)
                    socket_times.append(clock.arrived[sent["id"]] - started)
            browser.close()
        clock.stop = True
        clock.thread.join(timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=10)

    def line(name: str, values: list[float]) -> str:
        return (
            f"{name:<28} p50 {1000 * statistics.median(values):6.1f} ms   p99 {1000 * _quantile(values, 0.99):6.1f} ms"
        )

    print(f"{len(page_times)} replies, one at a time")
    print(line("API socket delivery", socket_times))
    print(line("guardian's open page", page_times))
    ratio = _quantile(page_times, 0.99) / _quantile(socket_times, 0.99)
    print(f"page p99 = {ratio:.2f}x socket p99 (goal <= 2x)")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
