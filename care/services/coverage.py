"""Insurance coverage: guardians submit card details, staff verify them; a card that starts later
replaces the active one on its first day."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date

from django.db import transaction
from django.utils import timezone

from care.models import (
    Coverage,
)
from care.services.common import audit_child, publish
from portal import audit
from portal.access import Capability, ChildAccess
from portal.errors import Conflict, NotFound
from portal.models import User
from portal.vocabulary import EventType, Resource


def coverage_submit(
    *,
    actor: User,
    access: ChildAccess,
    payer: str,
    member_id: str,
    plan_name: str = "",
    group_number: str = "",
    subscriber_name: str = "",
    subscriber_relationship: str = "parent",
    period_start: date | None = None,
    period_end: date | None = None,
    copays: dict[str, str] | None = None,
) -> Coverage:
    """A guardian submits new card details; they show as pending until staff verify them."""
    access.require(Capability.FAMILY_CLINICAL)
    with transaction.atomic():
        _supersede(actor, access, [Coverage.Status.PENDING])
        coverage = Coverage.objects.create(
            child=access.child,
            status=Coverage.Status.PENDING,
            payer=payer,
            plan_name=plan_name,
            member_id=member_id,
            group_number=group_number,
            subscriber_name=subscriber_name,
            subscriber_relationship=subscriber_relationship,
            period_start=period_start,
            period_end=period_end,
            copays=copays or {},
            submitted_by=actor,
        )
        audit_child(actor, audit.Action.CREATE, Resource.COVERAGE, coverage.pk, access, "submitted")
        publish(
            EventType.COVERAGE_CHANGED,
            access,
            Resource.COVERAGE,
            coverage.pk,
            actor,
            Capability.CLINICAL,
            status=coverage.status,
        )
    return coverage


def coverage_statuses(rows: Iterable[Coverage], today: date) -> dict[uuid.UUID, str]:
    """Each row's status as of ``today`` (the child's local date): verified coverage whose period has
    started replaces the active one, without waiting for a job to write it down."""
    rows = list(rows)
    statuses = {row.pk: row.status for row in rows}
    started = [
        row
        for row in rows
        if row.status == Coverage.Status.PENDING_START and row.period_start is not None and row.period_start <= today
    ]
    if started:
        current = max(started, key=lambda row: (row.period_start, row.verified_at or row.submitted_at))
        for row in rows:
            if row.status == Coverage.Status.ACTIVE or row in started:
                statuses[row.pk] = Coverage.Status.SUPERSEDED
        statuses[current.pk] = Coverage.Status.ACTIVE
    return statuses


def _supersede(actor: User, access: ChildAccess, statuses: list[str]) -> None:
    """Mark the child's coverage in ``statuses`` superseded, one audited write per row (call inside a
    transaction)."""
    for row in Coverage.objects.select_for_update().filter(child=access.child, status__in=statuses):
        row.status = Coverage.Status.SUPERSEDED
        row.save(update_fields=["status", "updated_at"])
        audit_child(actor, audit.Action.UPDATE, Resource.COVERAGE, row.pk, access, "superseded")


def _coverage_settle(actor: User, access: ChildAccess, today: date) -> None:
    """Write down the statuses ``coverage_statuses`` derives, each change audited (call inside a
    transaction)."""
    rows = list(
        Coverage.objects.select_for_update().filter(
            child=access.child, status__in=[Coverage.Status.ACTIVE, Coverage.Status.PENDING_START]
        )
    )
    statuses = coverage_statuses(rows, today)
    for row in rows:
        status = statuses[row.pk]
        if status != row.status:
            row.status = status
            row.save(update_fields=["status", "updated_at"])
            reason = "started" if status == Coverage.Status.ACTIVE else "superseded"
            audit_child(actor, audit.Action.UPDATE, Resource.COVERAGE, row.pk, access, reason)


def coverage_verify(
    *, actor: User, access: ChildAccess, coverage_id: uuid.UUID, accept: bool, reason: str = ""
) -> Coverage:
    """Staff verify or reject pending coverage. Verified coverage that starts today or earlier becomes
    active (the old one superseded); coverage that starts later is ``pending_start`` and the current
    coverage stays active until that day (in the child's time zone)."""
    access.require(Capability.MANAGE)
    with transaction.atomic():
        coverage = Coverage.objects.select_for_update().filter(pk=coverage_id, child=access.child).first()
        if coverage is None:
            raise NotFound("No such coverage.")
        if coverage.status != Coverage.Status.PENDING:
            raise Conflict("Only pending coverage can be verified.", code="not_pending")
        today = access.child.local_today()
        _coverage_settle(actor, access, today)
        if accept and coverage.period_start is not None and coverage.period_start > today:
            # A later verification replaces an earlier card that has not started yet.
            _supersede(actor, access, [Coverage.Status.PENDING_START])
            coverage.status = Coverage.Status.PENDING_START
        elif accept:
            _supersede(actor, access, [Coverage.Status.ACTIVE, Coverage.Status.PENDING_START])
            coverage.status = Coverage.Status.ACTIVE
        else:
            coverage.status = Coverage.Status.REJECTED
            coverage.rejection_reason = reason[:200]
        coverage.verified_by = actor
        coverage.verified_at = timezone.now()
        coverage.save(update_fields=["status", "verified_by", "verified_at", "rejection_reason", "updated_at"])
        audit_child(
            actor, audit.Action.UPDATE, Resource.COVERAGE, coverage.pk, access, "verified" if accept else "rejected"
        )
        publish(
            EventType.COVERAGE_CHANGED,
            access,
            Resource.COVERAGE,
            coverage.pk,
            actor,
            Capability.CLINICAL,
            status=coverage.status,
        )
    return coverage
