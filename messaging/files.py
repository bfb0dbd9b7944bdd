"""What an attachment may be: a JPEG, PNG or PDF, recognized by its bytes, and nothing else inside.

Refused, each with its own error code:

* ``attachment_too_large``: over ``PORTAL_ATTACHMENT_MAX_BYTES`` (10 MB); ``attachment_empty``.
* ``attachment_type_not_allowed``: the bytes are not a JPEG, PNG or PDF, whatever the name says (a
  renamed executable, a script, an SVG, a ZIP...).
* ``attachment_type_mismatch``: the name's extension says another allowed type than the bytes.
* ``attachment_polyglot``: a second file hides in it: an executable or archive signature anywhere
  (PE ``MZ`` stub, ELF, Mach-O, ZIP/JAR/Office local or central headers, RAR, 7z), script or markup
  (``<script``, ``<?php``, ``<html``, ``<svg``, a ``#!`` line), active PDF content (``/JavaScript``,
  ``/JS``, ``/Launch``, ``/EmbeddedFile``, ``/RichMedia``, ``/XFA``), or bytes after the format's end
  (after a JPEG's last EOI marker, after a PNG's IEND chunk, after a PDF's last ``%%EOF``).

The signatures are several bytes long so a compressed image rarely trips them by chance; one that
does is refused rather than risked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import filetype

from messaging.conf import max_attachment_bytes
from portal.errors import ApiError, Invalid

ALLOWED = {"image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",), "application/pdf": (".pdf",)}

_EMBEDDED = [
    re.compile(rb"MZ.{0,200}This program cannot be run", re.DOTALL),
    re.compile(rb"PE\x00\x00[\x4c\x64\x86\xaa]"),
    re.compile(rb"\x7fELF[\x01\x02][\x01\x02]\x01"),
    re.compile(rb"\xfe\xed\xfa[\xce\xcf]|[\xce\xcf]\xfa\xed\xfe|\xca\xfe\xba\xbe\x00\x00\x00"),
    re.compile(rb"PK\x03\x04|PK\x05\x06|PK\x01\x02"),
    re.compile(rb"Rar!\x1a\x07|7z\xbc\xaf\x27\x1c"),
    re.compile(rb"(?i)<script|<\?php|<html|<svg|<!doctype html|<iframe"),
    re.compile(rb"(?:^|\n)#!\s*/"),
]
_PDF_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|EmbeddedFile|RichMedia|XFA)\b")


class TooLarge(ApiError):
    status = 413
    code = "attachment_too_large"
    message = "Attachments can be at most 10 MB."


@dataclass(frozen=True)
class Checked:
    content_type: str
    extension: str


def _trailing_after_end(content_type: str, data: bytes) -> bool:
    if content_type == "image/jpeg":
        end = data.rfind(b"\xff\xd9")
        return end == -1 or data[end + 2 :].strip(b"\x00") != b""
    if content_type == "image/png":
        end = data.rfind(b"IEND")
        # IEND is followed by its 4-byte CRC and nothing else.
        return end == -1 or len(data) > end + 8
    end = data.rfind(b"%%EOF")
    return end == -1 or data[end + 5 :].strip() != b""


def check(data: bytes, filename: str) -> Checked:
    """Return the sniffed type, or raise the refusal (see the module's docstring)."""
    if len(data) > max_attachment_bytes():
        raise TooLarge()
    if not data:
        raise Invalid("The file is empty.", code="attachment_empty")
    guess = filetype.guess(data[:8192])
    content_type = guess.mime if guess is not None else ""
    headers = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n", "application/pdf": b"%PDF-"}
    if content_type not in ALLOWED or not data.startswith(headers[content_type]):
        raise Invalid("Only JPEG, PNG and PDF files can be attached.", code="attachment_type_not_allowed")
    name = filename.lower()
    dot = name.rfind(".")
    extension = name[dot:] if dot != -1 else ""
    known = {ext for exts in ALLOWED.values() for ext in exts}
    if extension in known and extension not in ALLOWED[content_type]:
        raise Invalid("The file's name does not match its contents.", code="attachment_type_mismatch")
    if extension and extension not in known:
        raise Invalid("Only JPEG, PNG and PDF files can be attached.", code="attachment_type_not_allowed")
    body = data[len(headers[content_type]) :]
    if any(pattern.search(body) for pattern in _EMBEDDED):
        raise Invalid("The file contains another file or a script.", code="attachment_polyglot")
    if content_type == "application/pdf" and _PDF_ACTIVE.search(data):
        raise Invalid("The PDF contains scripts or embedded files.", code="attachment_polyglot")
    if _trailing_after_end(content_type, data):
        raise Invalid("The file has data after its end.", code="attachment_polyglot")
    return Checked(content_type=content_type, extension=ALLOWED[content_type][0])
