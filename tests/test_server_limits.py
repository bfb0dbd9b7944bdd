"""Oversized URLs and headers sent to a real daphne get an HTTP answer in the API's error shape (414,
431, or Twisted's own 400 for too many header bytes in all), never a silent hang-up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def _get(path: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"Connection: close\r\n\r\n"


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    var = tmp_path_factory.mktemp("daphne")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "PORTAL_VAR_DIR": str(var),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("daphne")), "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=(var / "daphne.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _raw(port, _get(b"/api/v1/health")).startswith(b"HTTP/1.1"):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("daphne did not come up: " + (var / "daphne.log").read_text()[-2000:])
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_100k_url_is_414(daphne: int) -> None:
    status, body = _status_and_body(_raw(daphne, _get(b"/api/v1/me?x=" + b"a" * 100_000)))
    assert status == 414 and json.loads(body)["code"] == "uri_too_long"


def test_a_url_over_the_portal_limit_is_414_from_the_middleware(daphne: int) -> None:
    status, body = _status_and_body(_raw(daphne, _get(b"/api/v1/me?x=" + b"a" * 10_000)))
    assert status == 414 and b"uri_too_long" in body


def test_a_100k_header_is_431(daphne: int) -> None:
    status, body = _status_and_body(_raw(daphne, _get(b"/api/v1/me", b"X-Padding: " + b"a" * 100_000 + b"\r\n")))
    assert status == 431 and json.loads(body)["code"] == "request_header_fields_too_large"


def test_many_headers_are_refused_with_an_answer(daphne: int) -> None:
    many = b"".join(b"X-P%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
    status, _ = _status_and_body(_raw(daphne, _get(b"/api/v1/me", many)))
    assert status in {400, 431}


def test_ordinary_requests_still_work(daphne: int) -> None:
    status, body = _status_and_body(_raw(daphne, _get(b"/api/v1/me", b"X-Padding: " + b"a" * 2000 + b"\r\n")))
    assert status == 401 and b"not_authenticated" in body
