"""Messaging records for the personas, made directly (the services are tested on their own), and
small files of each kind."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from messaging.models import Attachment, Message, Thread
from tests.conftest import World

# A Wednesday 14:00 UTC: inside business hours in UTC, New York and Chicago. Tests that count events
# travel here (ticking), so an after-hours automatic reply never adds one at night or at weekends.
IN_BUSINESS_HOURS = datetime(2027, 6, 9, 14, 0, tzinfo=UTC)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    + _png_chunk(b"IEND", b"")
)
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xdb\x00\x43\x00"
    + bytes(range(64))
    + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\x12\x34"
    + b"\xff\xd9"
)
PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)
# The start of a Windows executable (DOS stub and PE header).
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 56 + b"This program cannot be run in DOS mode.\r\n$" + b"PE\x00\x00L\x01"
)
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + b"\x00" * 20 + b"evil.exe" + b"PK\x05\x06" + b"\x00" * 18


def thread(world: World, *, confidential: bool = False, **extra: Any) -> Thread:
    now = timezone.now()
    fields: dict[str, Any] = {
        "subject": "Question about Adaline Canaryfeather",
        "topic": "medical",
        "status": Thread.Status.AWAITING_CARE_TEAM,
        "created_by": world.guardian,
        "pool": world.department,
        "reply_by": now,
        **extra,
    }
    row = Thread.objects.create(child=world.ada, confidential=confidential, **fields)
    Message.objects.create(
        thread=row, author=world.guardian, kind="family", body="Canaryfeather has a rash", position=1
    )
    row.message_count = 1
    row.save(update_fields=["message_count"])
    return row


def sent_attachment(world: World, *, confidential: bool = False) -> Attachment:
    row = thread(world, confidential=confidential)
    message = Message.objects.create(
        thread=row, author=world.guardian, kind="family", body="photo attached", position=2
    )
    attachment = Attachment(
        child=world.ada,
        message=message,
        uploaded_by=world.guardian,
        content_type="image/png",
        size=len(PNG),
        sha256="0" * 64,
        filename="rash.png",
    )
    attachment.content = base64.b64encode(PNG).decode()
    attachment.save(force_insert=True)
    return attachment


def new_id() -> str:
    return str(uuid.uuid4())


def post(client: Any, url: str, body: dict[str, Any] | None = None) -> Any:
    """POST JSON, running the after-commit callbacks (event pushes, notification tasks) as a real
    commit would, also inside a test's rolled-back transaction."""
    import json

    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def start_thread(world: World, persona: str = "guardian", body: str = "A question", **extra: Any) -> Any:
    payload = {"subject": "Question", "topic": "medical", "body": body, "client_id": new_id(), **extra}
    return post(world.client(persona), f"/api/v1/children/{world.ada.pk}/threads", payload)


def reply(world: World, thread_id: Any, persona: str = "clinician", body: str = "An answer", **extra: Any) -> Any:
    url = f"/api/v1/children/{world.ada.pk}/threads/{thread_id}/messages"
    return post(world.client(persona), url, {"body": body, "client_id": new_id(), **extra})
