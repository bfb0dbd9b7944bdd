"""Urgent alerts: a red-flag message pages the on-call clinician at once, must be acknowledged by the
child's care team, and escalates while nobody does.

The chain, one level every ``PORTAL_ALERT_ACK_MINUTES``: the first clinician of care's on-call rota
(``care.scheduling.on_call_rota``: the child's care team first), then the next one on call, then the
department's lead(s). A level with nobody to page is skipped; when nobody is left, the alert stays
open (shown in the inbox) with an ``unanswered`` step. Every step is an ``AlertStep``, an audit row
(no PHI: ids and the level only) and an ``alert.changed`` event on the care team's streams; the paged
clinicians also get a ``notification`` event and an urgent email/SMS sent right after commit
(``notify.schedule(urgent=True)``), so a dead task queue does not silence a page.

The escalation sweep (``alerts_escalate_due``) runs in the worker's loop (``manage.py portal_worker``)
and from ``manage.py escalate_alerts``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from care import scheduling
from messaging import notify, stream
from messaging.conf import alert_ack_minutes
from messaging.models import AlertStep, Message, Thread, UrgentAlert
from portal import audit
from portal.access import Capability, ChildAccess
from portal.errors import NotFound
from portal.models import User
from portal.vocabulary import EventType, Resource

ALERT = Resource.URGENT_ALERT
Level = UrgentAlert.Level


def _targets(alert: UrgentAlert, thread: Thread, level: int, moment: datetime) -> tuple[int, list[uuid.UUID]]:
    """The level actually reached from ``level`` and who to page there (nobody paged twice)."""
    paged = set(
        AlertStep.objects.filter(alert=alert, kind__in=[AlertStep.Kind.PAGE, AlertStep.Kind.ESCALATE]).values_list(
            "user_id", flat=True
        )
    )
    if level <= Level.NEXT_ON_CALL:
        rota = scheduling.on_call_rota(child_id=thread.child_id, department=thread.pool, moment=moment)
        fresh = [user_id for user_id in rota if user_id not in paged]
        if fresh:
            return level, fresh[:1]
    return Level.LEAD, [user_id for user_id in scheduling.department_leads(thread.pool_id) if user_id not in paged]


def _changed(alert: UrgentAlert, thread: Thread, crowd: stream.Audience) -> None:
    stream.emit(
        users=crowd.care_team,
        type=EventType.ALERT_CHANGED,
        child_id=thread.child_id,
        entity_type=Resource.URGENT_ALERT,
        entity_id=alert.pk,
        capability=Capability.TREAT,
        confidential=thread.confidential,
        data={
            "thread_id": str(thread.pk),
            "status": alert.status,
            "level": alert.level,
            "acknowledged_by": str(alert.acknowledged_by_id) if alert.acknowledged_by_id else None,
        },
    )


def _step(
    *,
    alert: UrgentAlert,
    thread: Thread,
    kind: str,
    level: int,
    users: list[uuid.UUID],
    moment: datetime,
    crowd: stream.Audience,
) -> None:
    """Record and carry out one step: page ``users`` (or record that nobody was left)."""
    if not users:
        AlertStep.objects.create(alert=alert, kind=AlertStep.Kind.UNANSWERED, level=level, at=moment)
        audit.record(
            actor=None,
            action=audit.Action.UPDATE,
            entity_type=ALERT,
            entity_id=alert.pk,
            child_id=thread.child_id,
            reason="alert_unanswered",
        )
        return
    AlertStep.objects.bulk_create(
        [AlertStep(alert=alert, kind=kind, level=level, user_id=user_id, at=moment) for user_id in users]
    )
    audit.record(
        actor=None,
        action=audit.Action.UPDATE,
        entity_type=ALERT,
        entity_id=alert.pk,
        child_id=thread.child_id,
        reason=f"alert_{kind}_level_{level}",
    )
    notice = "urgent_message" if kind == AlertStep.Kind.PAGE else "urgent_escalation"
    notify.schedule(users, notice, urgent=True)
    stream.emit(
        users={user_id for user_id in users if user_id in crowd.care_team},
        type=EventType.NOTIFICATION,
        child_id=thread.child_id,
        entity_type=Resource.MESSAGE_THREAD,
        entity_id=thread.pk,
        capability=Capability.TREAT,
        confidential=thread.confidential,
        data={"kind": notice, "thread_id": str(thread.pk), "alert_id": str(alert.pk), "level": level},
    )


def _next_deadline(level: int, moment: datetime) -> datetime | None:
    return moment + timedelta(minutes=alert_ack_minutes()) if level < Level.LEAD else None


def alert_raise(*, thread: Thread, message: Message, moment: datetime, crowd: stream.Audience) -> UrgentAlert:
    """Open an alert for a red-flag message and page the first on-call clinician. A thread with an
    alert still open keeps that one (it is already paging). Precondition: inside the transaction that
    stores the message, holding the thread's row lock."""
    existing = UrgentAlert.objects.filter(thread=thread, status=UrgentAlert.Status.OPEN).first()
    if existing is not None:
        return existing
    alert = UrgentAlert.objects.create(thread=thread, message=message, created_at=moment)
    level, users = _targets(alert, thread, Level.ON_CALL, moment)
    alert.level = level
    alert.escalate_at = _next_deadline(level, moment) if users else None
    alert.save(update_fields=["level", "escalate_at"])
    audit.record(
        actor=None,
        action=audit.Action.CREATE,
        entity_type=ALERT,
        entity_id=alert.pk,
        child_id=thread.child_id,
        reason="triage_red_flag",
    )
    _step(alert=alert, thread=thread, kind=AlertStep.Kind.PAGE, level=level, users=users, moment=moment, crowd=crowd)
    _changed(alert, thread, crowd)
    return alert


def alert_acknowledge(*, actor: User, access: ChildAccess, alert_id: uuid.UUID) -> UrgentAlert:
    """A clinician of the child's care team acknowledges the alert: escalation stops. Acknowledging
    again changes nothing."""
    if not access.can(Capability.TREAT):
        raise NotFound("No such child.")
    moment = timezone.now()
    if not UrgentAlert.objects.filter(pk=alert_id, thread__child=access.child).exists():
        audit.deny(actor=actor, entity_type=ALERT, entity_id=str(alert_id), reason="no_alert")
        raise NotFound("No such alert.")
    with transaction.atomic():
        alert = UrgentAlert.objects.select_for_update().select_related("thread").get(pk=alert_id)
        if alert.status == UrgentAlert.Status.ACKNOWLEDGED:
            return alert
        thread = alert.thread
        alert.status = UrgentAlert.Status.ACKNOWLEDGED
        alert.acknowledged_by = actor
        alert.acknowledged_at = moment
        alert.escalate_at = None
        alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "escalate_at"])
        AlertStep.objects.create(alert=alert, kind=AlertStep.Kind.ACKNOWLEDGE, level=alert.level, user=actor, at=moment)
        audit.record_for_child(actor, audit.Action.UPDATE, ALERT, alert.pk, access.child.pk, reason="alert_acknowledge")
        _changed(alert, thread, stream.audience(thread.child_id, Capability.MESSAGE, thread.confidential, moment))
    return alert


def alerts_escalate_due(*, now: datetime | None = None, limit: int = 500) -> list[UrgentAlert]:
    """Move every open alert past its deadline one level up the chain (next on call, then the lead)."""
    moment = now or timezone.now()
    due = list(
        UrgentAlert.objects.filter(status=UrgentAlert.Status.OPEN, escalate_at__lte=moment)
        .order_by("escalate_at")
        .values_list("pk", flat=True)[:limit]
    )
    escalated = []
    for alert_id in due:
        with transaction.atomic():
            alert = (
                UrgentAlert.objects.select_for_update()
                .select_related("thread")
                .filter(pk=alert_id, status=UrgentAlert.Status.OPEN, escalate_at__lte=moment)
                .first()
            )
            if alert is None:
                continue
            thread = alert.thread
            crowd = stream.audience(thread.child_id, Capability.MESSAGE, thread.confidential, moment)
            level, users = _targets(alert, thread, alert.level + 1, moment)
            alert.level = level
            alert.escalate_at = _next_deadline(level, moment) if users else None
            alert.save(update_fields=["level", "escalate_at"])
            _step(
                alert=alert,
                thread=thread,
                kind=AlertStep.Kind.ESCALATE,
                level=level,
                users=users,
                moment=moment,
                crowd=crowd,
            )
            _changed(alert, thread, crowd)
            escalated.append(alert)
    return escalated
