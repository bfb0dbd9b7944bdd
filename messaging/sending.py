"""Sending messages: a new thread or a message in one, and what a message sets off (triage, the
reply-by clock, automatic replies, an urgent alert, notifications). Each service is atomic, takes the
acting user and the ``ChildAccess`` the handler got from ``child_for``, writes its audit rows and
publishes the thread's events (``messaging.publish``) in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from care import scheduling
from messaging import alerts, notify, publish, replies, routing, triage
from messaging.conf import emergency_number, max_attachments_per_message, send_rate
from messaging.models import Attachment, Message, Priority, Thread, ThreadAssignment, ThreadRead
from messaging.selectors import thread_for
from portal import audit, idempotency, ratelimit
from portal.access import Capability, ChildAccess
from portal.errors import Conflict, Invalid
from portal.models import User
from portal.vocabulary import Resource

THREAD = Resource.MESSAGE_THREAD
MESSAGE = Resource.COMMUNICATION


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
    for attachment_id in ids:
        audit.record_for_child(actor, audit.Action.UPDATE, Resource.BINARY, attachment_id, access.child.pk, "attached")


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


def _automatic_reply(thread: Thread, reason: str, body: str, moment: datetime, automatic: list[Message]) -> None:
    """Store an automatic reply; ``_post`` publishes it after the message it answers."""
    automatic.append(
        _create_message(
            thread=thread,
            author=None,
            kind=Message.Kind.AUTOMATIC,
            body=body,
            client_id=None,
            moment=moment,
            reason=reason,
        )
    )


def _triage_context(access: ChildAccess, moment: datetime) -> triage.TriageContext:
    """The child's age (on the child's local date at ``moment``) and coded conditions, for triage."""
    child = access.child
    return triage.context_for(
        date_of_birth=child.date_of_birth, conditions=child.conditions or [], today=child.local_today(moment)
    )


def _family_message(
    *,
    actor: User,
    access: ChildAccess,
    thread: Thread,
    message: Message,
    moment: datetime,
    crowd: publish.Audience,
    automatic: list[Message],
) -> None:
    """Triage, the reply-by clock and the automatic replies (added to ``automatic``) for a message from
    a guardian."""
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
            automatic,
        )
        audit.record_for_child(actor, audit.Action.UPDATE, THREAD, thread.pk, access.child.pk, reason="triage_red_flag")
        alerts.alert_raise(thread=thread, message=message, moment=moment, crowd=crowd)
    else:
        closed = scheduling.closed_period(thread.pool_id, moment)
        if closed is not None:
            already = Message.objects.filter(
                thread=thread, automatic_reason=Message.Reason.AFTER_HOURS, created_at__gte=closed.since
            ).exists()
            if not already:
                expected = thread.reply_by or closed.reopens
                text = replies.after_hours(
                    language=actor.preferred_language,
                    number=emergency_number(),
                    when=expected,
                    time_zone=actor.time_zone,
                )
                _automatic_reply(thread, Message.Reason.AFTER_HOURS, text, moment, automatic)
    if thread.assignee_id and thread.assignee_id != actor.pk:
        notify.schedule([thread.assignee_id], "family_message")


def _care_team_message(*, actor: User, thread: Thread, moment: datetime, crowd: publish.Audience) -> None:
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
    transaction, holding the thread's row lock.

    The message's ``message.created`` event is the transaction's last write but for the automatic
    replies' events, and its push the first thing after the commit: everything else the message sets
    off (triage, notifications, the claim, the read receipt, ``thread.changed``, audit) is written
    before it and delivered after it."""
    kind = Message.Kind.CARE_TEAM if access.is_clinician else Message.Kind.FAMILY
    try:
        # No savepoint: a duplicate fails the whole send anyway (and the idempotency lock held since
        # the start of the transaction already keeps a concurrent retry out).
        with transaction.atomic(savepoint=False):
            message = _create_message(
                thread=thread, author=actor, kind=kind, body=body, client_id=client_id, moment=moment
            )
    except IntegrityError:  # a concurrent retry with the same client id won the race
        raise Conflict("This message was already sent.", code="duplicate_send") from None
    _attach(actor, access, message, attachment_ids)
    crowd = publish.participants(thread, moment)
    thread.last_message_at = moment
    automatic: list[Message] = []
    if kind == Message.Kind.FAMILY:
        _family_message(
            actor=actor, access=access, thread=thread, message=message, moment=moment, crowd=crowd, automatic=automatic
        )
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
    # One upsert (the author has read their own thread up to now).
    ThreadRead.objects.bulk_create(
        [ThreadRead(thread=thread, user=actor, read_at=moment)],
        update_conflicts=True,
        unique_fields=["thread", "user"],
        update_fields=["read_at"],
    )
    publish.thread_changed(thread, crowd)
    audit.record_for_child(
        actor, audit.Action.CREATE, MESSAGE, message.pk, access.child.pk, reason="new_thread" if new_thread else ""
    )
    publish.message_created(message, thread, crowd, first=True)
    for reply in automatic:
        publish.message_created(reply, thread, crowd)
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
    access.require(Capability.MESSAGE)
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
        audit.record_for_child(actor, audit.Action.CREATE, THREAD, thread.pk, access.child.pk)
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
    access.require(Capability.MESSAGE)
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
