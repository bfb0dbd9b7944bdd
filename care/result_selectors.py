"""Reads of the child's test results and visit summaries, scoped by the access policy and audited.

Guardians (full scope: results are clinical content) read what is released, in a status families
read, and not adolescent-confidential; the care team reads everything, held items included. A
guardian's list or opening moves their results-seen marker (``care.services.results_seen``), which
``/me/today`` reads to show what is new.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from django.utils import timezone

from care.models import ResultComment, TestResult, VisitSummary
from care.services.results import family_results_q, family_summaries_q, result_for, summary_for
from care.services.results_seen import Kind, release_moment, results_seen_mark
from portal import audit
from portal.access import ChildAccess
from portal.errors import NotFound
from portal.models import User
from portal.pagination import Pager
from portal.vocabulary import Resource

LIST_LIMIT = 200


def results_list(
    *,
    user: User,
    access: ChildAccess,
    limit: int = 50,
    offset: int = 0,
    category: str | None = None,
    now: datetime | None = None,
    page: Pager | None = None,
) -> list[TestResult]:
    """The child's results the reader may see, newest first (by when the sample or study was taken),
    ``limit`` at most (``LIST_LIMIT``), after ``offset``; with ``page``, that page instead."""
    moment = now or timezone.now()
    rows = TestResult.objects.filter(child=access.child).select_related(
        "report", "ordering_clinician", "report__ordering_clinician"
    )
    if not access.is_clinician:
        rows = rows.filter(family_results_q(moment))
    if category:
        rows = rows.filter(category=category.strip().lower())
    rows = rows.order_by("-effective_at", "-recorded_at", "id")
    found = list(page.queryset(rows) if page is not None else rows[offset : offset + min(limit, LIST_LIMIT)])
    audit.reads(user, Resource.OBSERVATION, [access.child.pk])
    if not access.is_clinician:
        results_seen_mark(guardian_id=user.pk, child_id=access.child.pk, kind="results", upto=moment)
    return found


def _seen(user: User, access: ChildAccess, kind: Kind, row: TestResult | VisitSummary) -> None:
    """A guardian opened one item: what came out until it did is seen."""
    upto = release_moment(row)
    if not access.is_clinician and upto is not None:
        results_seen_mark(guardian_id=user.pk, child_id=access.child.pk, kind=kind, upto=upto)


def _refused(user: User, resource: Resource, entity_id: uuid.UUID) -> NotFound:
    """A result or summary the reader may not see (held, confidential, another child's, none): the
    same 404 as a missing one, audited."""
    audit.deny(actor=user, entity_type=resource, entity_id=str(entity_id), reason="not_visible")
    return NotFound("No such item.")


def result_detail(*, user: User, access: ChildAccess, result_id: uuid.UUID) -> TestResult:
    """One result with its report and the care team's comments."""
    try:
        result = result_for(access, result_id)
    except NotFound:
        raise _refused(user, Resource.OBSERVATION, result_id) from None
    comments = ResultComment.objects.filter(result=result).select_related("author").order_by("created_at")
    result.shown_comments = list(comments[:LIST_LIMIT])  # type: ignore[attr-defined]
    audit.record_for_child(user, audit.Action.READ, Resource.OBSERVATION, result.pk, access.child.pk)
    _seen(user, access, "results", result)
    return result


def summaries_list(
    *,
    user: User,
    access: ChildAccess,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
    page: Pager | None = None,
) -> list[VisitSummary]:
    """The child's visit summaries the reader may see, newest first (without their PDF bytes)."""
    moment = now or timezone.now()
    rows = VisitSummary.objects.filter(child=access.child).select_related("author").defer("pdf", "text")
    if not access.is_clinician:
        rows = rows.filter(family_summaries_q(moment))
    rows = rows.order_by("-date", "-recorded_at", "id")
    found = list(page.queryset(rows) if page is not None else rows[offset : offset + min(limit, LIST_LIMIT)])
    audit.reads(user, Resource.DOCUMENT_REFERENCE, [access.child.pk])
    if not access.is_clinician:
        results_seen_mark(guardian_id=user.pk, child_id=access.child.pk, kind="summaries", upto=moment)
    return found


def summary_detail(*, user: User, access: ChildAccess, summary_id: uuid.UUID) -> VisitSummary:
    try:
        summary = summary_for(access, summary_id)
    except NotFound:
        raise _refused(user, Resource.DOCUMENT_REFERENCE, summary_id) from None
    audit.record_for_child(user, audit.Action.READ, Resource.DOCUMENT_REFERENCE, summary.pk, access.child.pk)
    _seen(user, access, "summaries", summary)
    return summary


def summary_pdf(*, user: User, access: ChildAccess, summary_id: uuid.UUID) -> tuple[VisitSummary, bytes]:
    """The summary's PDF (decrypted), or 404 when there is none or the reader may not see it."""
    try:
        summary = summary_for(access, summary_id)
    except NotFound:
        raise _refused(user, Resource.DOCUMENT_REFERENCE, summary_id) from None
    if not summary.pdf_size:
        raise NotFound("This visit summary has no PDF.")
    audit.record_for_child(user, audit.Action.READ, Resource.DOCUMENT_REFERENCE, summary.pk, access.child.pk, "pdf")
    return summary, base64.b64decode(summary.pdf)
