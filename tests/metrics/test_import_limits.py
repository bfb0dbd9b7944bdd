"""Call imports over their limits stop as soon as a limit is passed (the file is streamed, never read
whole), and the command, the admin upload and the webhook give the same one-line reason; the command
exits with status 2 and no traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from portal.metrics.imports import TooLarge, calls_import, parse_csv, webhook_signature
from portal.metrics.models import CallRecord
from tests.conftest import World

pytestmark = pytest.mark.django_db

HEADER = b"call_id,started_at,duration_seconds,direction,queue,reason,caller_phone,mrn,outcome\n"


def row(index: int) -> bytes:
    return f"c{index},2025-03-03T09:00:00+00:00,60,inbound,main,refill,,,answered\n".encode()


class EndlessCalls(io.RawIOBase):
    """A file that never ends: valid rows forever, or (``one_line``) a single line that never ends."""

    def __init__(self, one_line: bool = False) -> None:
        self.one_line = one_line
        self.index = 0
        self.served = 0
        self.pending = HEADER

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self.pending) < len(buffer):
            self.index += 1
            self.pending += b"x" * 4096 if self.one_line else row(self.index)
        size = len(buffer)
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        self.served += size
        return size


def test_an_endless_file_stops_at_the_row_limit(settings) -> None:
    settings.PORTAL_METRICS_MAX_ROWS = 2000
    source = EndlessCalls()
    with pytest.raises(TooLarge) as caught:
        parse_csv(io.BufferedReader(source))
    assert caught.value.message == "The file has more than the limit of 2000 rows; split it into smaller files."
    assert caught.value.status == 413
    assert source.served < 2000 * 80 + 256 * 1024  # read only as far as the limit (plus one buffer)


def test_a_file_over_the_row_limit_is_refused_before_any_row_is_parsed(settings, monkeypatch) -> None:
    """A seekable file (the command's, the admin upload's) is counted first: nothing is parsed, hashed
    or kept when it is over a limit."""
    from portal.metrics import imports

    settings.PORTAL_METRICS_MAX_ROWS = 100

    def never(*args: Any) -> None:
        raise AssertionError("a row was parsed")

    monkeypatch.setattr(imports, "_parse_row", never)
    with pytest.raises(TooLarge):
        parse_csv(io.BytesIO(HEADER + b"".join(row(i) for i in range(101))))


def test_an_endless_line_stops_at_the_byte_limit(settings) -> None:
    settings.PORTAL_METRICS_MAX_UPLOAD_BYTES = 1_000_000
    source = EndlessCalls(one_line=True)
    with pytest.raises(TooLarge) as caught:
        parse_csv(io.BufferedReader(source))
    assert "limit of 1000000 bytes" in caught.value.message
    assert source.served < 1_000_000 + 256 * 1024


def test_a_file_within_the_limits_imports_from_a_stream(settings) -> None:
    settings.PORTAL_METRICS_MAX_ROWS = 3
    data = HEADER + row(1) + row(2) + row(3)
    assert calls_import(actor=None, source="avaya", data=io.BytesIO(data)).added == 3
    with pytest.raises(TooLarge):
        calls_import(actor=None, source="avaya", data=io.BytesIO(data + row(4)))
    assert CallRecord.objects.count() == 3


def test_the_command_exits_2_with_one_line(tmp_path: Path, settings) -> None:
    settings.PORTAL_METRICS_MAX_ROWS = 10
    path = tmp_path / "calls.csv"
    path.write_bytes(HEADER + b"".join(row(i) for i in range(50)))
    with pytest.raises(CommandError) as caught:
        call_command("import_calls", str(path), "--source", "avaya")
    assert caught.value.returncode == 2
    assert str(caught.value) == "The file has more than the limit of 10 rows; split it into smaller files."
    with pytest.raises(CommandError) as missing:
        call_command("import_calls", str(tmp_path / "nope.csv"), "--source", "avaya")
    assert missing.value.returncode == 2
    with pytest.raises(CommandError) as bad_source:
        call_command("import_calls", str(path), "--source", "no spaces allowed")
    assert bad_source.value.returncode == 2
    assert CallRecord.objects.count() == 0


def test_the_command_run_as_a_program_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(HEADER + b"".join(row(i) for i in range(50)))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PORTAL_KEY_FILE": str(tmp_path / "keys.json"),
        "SECRET_KEY": "test-only-" + "k" * 40,
        "PORTAL_METRICS_MAX_ROWS": "10",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "import_calls", str(path), "--source", "avaya"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["CommandError: The file has more than the limit of 10 rows; split it into smaller files."]


def test_admin_upload_and_webhook_give_the_same_reason(world: World, settings) -> None:
    settings.PORTAL_METRICS_MAX_ROWS = 2
    settings.PORTAL_METRICS_WEBHOOK_MAX_CALLS = 2
    settings.PORTAL_METRICS_WEBHOOK_SECRETS = "genesys:whsec-test"
    admin = Client()
    admin.force_login(world.admin)
    upload = SimpleUploadedFile("calls.csv", HEADER + row(1) + row(2) + row(3), content_type="text/csv")
    page = admin.post("/admin/metrics/callimportbatch/upload/", {"source": "avaya", "file": upload})
    reason = "The file has more than the limit of 2 rows; split it into smaller files."
    assert page.status_code == 200 and reason in page.content.decode()
    calls = [
        {
            "call_id": f"w{i}",
            "started_at": "2025-03-03T09:00:00+00:00",
            "duration_seconds": 60,
            "direction": "inbound",
            "reason": "billing",
            "outcome": "answered",
        }
        for i in range(3)
    ]
    body = json.dumps({"calls": calls}).encode()
    stamp = str(int(time.time()))
    hook = Client().post(
        "/api/v1/metrics/calls",
        data=body,
        content_type="application/json",
        headers={
            "X-Metrics-Source": "genesys",
            "X-Metrics-Timestamp": stamp,
            "X-Metrics-Signature": webhook_signature("whsec-test", stamp, body),
        },
    )
    assert hook.status_code == 413
    assert hook.json() == {"code": "payload_too_large", "message": reason}
    assert CallRecord.objects.count() == 0
