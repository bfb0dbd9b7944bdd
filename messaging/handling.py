"""The care team's handling of threads (claim, assign, close, the overdue escalation) and read
receipts. Each service is atomic, writes its audit rows and publishes the thread's events
(``messaging.publish``) in the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from care import scheduling
from messaging import notify, publish
from messaging.models import Thread, ThreadAssignment, ThreadRead
from messaging.selectors import thread_for
from portal import audit
from portal.access import Capability, ChildAccess, current_membership_q
from portal.errors import Conflict, Invalid
from portal.models import CareTeamMembership, User
from portal.vocabulary import Resource

THREAD = Resource.MESSAGE_THREAD


def _is_care_team(user_id: Any, access: ChildAccess, moment: datetime) -> bool:
    return CareTeamMembership.objects.filter(
        current_membership_q(moment), child=access.child, clinician_id=user_id, clinician__is_active=True
    ).exists()


def thread_mark_read(*, actor: User, access: ChildAccess, thread_id: uuid.UUID) -> ThreadRead:
    """Record that the user has read everything in the thread so far (a read receipt)."""
    access.require(Capability.MESSAGE)
    moment = timezone.now()
    with transaction.atomic():
        thread = thread_for(access, thread_id)
        receipt, _ = ThreadRead.objects.update_or_create(thread=thread, user=actor, defaults={"read_at": moment})
        crowd = publish.participants(thread, moment)
        publish.receipt_updated(thread, crowd, reader_id=actor.pk, read_at=moment)
    return receipt


def _assign(
    *, actor: User, access: ChildAccess, thread_id: uuid.UUID, assignee_id: uuid.UUID, kind: str | None = None
) -> Thread:
    access.require(Capability.TREAT)
    moment = timezone.now()
    with transaction.atomic():
        thread = thread_for(access, thread_id, lock=True)
        if thread.status == Thread.Status.CLOSED:
            raise Conflict("The conversation is closed.", code="thread_closed")
        if not _is_care_team(assignee_id, access, moment):
            raise Invalid("The assignee must be on the child's care team.", code="not_on_care_team")
        if thread.assignee_id == assignee_id:
            return thread
        previous = thread.assignee_id
        if kind is None:
            kind = ThreadAssignment.Kind.REASSIGN if previous else ThreadAssignment.Kind.ASSIGN
        ThreadAssignment.objects.create(
            thread=thread, kind=kind, from_user_id=previous, to_user_id=assignee_id, by=actor, at=moment
        )
        thread.assignee_id = assignee_id
        thread.save(update_fields=["assignee"])
        audit.record_for_child(actor, audit.Action.UPDATE, THREAD, thread.pk, access.child.pk, reason=kind)
        publish.thread_changed(thread, publish.participants(thread, moment))
    return thread


def thread_claim(*, actor: User, access: ChildAccess, thread_id: uuid.UUID) -> Thread:
    """A clinician of the care team takes the thread (from whoever held it)."""
    return _assign(
        actor=actor, access=access, thread_id=thread_id, assignee_id=actor.pk, kind=ThreadAssignment.Kind.CLAIM
    )


def thread_assign(*, actor: User, access: ChildAccess, thread_id: uuid.UUID, assignee_id: uuid.UUID) -> Thread:
    """Assign (or reassign) the thread to a clinician of the child's care team; history is kept."""
    return _assign(actor=actor, access=access, thread_id=thread_id, assignee_id=assignee_id)


def thread_close(*, actor: User, access: ChildAccess, thread_id: uuid.UUID) -> Thread:
    access.require(Capability.TREAT)
    moment = timezone.now()
    with transaction.atomic():
        thread = thread_for(access, thread_id, lock=True)
        if thread.status == Thread.Status.CLOSED:
            return thread
        thread.status = Thread.Status.CLOSED
        thread.closed_at = moment
        thread.reply_by = None
        thread.awaiting_since = None
        thread.save(update_fields=["status", "closed_at", "reply_by", "awaiting_since"])
        audit.record_for_child(actor, audit.Action.UPDATE, THREAD, thread.pk, access.child.pk, reason="close")
        publish.thread_changed(thread, publish.participants(thread, moment))
    return thread


def thread_escalate_overdue(*, now: datetime | None = None) -> list[Thread]:
    """Hand every thread past its reply-by time (and not yet escalated) to its pool lead, record it in
    the assignment history, and tell the lead. Run by ``manage.py escalate_overdue`` or its task."""
    moment = now or timezone.now()
    escalated = []
    overdue = list(
        Thread.objects.filter(
            status=Thread.Status.AWAITING_CARE_TEAM, reply_by__lt=moment, escalated_at__isnull=True
        ).values_list("pk", flat=True)[:1000]
    )
    for thread_id in overdue:
        with transaction.atomic():
            thread = (
                Thread.objects.select_for_update()
                .filter(pk=thread_id, status=Thread.Status.AWAITING_CARE_TEAM, escalated_at__isnull=True)
                .first()
            )
            if thread is None:
                continue
            leads = scheduling.department_leads(thread.pool_id)
            thread.escalated_at = moment
            thread.escalated_to_id = leads[0] if leads else None
            thread.save(update_fields=["escalated_at", "escalated_to"])
            ThreadAssignment.objects.create(
                thread=thread,
                kind=ThreadAssignment.Kind.ESCALATE,
                from_user_id=thread.assignee_id,
                to_user_id=thread.escalated_to_id,
                by=None,
                at=moment,
            )
            audit.record(
                actor=None,
                action=audit.Action.UPDATE,
                entity_type=THREAD,
                entity_id=thread.pk,
                child_id=thread.child_id,
                reason="escalate_overdue",
            )
            crowd = publish.participants(thread, moment)
            if leads:
                notify.schedule(leads, "escalation")
                publish.notified(leads, thread, crowd, kind="escalation")
            publish.thread_changed(thread, crowd)
            escalated.append(thread)
    return escalated
