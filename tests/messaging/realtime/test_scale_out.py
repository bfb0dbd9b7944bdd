"""Scale-out: two real daphne processes sharing the Redis channel layer and the PostgreSQL database. A
message posted through one process reaches a guardian's socket connected to the other."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.conftest import build_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    daphne = str(Path(sys.executable).with_name("daphne"))
    return subprocess.Popen(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_healthy(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"daphne on port {port} did not come up")


def _token(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.session.session_key)


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


async def _receive_event(port: int, token: str, send: Any, timeout: float = 15) -> dict[str, Any]:
    import websockets

    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/v1/events", additional_headers={"X-Session-Token": token}
    ) as ws:
        await asyncio.sleep(0.3)  # the consumer has joined its group
        posted = await asyncio.to_thread(send)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
            if message["type"] == "event" and message["event"]["type"] == "message.created":
                return {"event": message["event"], "posted": posted}
    raise AssertionError("no event")


def test_an_event_posted_through_one_daphne_reaches_a_socket_on_the_other(
    needs_postgres: None, needs_redis: None, tmp_path: Path
) -> None:
    world = build_world()
    guardian_token, clinician_token = _token(world.guardian), _token(world.clinician)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": f"scale-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(ROOT),
    }
    ports = [_free_port(), _free_port()]
    processes = [_start(port, env, tmp_path / f"daphne-{port}.log") for port in ports]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            _wait_healthy(port, deadline)
        url = f"/children/{world.ada.pk}/threads"
        body = {"subject": "Cross", "topic": "medical", "body": "Across processes", "client_id": str(uuid.uuid4())}
        result = asyncio.run(
            _receive_event(ports[1], guardian_token, lambda: _post(ports[0], url, clinician_token, body))
        )
        assert result["event"]["data"]["thread_id"] == result["posted"]["id"]
        assert result["event"]["child_id"] == str(world.ada.pk)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
