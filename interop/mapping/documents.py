"""DocumentReference → care's VisitSummary, through ``care.services.results`` (audit, category hold,
events).

The summary is what the attachments carry inline (``content.attachment.data``, base64): a
``text/plain`` attachment becomes its text, an ``application/pdf`` one its PDF, checked as the care
team's own uploads are (a PDF header and end marker, no scripts or embedded files, at most 10 MB).
An attachment given only by ``url`` cannot be fetched by the import, and other content types are not
shown; a resource left with neither text nor PDF is rejected (``no_supported_attachment``), as is
one whose attachment is too large, unsafe, not base64, not UTF-8 text or does not match its
``hash``. Reasons name the problem, never the content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from care.models import VisitSummary
from care.services import results
from interop.context import Context, hospital_time_zone
from interop.errors import Unmappable, named
from interop.fhir import Resource, concept_text, parse_date_time, parse_instant
from interop.mapping.appointments import confidential
from interop.mapping.base import Mapped, Mapping, source_key
from interop.mapping.results import category
from interop.models import SourceRecord
from portal.errors import ApiError
from portal.models import Child, User

TEXT_MAX_CHARS = 200_000
TITLE_MAX = 200
NAME_MAX = 150
# base64 of the largest PDF accepted (4 characters per 3 bytes), checked before anything is decoded.
PDF_MAX_BASE64 = (results.PDF_MAX_BYTES + 2) // 3 * 4
TEXT_MAX_BASE64 = (TEXT_MAX_CHARS * 4 + 2) // 3 * 4  # up to 4 bytes per character in UTF-8


def _decoded(attachment: dict[str, Any], limit: int) -> bytes:
    data = str(attachment.get("data") or "")
    if len(data) > limit:
        raise Unmappable("attachment_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Unmappable("attachment_not_base64") from None
    expected = attachment.get("hash")
    if expected and base64.b64encode(hashlib.sha1(raw).digest()).decode() != expected:  # noqa: S324 - FHIR's own choice
        raise Unmappable("attachment_hash_mismatch")
    return raw


def attachments(data: dict[str, Any]) -> tuple[str, bytes | None]:
    """(text, PDF bytes) from the resource's inline attachments."""
    text, pdf, url_only = "", None, False
    for content in data.get("content") or []:
        attachment = content.get("attachment") or {}
        kind = str(attachment.get("contentType") or "").partition(";")[0].strip().lower()
        if not attachment.get("data"):
            url_only = url_only or bool(attachment.get("url"))
            continue
        if kind == "text/plain" and not text:
            try:
                text = _decoded(attachment, TEXT_MAX_BASE64).decode("utf-8")
            except UnicodeDecodeError:
                raise Unmappable("attachment_not_utf8") from None
            if len(text) > TEXT_MAX_CHARS:
                raise Unmappable("attachment_too_large")
        elif kind == "application/pdf" and pdf is None:
            pdf = _decoded(attachment, PDF_MAX_BASE64)
    if not text.strip() and pdf is None:
        raise Unmappable("attachment_url_only" if url_only else "no_supported_attachment")
    return text, pdf


def _author(ctx: Context, data: dict[str, Any]) -> tuple[User | None, str]:
    for reference in data.get("author") or []:
        kind = str(reference.get("reference") or "").partition("/")[0]
        if kind in ("Practitioner", "PractitionerRole"):
            try:
                return ctx.clinician(reference)[0], ""
            except Unmappable:
                pass
        if reference.get("display"):
            return None, str(reference["display"])[:NAME_MAX]
    return None, ""


def _appointment(ctx: Context, data: dict[str, Any]) -> Any:
    for related in (data.get("context") or {}).get("related") or []:
        if str(related.get("reference") or "").startswith("Appointment/"):
            return ctx.record("Appointment", related).target
    return None


def fields(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    status = str(data.get("status") or "")
    if status not in VisitSummary.Status.values:
        raise Unmappable(f"document_status:{named(status, set())}")
    period = (data.get("context") or {}).get("period") or {}
    date = parse_instant(data.get("date")) or parse_date_time(period.get("start"), hospital_time_zone())
    if date is None:
        raise Unmappable("no_date")
    text, pdf = attachments(data)
    contents: list[dict[str, Any]] = data.get("content") or [{}]
    first = contents[0].get("attachment") or {}
    title = data.get("description") or concept_text(data.get("type")) or first.get("title") or "Visit summary"
    author, author_name = _author(ctx, data)
    return {
        "title": str(title)[:TITLE_MAX],
        "date": date,
        "text": text,
        "pdf": pdf,
        "category": category(data.get("category") or [], "visit-summary"),
        "status": status,
        "author": author,
        "author_name": author_name,
        "appointment_id": _appointment(ctx, data),
        "confidential": confidential(data),
    }


def _record(ctx: Context, child: Child, source_id: str, arguments: dict[str, Any]) -> VisitSummary:
    try:
        summary, _ = results.visit_summary_record(actor=ctx.actor, child=child, source_id=source_id, **arguments)
    except ApiError as error:  # the PDF checks: pdf_invalid, pdf_too_large
        raise Unmappable(f"attachment:{error.code}") from None
    return summary


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("subject"))
    summary = _record(ctx, child, source_key(resource), fields(ctx, data))
    return Mapped(targets=[str(summary.pk)], child_id=child.pk)


def remove(ctx: Context, record: SourceRecord) -> None:
    """Gone from the EHR: the summary is withdrawn (``entered-in-error``, hidden from families); the
    row, its PDF and its audit history stay."""
    summary = VisitSummary.objects.select_related("child", "author").filter(pk=record.target).first()
    if summary is None or summary.status == VisitSummary.Status.ENTERED_IN_ERROR:
        return
    arguments = {
        "title": summary.title,
        "date": summary.date,
        "text": summary.text,
        "pdf": base64.b64decode(summary.pdf) if summary.pdf else None,
        "category": summary.category,
        "status": VisitSummary.Status.ENTERED_IN_ERROR,
        "author": summary.author,
        "author_name": summary.author_name,
        "appointment_id": summary.appointment_id,
        "confidential": summary.confidential,
    }
    _record(ctx, summary.child, summary.source_id, arguments)


MAPPING = Mapping(target_type="care.VisitSummary", apply=apply, remove=remove)
