"""Test results, their reports and visit summaries: recorded by whoever brings them in (the EHR
importer, a care-team tool), released to the family at once or after their category's hold, and
commented on by the care team.

Recording is keyed by the caller's ``source_id`` (the EHR's business identifier): the first call
creates the item, a repeat with the same content changes nothing (no audit row, no event), a repeat
with new content updates it. An item becomes visible to the family when it is released (at once, by a
care-team clinician, or when its hold runs out: ``release_due``) and its status is one families read;
that moment publishes ``*.available``, a later correction of a visible item ``*.changed``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.utils import timezone

from care.models import Appointment, ResultComment, ResultReport, TestResult, VisitSummary
from care.services.common import audit_child, child_row
from portal import audit, events
from portal.access import Capability, ChildAccess
from portal.errors import ApiError, Conflict, Invalid
from portal.models import Child, User
from portal.vocabulary import EventType, Resource

# Statuses families read: a result still being processed, cancelled or entered in error is not shown.
FAMILY_RESULT_STATUSES = (
    TestResult.Status.PRELIMINARY,
    TestResult.Status.FINAL,
    TestResult.Status.AMENDED,
    TestResult.Status.CORRECTED,
)
FAMILY_SUMMARY_STATUSES = (VisitSummary.Status.CURRENT,)
COMMENT_MAX_CHARS = 4000
PDF_MAX_BYTES = 10 * 1024 * 1024
_PDF_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|EmbeddedFile|RichMedia|XFA)\b")


class PdfTooLarge(ApiError):
    status = 413
    code = "pdf_too_large"
    message = "A visit summary's PDF can be at most 10 MB."


def hold_hours(category: str) -> float | None:
    """The hold of a category in hours (``PORTAL_RESULT_HOLD``), or None when it is released at once."""
    hold: dict[str, float] = getattr(settings, "PORTAL_RESULT_HOLD", {}) or {}
    return hold.get(category.strip().lower())


def released_q(now: datetime) -> Q:
    """Items whose release has come: released, or held until a moment already past (the sweep may not
    have run yet; families never wait for it)."""
    return Q(released_at__isnull=False) | Q(hold_until__lte=now)


def family_results_q(now: datetime) -> Q:
    """Results a guardian with clinical access reads."""
    return released_q(now) & Q(confidential=False, status__in=FAMILY_RESULT_STATUSES)


def family_summaries_q(now: datetime) -> Q:
    return released_q(now) & Q(confidential=False, status__in=FAMILY_SUMMARY_STATUSES)


def _released(row: TestResult | VisitSummary, now: datetime) -> bool:
    """Out for its readers: released (or its hold over) and in a status families read. Confidential
    items are out for the care team alone."""
    statuses = FAMILY_RESULT_STATUSES if isinstance(row, TestResult) else FAMILY_SUMMARY_STATUSES
    released = row.released_at is not None or (row.hold_until is not None and row.hold_until <= now)
    return released and row.status in statuses


def _publish(kind: EventType, row: TestResult | VisitSummary | ResultComment, child_id: uuid.UUID, **data: Any) -> None:
    """An event about the child for those who may read clinical content (full-scope guardians and the
    care team; confidential items the care team only). Ids and states only."""
    if isinstance(row, ResultComment):
        entity_type, entity_id, confidential = Resource.OBSERVATION, row.result_id, row.result.confidential
    elif isinstance(row, TestResult):
        entity_type, entity_id, confidential = Resource.OBSERVATION, row.pk, row.confidential
    else:
        entity_type, entity_id, confidential = Resource.DOCUMENT_REFERENCE, row.pk, row.confidential
    events.publish(
        events.DomainEvent(
            type=kind,
            child_id=child_id,
            entity_type=entity_type,
            entity_id=entity_id,
            capability=Capability.CLINICAL,
            confidential=confidential,
            data=data,
        )
    )


def _announce(row: TestResult | VisitSummary, out_before: bool, changed: bool, now: datetime) -> None:
    """Publish what the readers' view gained: the item itself when it comes out, or a change of one
    already out (a correction, or its withdrawal: ``entered-in-error``). Nothing while it is held or in
    a status families do not read."""
    result = isinstance(row, TestResult)
    if _released(row, now) and not out_before:
        kind = EventType.RESULT_AVAILABLE if result else EventType.VISIT_SUMMARY_AVAILABLE
    elif out_before and changed:
        kind = EventType.RESULT_CHANGED if result else EventType.VISIT_SUMMARY_CHANGED
    else:
        return
    _publish(kind, row, row.child_id, status=row.status)


@dataclass(frozen=True)
class Recorded:
    """What recording did: the row, whether it was new, whether anything changed, and what ``before``
    said of the row as it stood before (False for a new row)."""

    row: Any
    created: bool
    changed: bool
    before: bool = False


def _source_id(source_id: str) -> str:
    source_id = source_id.strip()
    if not source_id or len(source_id) > 200:
        raise Invalid("source_id is required (at most 200 characters).", code="invalid_source_id")
    return source_id


def _upsert(
    model: type[Model],
    child: Child,
    source_id: str,
    fields: dict[str, Any],
    *,
    new: Callable[[], dict[str, Any]] = dict,
    before: Callable[[Any], bool] = lambda row: False,
) -> Recorded:
    """Create the row keyed by ``source_id`` (with ``new()`` added to its fields), or update the one
    there (locked), comparing plaintext values: nothing is written when nothing changed. Call inside
    a transaction. Two first recordings at once: the unique key lets one insert, the other updates."""
    source_id = _source_id(source_id)
    row: Any = None
    for _attempt in range(2):
        row = model._default_manager.select_for_update().filter(source_id=source_id).first()
        if row is not None:
            break
        fresh: Any = model(child=child, source_id=source_id)
        for name, value in {**fields, **new()}.items():
            setattr(fresh, name, value)
        try:
            with transaction.atomic():  # a savepoint: a concurrent first recording may win
                fresh.save(force_insert=True)
        except IntegrityError:
            continue
        return Recorded(fresh, True, True)
    else:
        raise Conflict("This item is being recorded by another request; try again.", code="in_progress")
    if row.child_id != child.pk:
        raise Conflict("This source_id belongs to another child's record.", code="source_id_conflict")
    was = before(row)
    changed = [name for name, value in fields.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, fields[name])
    if changed:
        row.save(update_fields=[*changed, "updated_at"])
    return Recorded(row, False, bool(changed), was)


def _hold(category: str, now: datetime) -> dict[str, datetime | None]:
    """A new item: released at once, or held for its category's hours."""
    hours = hold_hours(category)
    if hours:
        return {"hold_until": now + timedelta(hours=hours), "released_at": None}
    return {"hold_until": None, "released_at": now}


def _decimal_text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def report_record(
    *,
    actor: User | None,
    child: Child,
    source_id: str,
    name: str,
    category: str = "laboratory",
    status: str = "final",
    code: str = "",
    code_system: str = "",
    conclusion: str = "",
    effective_at: datetime | None = None,
    issued_at: datetime | None = None,
    ordering_clinician: User | None = None,
    ordering_clinician_name: str = "",
    confidential: bool = False,
) -> tuple[ResultReport, bool]:
    """Create or update a report (FHIR DiagnosticReport) keyed by ``source_id``. Returns (report,
    created). A report is shown with its results; it publishes nothing of its own."""
    fields = {
        "name": name,
        "category": category.strip().lower(),
        "status": status,
        "code": code,
        "code_system": code_system,
        "conclusion": conclusion,
        "effective_at": effective_at,
        "issued_at": issued_at,
        "ordering_clinician": ordering_clinician,
        "ordering_clinician_name": ordering_clinician_name,
        "confidential": confidential,
    }
    # No savepoint of its own: a caller that catches its error (the import, per line) has one.
    with transaction.atomic(savepoint=False):
        done = _upsert(ResultReport, child, source_id, fields)
        if done.changed:
            action = audit.Action.CREATE if done.created else audit.Action.UPDATE
            audit.record_for_child(actor, action, Resource.DIAGNOSTIC_REPORT, done.row.pk, child.pk)
    return done.row, done.created


def result_record(
    *,
    actor: User | None,
    child: Child,
    source_id: str,
    name: str,
    effective_at: datetime,
    report: ResultReport | None = None,
    category: str = "laboratory",
    status: str = TestResult.Status.FINAL,
    code: str = "",
    code_system: str = "",
    value_quantity: Decimal | None = None,
    value_text: str = "",
    unit: str = "",
    range_low: Decimal | None = None,
    range_high: Decimal | None = None,
    range_text: str = "",
    interpretation: str = "",
    issued_at: datetime | None = None,
    ordering_clinician: User | None = None,
    ordering_clinician_name: str = "",
    confidential: bool = False,
    now: datetime | None = None,
) -> tuple[TestResult, bool]:
    """Create or update a result (FHIR Observation) keyed by ``source_id``. Returns (result, created).

    A new result of a held category waits ``PORTAL_RESULT_HOLD`` hours; a repeat never holds again
    what was released. The value is a number (``value_quantity``) or text (``value_text``).
    """
    if status not in TestResult.Status.values:
        raise Invalid(f"Unknown result status {status!r}.", code="invalid_status")
    if interpretation and interpretation not in TestResult.Interpretation.values:
        raise Invalid(f"Unknown interpretation {interpretation!r}.", code="invalid_interpretation")
    if report is not None and report.child_id != child.pk:
        raise Conflict("The report belongs to another child's record.", code="source_id_conflict")
    moment = now or timezone.now()
    fields = {
        "report": report,
        "name": name,
        "category": category.strip().lower(),
        "status": status,
        "code": code,
        "code_system": code_system,
        "value": _decimal_text(value_quantity) if value_quantity is not None else value_text,
        "value_is_numeric": value_quantity is not None,
        "unit": unit,
        "range_low": _decimal_text(range_low),
        "range_high": _decimal_text(range_high),
        "range_text": range_text,
        "interpretation": interpretation,
        "effective_at": effective_at,
        "issued_at": issued_at,
        "ordering_clinician": ordering_clinician,
        "ordering_clinician_name": ordering_clinician_name,
        "confidential": confidential,
    }
    return _record(TestResult, Resource.OBSERVATION, actor, child, source_id, fields, moment)


def _record(
    model: type[TestResult] | type[VisitSummary],
    resource: Resource,
    actor: User | None,
    child: Child,
    source_id: str,
    fields: dict[str, Any],
    moment: datetime,
) -> tuple[Any, bool]:
    # No savepoint of its own: a caller that catches its error (the import, per line) has one.
    with transaction.atomic(savepoint=False):
        done = _upsert(
            model,
            child,
            source_id,
            fields,
            new=lambda: _hold(str(fields["category"]), moment),
            before=lambda row: _released(row, moment),
        )
        if done.changed:
            action = audit.Action.CREATE if done.created else audit.Action.UPDATE
            reason = "held" if done.created and done.row.released_at is None else ""
            audit.record_for_child(actor, action, resource, done.row.pk, child.pk, reason)
            _announce(done.row, done.before, done.changed, moment)
    return done.row, done.created


def _checked_pdf(data: bytes) -> bytes:
    """A PDF and nothing else: its header, its end marker last, no scripts or embedded files."""
    if len(data) > PDF_MAX_BYTES:
        raise PdfTooLarge()
    if not data.startswith(b"%PDF-"):
        raise Invalid("The attachment is not a PDF.", code="pdf_invalid")
    end = data.rfind(b"%%EOF")
    if end == -1 or data[end + 5 :].strip() != b"":
        raise Invalid("The PDF has data after its end.", code="pdf_invalid")
    if _PDF_ACTIVE.search(data):
        raise Invalid("The PDF contains scripts or embedded files.", code="pdf_invalid")
    return data


def visit_summary_record(
    *,
    actor: User | None,
    child: Child,
    source_id: str,
    title: str,
    date: datetime,
    text: str = "",
    pdf: bytes | None = None,
    category: str = "visit-summary",
    status: str = VisitSummary.Status.CURRENT,
    author: User | None = None,
    author_name: str = "",
    appointment_id: uuid.UUID | None = None,
    confidential: bool = False,
    now: datetime | None = None,
) -> tuple[VisitSummary, bool]:
    """Create or update a visit summary (FHIR DocumentReference) keyed by ``source_id``: its text
    and/or a PDF, stored encrypted. Returns (summary, created)."""
    if status not in VisitSummary.Status.values:
        raise Invalid(f"Unknown visit summary status {status!r}.", code="invalid_status")
    if not text.strip() and not pdf:
        raise Invalid("A visit summary needs its text or a PDF.", code="summary_empty")
    appointment = None
    if appointment_id is not None:
        appointment = Appointment.objects.filter(pk=appointment_id, child=child).first()
        if appointment is None:
            raise Invalid("No such appointment for this child.", code="unknown_appointment")
    fields: dict[str, Any] = {
        "title": title,
        "date": date,
        "text": text,
        "category": category.strip().lower(),
        "status": status,
        "author": author,
        "author_name": author_name,
        "appointment": appointment,
        "confidential": confidential,
    }
    if pdf is not None:
        checked = _checked_pdf(pdf)
        fields.update(
            pdf=base64.b64encode(checked).decode("ascii"),
            pdf_size=len(checked),
            pdf_sha256=hashlib.sha256(checked).hexdigest(),
        )
    moment = now or timezone.now()
    return _record(VisitSummary, Resource.DOCUMENT_REFERENCE, actor, child, source_id, fields, moment)


# -- the care team: comments and early release --------------------------------------------------


def result_for(access: ChildAccess, result_id: uuid.UUID, *, lock: bool = False) -> TestResult:
    """One of the child's results as the reader may see it (confidential, held or unreleased ones for
    the care team only), or 404."""
    rows = TestResult.objects.all()
    if not lock:  # PostgreSQL locks no row of an outer join's nullable side
        rows = rows.select_related("report", "ordering_clinician", "report__ordering_clinician")
    if not access.is_clinician:
        rows = rows.filter(family_results_q(timezone.now()))
    return child_row(rows, access, result_id, lock=lock, what="result")


def summary_for(access: ChildAccess, summary_id: uuid.UUID, *, lock: bool = False) -> VisitSummary:
    rows = VisitSummary.objects.all() if lock else VisitSummary.objects.select_related("author")
    if not access.is_clinician:
        rows = rows.filter(family_summaries_q(timezone.now()))
    return child_row(rows, access, summary_id, lock=lock, what="visit summary")


def result_comment_add(*, actor: User, access: ChildAccess, result_id: uuid.UUID, body: str) -> ResultComment:
    """A care-team clinician explains a result to the family (shown once the result is)."""
    access.require(Capability.TREAT)
    body = body.strip()
    if not body:
        raise Invalid("Write the comment.", code="comment_empty")
    if len(body) > COMMENT_MAX_CHARS:
        raise Invalid(f"A comment can be at most {COMMENT_MAX_CHARS} characters.", code="comment_too_long")
    with transaction.atomic():
        result = result_for(access, result_id, lock=True)
        comment = ResultComment(result=result, author=actor)
        comment.body = body
        comment.save(force_insert=True)
        audit_child(actor, audit.Action.CREATE, Resource.OBSERVATION, result.pk, access, "comment")
        if _released(result, timezone.now()):
            _publish(EventType.RESULT_COMMENTED, comment, access.child.pk, comment_id=str(comment.pk))
    return comment


def _release(actor: User | None, row: TestResult | VisitSummary, resource: Resource, now: datetime) -> bool:
    """Release a held row (the caller holds its lock); False when nothing was held. Its event was not
    published yet, even if its hold ran out before the sweep came: releasing publishes it."""
    if row.released_at is not None:
        return False
    row.released_at = now
    row.released_by = actor
    row.save(update_fields=["released_at", "released_by", "updated_at"])
    audit.record_for_child(
        actor, audit.Action.UPDATE, resource, row.pk, row.child_id, "released" if actor else "hold_expired"
    )
    _announce(row, False, False, now)
    return True


def result_release(*, actor: User, access: ChildAccess, result_id: uuid.UUID) -> TestResult:
    """A care-team clinician shows a held result to the family now (nothing happens if it is out)."""
    access.require(Capability.TREAT)
    with transaction.atomic():
        result = result_for(access, result_id, lock=True)
        _release(actor, result, Resource.OBSERVATION, timezone.now())
    return result


def visit_summary_release(*, actor: User, access: ChildAccess, summary_id: uuid.UUID) -> VisitSummary:
    """A care-team clinician shows a held visit summary to the family now."""
    access.require(Capability.TREAT)
    with transaction.atomic():
        summary = summary_for(access, summary_id, lock=True)
        _release(actor, summary, Resource.DOCUMENT_REFERENCE, timezone.now())
    return summary


def release_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Release every held result and visit summary whose hold has run out, each with its audit row and
    event (the worker's sweep runs it; ``manage.py release_held_results``). Returns how many."""
    moment = now or timezone.now()
    released = 0
    for model, resource in ((TestResult, Resource.OBSERVATION), (VisitSummary, Resource.DOCUMENT_REFERENCE)):
        with transaction.atomic():
            due = model.objects.select_for_update().filter(released_at__isnull=True, hold_until__lte=moment)
            for row in due.order_by("hold_until")[:batch]:
                # Families have seen it since hold_until (reads derive it): the event is the news.
                row.released_at = row.hold_until
                row.save(update_fields=["released_at", "updated_at"])
                audit.record_for_child(None, audit.Action.UPDATE, resource, row.pk, row.child_id, "hold_expired")
                _announce(row, False, False, moment)
                released += 1
    return released
