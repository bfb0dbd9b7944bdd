"""Writes of the messenger. Each service is atomic, takes the acting user and the ``ChildAccess`` the
handler got from ``child_for``, writes its audit rows, appends to the participants' event streams in
the same transaction (delivered after commit) and queues notifications after commit."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from care import scheduling
from messaging import alerts, files, notify, replies, routing, stream, triage
from messaging.conf import emergency_number, max_attachments_per_message, send_rate, upload_rate
from messaging.models import (
    Attachment,
    Message,
    NotificationPreference,
    Priority,
    Thread,
    ThreadAssignment,
    ThreadRead,
)
from portal import audit, idempotency, ratelimit
from portal.access import Capability, ChildAccess, current_membership_q
from portal.errors import Conflict, Invalid, NotFound
from portal.models import CareTeamMembership, User
from portal.vocabulary import EventType, Resource

THREAD = Resource.MESSAGE_THREAD
MESSAGE = Resource.COMMUNICATION
BINARY = Resource.BINARY


# -- helpers ------------------------------------------------------------------------------------


def _require(access: ChildAccess, capability: Capability) -> None:
    if not access.can(capability):
        raise NotFound("No such child.")


def _audit(
    actor: User | None, action: str, entity_type: Resource, entity_id: Any, access: ChildAccess, reason: str = ""
) -> None:
    audit.record_for_child(actor, action, entity_type, entity_id, access.child.pk, reason)


def thread_for(access: ChildAccess, thread_id: uuid.UUID, *, lock: bool = False) -> Thread:
    """A thread of the child that the user may see (confidential threads: the care team only)."""
    rows = Thread.objects.filter(pk=thread_id, child=access.child)
    if not access.is_clinician:
        rows = rows.filter(confidential=False)
    if lock:
        rows = rows.select_for_update()
    thread = rows.first()
    if thread is None:
        raise NotFound("No such conversation.")
    return thread


def _thread_event(thread: Thread, crowd: stream.Audience) -> None:
    stream.emit(
        users=crowd.everyone,
        type=EventType.THREAD_CHANGED,
        child_id=thread.child_id,
        entity_type=Resource.MESSAGE_THREAD,
        entity_id=thread.pk,
        confidential=thread.confidential,
        data={
            "status": thread.status,
            "priority": thread.priority,
            "assignee_id": str(thread.assignee_id) if thread.assignee_id else None,
        },
    )


def _message_event(message: Message, thread: Thread, crowd: stream.Audience) -> None:
    stream.emit(
        users=crowd.everyone,
        type=EventType.MESSAGE_CREATED,
        child_id=thread.child_id,
        entity_type=Resource.COMMUNICATION,
        entity_id=message.pk,
        confidential=thread.confidential,
        data={
            "thread_id": str(thread.pk),
            "kind": message.kind,
            "automatic": message.kind == Message.Kind.AUTOMATIC,
            "author_id": str(message.author_id) if message.author_id else None,
        },
    )


def _is_care_team(user_id: Any, access: ChildAccess, moment: datetime) -> bool:
    return CareTeamMembership.objects.filter(
        current_membership_q(moment), child=access.child, clinician_id=user_id, clinician__is_active=True
    ).exists()


# -- sending ------------------------------------------------------------------------------------


# A client_id is unique per author across threads: one idempotency scope for new threads and messages.
MESSAGE_SCOPE = "message.send"


def _existing(actor: User, client_id: uuid.UUID) -> Message | None:
    return Message.objects.filter(author=actor, client_id=client_id).select_related("thread").first()


def _attach(actor: User, access: ChildAccess, message: Message, attachment_ids: Sequence[uuid.UUID]) -> None:
    ids = list(dict.fromkeys(attachment_ids))
    if len(ids) > max_attachments_per_message():
        raise Invalid(f"At most {max_attachments_per_message()} attachments per message.", code="too_many_attachments")
    if not ids:
        return
    claimed = Attachment.objects.filter(pk__in=ids, uploaded_by=actor, child=access.child, message__isnull=True).update(
        message=message
    )
    if claimed != len(ids):
        raise Invalid("An attachment is unknown or was already sent.", code="attachment_not_found")


def _create_message(
    *,
    thread: Thread,
    author: User | None,
    kind: str,
    body: str,
    client_id: uuid.UUID | None,
    moment: datetime,
    reason: str = "",
) -> Message:
    thread.message_count += 1
    return Message.objects.create(
        thread=thread,
        position=thread.message_count,
        author=author,
        kind=kind,
        automatic_reason=reason,
        body=body,
        client_id=client_id,
        created_at=moment,
    )


def _automatic_reply(thread: Thread, reason: str, body: str, moment: datetime, crowd: stream.Audience) -> Message:
    message = _create_message(
        thread=thread, author=None, kind=Message.Kind.AUTOMATIC, body=body, client_id=None, moment=moment, reason=reason
    )
    _message_event(message, thread, crowd)
    return message


def _triage_context(access: ChildAccess, moment: datetime) -> triage.TriageContext:
    """The child's age (on the child's local date at ``moment``) and coded conditions, for triage."""
    child = access.child
    return triage.context_for(
        date_of_birth=child.date_of_birth, conditions=child.conditions or [], today=child.local_today(moment)
    )


def _family_message(
    *, actor: User, access: ChildAccess, thread: Thread, message: Message, moment: datetime, crowd: stream.Audience
) -> None:
    """Triage, the reply-by clock and the automatic replies for a message from a guardian."""
    if thread.status != Thread.Status.AWAITING_CARE_TEAM:
        thread.status = Thread.Status.AWAITING_CARE_TEAM
        thread.awaiting_since = moment
        thread.closed_at = None
        thread.escalated_at = None
        thread.escalated_to = None
        thread.reply_by = routing.route(
            child=access.child, topic=thread.topic, priority=thread.priority, moment=moment
        ).reply_by(moment)
    hit = triage.check(message.body, _triage_context(access, moment))
    if hit is not None:
        message.triage_categories = list(hit.categories)
        message.save(update_fields=["triage_categories"])
        thread.red_flag = True
        if thread.priority != Priority.URGENT:
            thread.priority = Priority.URGENT
            urgent = routing.route(child=access.child, topic=thread.topic, priority=Priority.URGENT, moment=moment)
            thread.reply_by = min(filter(None, [thread.reply_by, urgent.reply_by(moment)]))
        _automatic_reply(
            thread,
            Message.Reason.EMERGENCY,
            # In the language of the guardian who wrote (their account's), and in the language the message
            # was written in when that differs: an emergency reply must be read.
            "\n\n".join(
                triage.emergency_reply(language, emergency_number(), categories=hit.categories)
                for language in dict.fromkeys([actor.preferred_language, hit.language])
            ),
            moment,
            crowd,
        )
        _audit(actor, audit.Action.UPDATE, THREAD, thread.pk, access, reason="triage_red_flag")
        alerts.alert_raise(thread=thread, message=message, moment=moment, crowd=crowd)
    else:
        business = scheduling.department_hours(thread.pool_id)
        if not scheduling.is_open(moment, business):
            already = Message.objects.filter(
                thread=thread,
                automatic_reason=Message.Reason.AFTER_HOURS,
                created_at__gte=scheduling.last_close(moment, business),
            ).exists()
            if not already:
                expected = thread.reply_by or scheduling.next_open(moment, business)
                text = replies.after_hours(
                    language=actor.preferred_language,
                    number=emergency_number(),
                    when=expected,
                    time_zone=actor.time_zone,
                )
                _automatic_reply(thread, Message.Reason.AFTER_HOURS, text, moment, crowd)
    if thread.assignee_id and thread.assignee_id != actor.pk:
        notify.schedule([thread.assignee_id], "family_message")


def _care_team_message(*, actor: User, thread: Thread, moment: datetime, crowd: stream.Audience) -> None:
    if thread.first_reply_at is None:
        thread.first_reply_at = moment
    thread.status = Thread.Status.AWAITING_FAMILY
    thread.reply_by = None
    thread.awaiting_since = None
    thread.closed_at = None
    if thread.assignee_id is None:
        thread.assignee = actor
        ThreadAssignment.objects.create(
            thread=thread, kind=ThreadAssignment.Kind.CLAIM, to_user=actor, by=actor, at=moment
        )
    notify.schedule(crowd.guardians, "new_message")


def _post(
    *,
    actor: User,
    access: ChildAccess,
    thread: Thread,
    body: str,
    client_id: uuid.UUID,
    attachment_ids: Sequence[uuid.UUID],
    moment: datetime,
    new_thread: bool,
) -> Message:
    """Store one message from a participant and apply its consequences. Precondition: inside the
    transaction, holding the thread's row lock."""
    kind = Message.Kind.CARE_TEAM if access.is_clinician else Message.Kind.FAMILY
    try:
        with transaction.atomic():
            message = _create_message(
                thread=thread, author=actor, kind=kind, body=body, client_id=client_id, moment=moment
            )
    except IntegrityError:  # a concurrent retry with the same client id won the race
        raise Conflict("This message was already sent.", code="duplicate_send") from None
    _attach(actor, access, message, attachment_ids)
    crowd = stream.audience(access.child.pk, Capability.MESSAGE, thread.confidential, moment)
    thread.last_message_at = moment
    _message_event(message, thread, crowd)
    if kind == Message.Kind.FAMILY:
        _family_message(actor=actor, access=access, thread=thread, message=message, moment=moment, crowd=crowd)
    else:
        _care_team_message(actor=actor, thread=thread, moment=moment, crowd=crowd)
    thread.save(
        update_fields=[
            "status",
            "awaiting_since",
            "closed_at",
            "escalated_at",
            "escalated_to",
            "reply_by",
            "red_flag",
            "priority",
            "first_reply_at",
            "assignee",
            "last_message_at",
            "message_count",
        ]
    )
    ThreadRead.objects.update_or_create(thread=thread, user=actor, defaults={"read_at": moment})
    _thread_event(thread, crowd)
    _audit(actor, audit.Action.CREATE, MESSAGE, message.pk, access, reason="new_thread" if new_thread else "")
    return message


def _replay(actor: User, client_id: uuid.UUID, thread: Thread | None, body: str) -> Message | None:
    """The message an earlier try with this client id stored, or None; the same id for a different
    message is a client bug and refused."""
    earlier = _existing(actor, client_id)
    if earlier is None:
        return None
    if (thread is not None and earlier.thread_id != thread.pk) or earlier.body != body:
        raise Conflict("This client_id was used for a different message.", code="client_id_reused")
    return earlier


def thread_create(
    *,
    actor: User,
    access: ChildAccess,
    subject: str,
    topic: str,
    body: str,
    client_id: uuid.UUID,
    confidential: bool = False,
    attachment_ids: Sequence[uuid.UUID] = (),
) -> tuple[Thread, bool]:
    """A guardian or the care team starts a conversation about the child; it is routed to a pool with
    a reply-by time. Only the care team can start a confidential (adolescent) thread. A retry with the
    same ``client_id`` returns the thread made the first time (``created`` False)."""
    _require(access, Capability.MESSAGE)
    if confidential and not access.is_clinician:
        raise Invalid("Only the care team can open a confidential conversation.", code="confidential_not_allowed")
    with transaction.atomic():
        # Concurrent retries wait here for the first; then they find its message and replay it,
        # before the rate limit (a retry is not another message).
        idempotency.lock_key(user=actor, scope=MESSAGE_SCOPE, key=str(client_id))
        earlier = _replay(actor, client_id, None, body)
        if earlier is not None:
            if earlier.thread.child_id != access.child.pk:
                raise Conflict("This client_id was used for a different message.", code="client_id_reused")
            return earlier.thread, False
        ratelimit.enforce("message_send", [str(actor.pk)], send_rate())
        moment = timezone.now()
        priority = Priority.ROUTINE
        route = routing.route(child=access.child, topic=topic, priority=priority, moment=moment)
        thread = Thread.objects.create(
            child=access.child,
            subject=subject,
            topic=topic,
            priority=priority,
            confidential=confidential,
            opened_by_family=not access.is_clinician,
            pool=route.pool,
            created_by=actor,
            created_at=moment,
            last_message_at=moment,
            status=Thread.Status.AWAITING_CARE_TEAM if not access.is_clinician else Thread.Status.AWAITING_FAMILY,
            awaiting_since=moment if not access.is_clinician else None,
            reply_by=route.reply_by(moment) if not access.is_clinician else None,
        )
        _audit(actor, audit.Action.CREATE, THREAD, thread.pk, access)
        if access.is_clinician:
            # The care team started it: nobody owes the family a "first reply".
            thread.first_reply_at = moment
        _post(
            actor=actor,
            access=access,
            thread=thread,
            body=body,
            client_id=client_id,
            attachment_ids=attachment_ids,
            moment=moment,
            new_thread=True,
        )
    return thread, True


def message_send(
    *,
    actor: User,
    access: ChildAccess,
    thread_id: uuid.UUID,
    body: str,
    client_id: uuid.UUID,
    attachment_ids: Sequence[uuid.UUID] = (),
) -> tuple[Message, bool]:
    """Add a message to a thread (a guardian's reopens a closed one). Idempotent by ``client_id``."""
    _require(access, Capability.MESSAGE)
    with transaction.atomic():
        idempotency.lock_key(user=actor, scope=MESSAGE_SCOPE, key=str(client_id))
        thread = thread_for(access, thread_id, lock=True)
        earlier = _replay(actor, client_id, thread, body)
        if earlier is not None:
            return earlier, False
        ratelimit.enforce("message_send", [str(actor.pk)], send_rate())
        message = _post(
            actor=actor,
            access=access,
            thread=thread,
            body=body,
            client_id=client_id,
            attachment_ids=attachment_ids,
            moment=timezone.now(),
            new_thread=False,
        )
    return message, True


def thread_mark_read(*, actor: User, access: ChildAccess, thread_id: uuid.UUID) -> ThreadRead:
    """Record that the user has read everything in the thread so far (a read receipt)."""
    _require(access, Capability.MESSAGE)
    moment = timezone.now()
    with transaction.atomic():
        thread = thread_for(access, thread_id)
        receipt, _ = ThreadRead.objects.update_or_create(thread=thread, user=actor, defaults={"read_at": moment})
        crowd = stream.audience(access.child.pk, Capability.MESSAGE, thread.confidential, moment)
        stream.emit(
            users=crowd.everyone,
            type=EventType.RECEIPT_UPDATED,
            child_id=thread.child_id,
            entity_type=Resource.MESSAGE_THREAD,
            entity_id=thread.pk,
            confidential=thread.confidential,
            data={"thread_id": str(thread.pk), "user_id": str(actor.pk), "read_at": moment.isoformat()},
        )
    return receipt


# -- the care team's handling -------------------------------------------------------------------


def _assign(
    *, actor: User, access: ChildAccess, thread_id: uuid.UUID, assignee_id: uuid.UUID, kind: str | None = None
) -> Thread:
    _require(access, Capability.TREAT)
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
        _audit(actor, audit.Action.UPDATE, THREAD, thread.pk, access, reason=kind)
        _thread_event(thread, stream.audience(access.child.pk, Capability.MESSAGE, thread.confidential, moment))
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
    _require(access, Capability.TREAT)
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
        _audit(actor, audit.Action.UPDATE, THREAD, thread.pk, access, reason="close")
        _thread_event(thread, stream.audience(access.child.pk, Capability.MESSAGE, thread.confidential, moment))
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
            crowd = stream.audience(thread.child_id, Capability.MESSAGE, thread.confidential, moment)
            if leads:
                notify.schedule(leads, "escalation")
                stream.emit(
                    users={lead for lead in leads if lead in crowd.care_team},
                    type=EventType.NOTIFICATION,
                    child_id=thread.child_id,
                    entity_type=Resource.MESSAGE_THREAD,
                    entity_id=thread.pk,
                    confidential=thread.confidential,
                    data={"kind": "escalation", "thread_id": str(thread.pk)},
                )
            _thread_event(thread, crowd)
            escalated.append(thread)
    return escalated


# -- attachments --------------------------------------------------------------------------------


def attachment_upload(*, actor: User, access: ChildAccess, filename: str, data: bytes) -> Attachment:
    """Check and store a file (encrypted) for the user's next message about this child."""
    _require(access, Capability.MESSAGE)
    ratelimit.enforce("attachment_upload", [str(actor.pk)], upload_rate())
    checked = files.check(data, filename)
    with transaction.atomic():
        attachment = Attachment(
            child=access.child,
            uploaded_by=actor,
            content_type=checked.content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            filename=filename[:200] or f"attachment{checked.extension}",
        )
        # The associated data names the row, so the primary key must exist before encrypting.
        attachment.content = base64.b64encode(data).decode("ascii")
        attachment.save(force_insert=True)
        _audit(actor, audit.Action.CREATE, BINARY, attachment.pk, access)
    return attachment


# -- preferences --------------------------------------------------------------------------------


def preferences_update(*, actor: User, **fields: Any) -> NotificationPreference:
    with transaction.atomic():
        pref, _ = NotificationPreference.objects.get_or_create(user=actor)
        for name, value in fields.items():
            setattr(pref, name, value)
        if fields:
            pref.save(update_fields=list(fields))
        audit.record(
            actor=actor, action=audit.Action.UPDATE, entity_type=Resource.NOTIFICATION_PREFERENCE, entity_id=pref.pk
        )
    return pref
