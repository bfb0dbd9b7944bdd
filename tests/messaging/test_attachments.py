"""Attachments: JPEG, PNG and PDF sniffed by content; renamed executables, oversized files and
polyglots refused; at most five per message; stored encrypted; served only to participants."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings

from messaging import files
from messaging.models import Attachment
from portal.crypto import DecryptionError
from tests.conftest import World
from tests.messaging import data


def upload(world: World, name: str, content: bytes, persona: str = "guardian", child=None):
    url = f"/api/v1/children/{(child or world.ada).pk}/attachments"
    return world.client(persona).post(url, {"file": SimpleUploadedFile(name, content, content_type="image/jpeg")})


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("photo.jpg", data.JPEG, "image/jpeg"),
        ("scan.png", data.PNG, "image/png"),
        ("letter.pdf", data.PDF, "application/pdf"),
    ],
)
def test_allowed_types_are_recognized_by_their_bytes(world: World, name: str, content: bytes, kind: str) -> None:
    response = upload(world, name, content)
    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == kind and response.json()["size"] == len(content)
    # Without an extension the bytes still decide.
    assert upload(world, "noextension", content).json()["content_type"] == kind


REFUSED = [
    ("renamed executable", "photo.jpg", data.EXE, "attachment_type_not_allowed"),
    ("renamed zip", "scan.pdf", data.ZIP, "attachment_type_not_allowed"),
    ("script", "note.png", b"#!/bin/sh\nrm -rf /\n", "attachment_type_not_allowed"),
    ("html", "page.pdf", b"<html><script>alert(1)</script></html>", "attachment_type_not_allowed"),
    ("svg", "image.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', "attachment_type_not_allowed"),
    ("png named pdf", "scan.pdf", data.PNG, "attachment_type_mismatch"),
    ("png named exe", "scan.exe", data.PNG, "attachment_type_not_allowed"),
    ("pdf/zip polyglot", "letter.pdf", data.PDF.replace(b"%%EOF", data.ZIP + b"%%EOF"), "attachment_polyglot"),
    (
        "pdf with javascript",
        "letter.pdf",
        data.PDF.replace(b"/Pages 2 0 R", b"/OpenAction << /JS (x) >>"),
        "attachment_polyglot",
    ),
    ("jpeg with exe inside", "photo.jpg", data.JPEG[:-2] + data.EXE + b"\xff\xd9", "attachment_polyglot"),
    ("jpeg with zip appended", "photo.jpg", data.JPEG + data.ZIP, "attachment_polyglot"),
    ("png with data after IEND", "scan.png", data.PNG + b"<?php system($_GET[0]); ?>", "attachment_polyglot"),
    ("png with trailing junk", "scan.png", data.PNG + b"\x00\x01\x02", "attachment_polyglot"),
    (
        "pdf with elf inside",
        "letter.pdf",
        data.PDF.replace(b"trailer", b"\x7fELF\x02\x01\x01 trailer"),
        "attachment_polyglot",
    ),
    ("empty", "photo.jpg", b"", "attachment_empty"),
]


@pytest.mark.parametrize(("label", "name", "content", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_dangerous_files_are_refused(world: World, label: str, name: str, content: bytes, code: str) -> None:
    response = upload(world, name, content)
    assert response.status_code in (400, 422), (label, response.content)
    assert response.json()["code"] in (code, "invalid_input"), label
    if content:
        assert response.json()["code"] == code
    assert not Attachment.objects.exists()


def test_oversized_files_are_refused(world: World) -> None:
    big = data.JPEG[:-2] + b"\x00" * (10 * 1024 * 1024) + b"\xff\xd9"
    response = upload(world, "huge.jpg", big)
    assert response.status_code == 413 and response.json()["code"] == "attachment_too_large"
    with pytest.raises(files.TooLarge):
        files.check(big, "huge.jpg")
    assert not Attachment.objects.exists()


def test_at_most_five_per_message_and_only_ones_own(world: World) -> None:
    ids = [upload(world, f"p{i}.png", data.PNG).json()["id"] for i in range(6)]
    thread = data.start_thread(world).json()
    too_many = data.reply(world, thread["id"], persona="guardian", attachment_ids=ids)
    assert too_many.status_code == 422 and too_many.json()["code"] == "invalid_input"
    with override_settings(PORTAL_ATTACHMENTS_PER_MESSAGE=2):
        capped = data.reply(world, thread["id"], persona="guardian", attachment_ids=ids[:3])
    assert capped.status_code == 422 and capped.json()["code"] == "too_many_attachments"
    theirs = data.reply(world, thread["id"], persona="co_guardian", attachment_ids=ids[:1])
    assert theirs.status_code == 422 and theirs.json()["code"] == "attachment_not_found"
    sent = data.reply(world, thread["id"], persona="guardian", attachment_ids=ids[:5])
    assert sent.status_code == 201 and len(sent.json()["attachments"]) == 5
    again = data.reply(world, thread["id"], persona="guardian", attachment_ids=ids[:1])
    assert again.json()["code"] == "attachment_not_found"  # already sent with the first message


def test_stored_encrypted_and_bound_to_its_row(world: World) -> None:
    first = upload(world, "a.png", data.PNG).json()["id"]
    second = upload(world, "b.png", data.PNG).json()["id"]
    key = first.replace("-", "") if connection.vendor == "sqlite" else first
    with connection.cursor() as cursor:
        cursor.execute("SELECT content, filename FROM messaging_attachment WHERE id = %s", [key])
        raw_content, raw_name = cursor.fetchone()
    assert raw_content.startswith("pe1:") and raw_name.startswith("pe1:")
    assert "iVBOR" not in raw_content and "a.png" not in raw_name  # neither the PNG's base64 nor its name
    # A ciphertext copied to another row does not decrypt (the associated data names the row).
    Attachment.objects.filter(pk=second).update(content=raw_content)
    with pytest.raises(DecryptionError):
        _ = Attachment.objects.get(pk=second).content


def test_served_only_to_participants(world: World) -> None:
    attachment = data.sent_attachment(world)
    url = f"/api/v1/children/{world.ada.pk}/attachments/{attachment.pk}"
    for persona in ("guardian", "co_guardian", "clinician"):
        response = world.client(persona).get(url)
        assert response.status_code == 200 and response.content == data.PNG
        assert response["Content-Type"] == "image/png" and "no-store" in response["Cache-Control"]
    for persona in ("other_guardian", "revoked_guardian", "other_clinician", "admin", "stranger"):
        assert world.client(persona).get(url).status_code == 404
    secret = data.sent_attachment(world, confidential=True)
    secret_url = f"/api/v1/children/{world.ada.pk}/attachments/{secret.pk}"
    assert world.client("clinician").get(secret_url).status_code == 200
    assert world.client("guardian").get(secret_url).status_code == 404
    # Before it is sent, only its uploader can fetch it.
    pending = upload(world, "p.png", data.PNG).json()["id"]
    pending_url = f"/api/v1/children/{world.ada.pk}/attachments/{pending}"
    assert world.client("guardian").get(pending_url).status_code == 200
    assert world.client("co_guardian").get(pending_url).status_code == 404
    assert world.client("clinician").get(pending_url).status_code == 404
