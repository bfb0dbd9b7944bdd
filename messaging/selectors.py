"""Reads of the messenger, scoped by the access policy and audited."""

from __future__ import annotations

import base64
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import (
    AlertStep,
    Attachment,
    Message,
    NotificationPreference,
    PushSubscription,
    Thread,
    ThreadAssignment,
    ThreadRead,
    UrgentAlert,
)
from portal import audit
from portal.access import ChildAccess, care_team_memberships, current_membership_q, hide_confidential
from portal.errors import NotFound
from portal.models import CareTeamMembership, DepartmentMembership, User
from portal.pagination import Pager
from portal.prepared import Prepared
from portal.vocabulary import Resource

# -- unread counts ------------------------------------------------------------------------------


MESSAGE = Resource.COMMUNICATION
BINARY = Resource.BINARY


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


def _unread_messages(user: User | uuid.UUID, now: datetime) -> QuerySet[Message]:
    """Messages by others, in threads the user may see, newer than the user's read receipt."""
    on_team = CareTeamMembership.objects.filter(
        current_membership_q(now), clinician=user, child_id=OuterRef("thread__child_id")
    )
    read = ThreadRead.objects.filter(thread_id=OuterRef("thread_id"), user=user, read_at__gte=OuterRef("created_at"))
    return (
        Message.objects.filter(Q(thread__confidential=False) | Q(Exists(on_team)))
        .exclude(author=user)
        .exclude(Exists(read))
    )


def _unread_counts_query(user: uuid.UUID, now: datetime, child_ids: list[uuid.UUID]) -> QuerySet[Message, Any]:
    return (
        _unread_messages(user, now)
        .filter(thread__child_id__in=child_ids)
        .values("thread__child_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("thread__child_id", "n")
    )


# Compiled once per process and number of children (``portal.prepared``): /me/today asks on every call.
UNREAD_COUNTS = Prepared(_unread_counts_query)


def unread_counts(user: User, child_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Unread messages per child for ``/me/today`` (``PORTAL_UNREAD_COUNTER``), in one query. The
    caller passes children the user may see; confidential threads count for the care team only."""
    if not child_ids:
        return {}
    return dict(UNREAD_COUNTS.rows(user=user.pk, now=timezone.now(), child_ids=child_ids))


def _unread_by_thread(user: User, thread_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not thread_ids:
        return {}
    rows = (
        _unread_messages(user, timezone.now())
        .filter(thread_id__in=thread_ids)
        .values("thread_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["thread_id"]: row["n"] for row in rows}


# -- threads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertView:
    alert: UrgentAlert
    steps: list[AlertStep]


@dataclass(frozen=True)
class ThreadView:
    """A thread with what its reader sees around it; ``limited`` (a limited-scope guardian) hides the
    pool, a department whose name can reveal the diagnosis."""

    thread: Thread
    unread: int = 0
    limited: bool = False


@dataclass(frozen=True)
class InboxItem:
    view: ThreadView
    alert: AlertView | None


@dataclass(frozen=True)
class MessageView:
    message: Message
    attachments: list[Attachment]


@dataclass(frozen=True)
class ThreadDetail:
    view: ThreadView
    messages: list[MessageView]
    receipts: list[ThreadRead]
    # For the care team only (None for guardians).
    history: list[ThreadAssignment] | None
    alerts: list[AlertView] | None


def alerts_of(thread_ids: list[uuid.UUID], *, latest_only: bool = False) -> dict[uuid.UUID, list[AlertView]]:
    """Urgent alerts (newest first) with their steps, by thread: two queries however many threads."""
    alerts = list(UrgentAlert.objects.filter(thread_id__in=thread_ids).order_by("thread_id", "-created_at"))
    if latest_only:
        newest: dict[uuid.UUID, UrgentAlert] = {}
        for alert in alerts:
            newest.setdefault(alert.thread_id, alert)
        alerts = list(newest.values())
    steps: dict[uuid.UUID, list[AlertStep]] = {}
    for step in AlertStep.objects.filter(alert__in=alerts).order_by("at", "id"):
        steps.setdefault(step.alert_id, []).append(step)
    found: dict[uuid.UUID, list[AlertView]] = {}
    for alert in alerts:
        found.setdefault(alert.thread_id, []).append(AlertView(alert, steps.get(alert.pk, [])))
    return found


def alert_detail(alert: UrgentAlert) -> AlertView:
    return next(view for view in alerts_of([alert.thread_id])[alert.thread_id] if view.alert.pk == alert.pk)


def threads_list(
    *, user: User, access: ChildAccess, status: str | None = None, page: Pager | None = None
) -> list[ThreadView]:
    rows = hide_confidential(Thread.objects.filter(child=access.child), access).select_related("pool", "assignee")
    if status:
        rows = rows.filter(status=status)
    threads = list(page.queryset(rows) if page is not None else rows.order_by("-last_message_at")[:200])
    unread = _unread_by_thread(user, [t.pk for t in threads])
    audit.reads(user, MESSAGE, [access.child.pk])
    return [ThreadView(t, unread=unread.get(t.pk, 0), limited=access.limited_view) for t in threads]


def _attachments_of(message_ids: list[uuid.UUID], *, with_content: bool = False) -> dict[uuid.UUID, list[Attachment]]:
    rows = Attachment.objects.filter(message_id__in=message_ids).order_by("uploaded_at", "id")
    found: dict[uuid.UUID, list[Attachment]] = defaultdict(list)
    for row in rows if with_content else rows.defer("content"):
        if row.message_id is not None:
            found[row.message_id].append(row)
    return found


def thread_detail(*, user: User, access: ChildAccess, thread_id: uuid.UUID) -> ThreadDetail:
    """The thread with its messages (oldest first), read receipts, and for the care team the
    assignment history and the alerts."""
    thread = thread_for(access, thread_id)
    messages = list(Message.objects.filter(thread=thread).select_related("author").order_by("position"))
    attachments = _attachments_of([m.pk for m in messages])
    receipts = list(ThreadRead.objects.filter(thread=thread).select_related("user").order_by("read_at"))
    history = None
    alerts = None
    if access.is_clinician:
        alerts = alerts_of([thread.pk]).get(thread.pk, [])
        history = list(ThreadAssignment.objects.filter(thread=thread).order_by("at", "id"))
    unread = _unread_by_thread(user, [thread.pk])
    audit.reads(user, MESSAGE, [access.child.pk])
    return ThreadDetail(
        view=ThreadView(thread, unread=unread.get(thread.pk, 0), limited=access.limited_view),
        messages=[MessageView(m, attachments.get(m.pk, [])) for m in messages],
        receipts=receipts,
        history=history,
        alerts=alerts,
    )


def message_view(*, message: Message) -> MessageView:
    return MessageView(message, _attachments_of([message.pk]).get(message.pk, []))


# -- attachments --------------------------------------------------------------------------------


def attachment_content(*, user: User, access: ChildAccess, attachment_id: uuid.UUID) -> tuple[Attachment, bytes]:
    """The file, for a participant of its thread (or its uploader before it is sent)."""
    attachment = (
        Attachment.objects.filter(pk=attachment_id, child=access.child).select_related("message__thread").first()
    )
    if attachment is None:
        raise NotFound("No such attachment.")
    if attachment.message is None:
        if attachment.uploaded_by_id != user.pk:
            raise NotFound("No such attachment.")
    else:
        thread_for(access, attachment.message.thread_id)
    audit.record(
        actor=user, action=audit.Action.READ, entity_type=BINARY, entity_id=attachment.pk, child_id=access.child.pk
    )
    return attachment, base64.b64decode(attachment.content)


# -- for the EHR interface ---------------------------------------------------------------------


def messages_with_thread() -> QuerySet[Message]:
    """Every message with its thread loaded and the ids of its thread's first message and of the one
    before it (``first_message_id``, ``previous_message_id``; null for the first), in the same query.
    No access rule applies: for the hospital's FHIR API (``interop``), which authenticates and audits
    its system callers itself; a person's reads go through ``family_messages``."""
    same_thread = Message.objects.filter(thread_id=OuterRef("thread_id"))
    return Message.objects.select_related("thread").annotate(
        first_message_id=Subquery(same_thread.filter(position=1).values("id")[:1]),
        previous_message_id=Subquery(same_thread.filter(position=OuterRef("position") - 1).values("id")[:1]),
    )


def family_messages(access: ChildAccess) -> QuerySet[Message]:
    """The messages of the child's threads that ``access`` may read (confidential threads: the care
    team only), as ``messages_with_thread`` loads them. The caller checks the messaging capability and
    audits the read."""
    threads = hide_confidential(Thread.objects.filter(child=access.child), access)
    return messages_with_thread().filter(thread__in=threads)


def message_attachments(
    message_ids: list[uuid.UUID], *, with_content: bool = False
) -> dict[uuid.UUID, list[Attachment]]:
    """The attachments sent with each message, oldest first, in one query; their bytes only if asked."""
    return _attachments_of(message_ids, with_content=with_content)


# -- the clinician inbox ------------------------------------------------------------------------


def _my_pools(user: User) -> list[uuid.UUID]:
    return list(
        DepartmentMembership.objects.filter(clinician=user, active=True).values_list("department_id", flat=True)
    )


def inbox(
    *,
    user: User,
    status: str | None = None,
    topic: str | None = None,
    priority: str | None = None,
    child_id: uuid.UUID | None = None,
    pool_id: uuid.UUID | None = None,
    limit: int = 200,
    page: Pager | None = None,
) -> list[InboxItem]:
    """Threads in my pools (or assigned to me) about children whose care team I am on, the most
    pressing reply-by first. Open threads by default. With ``page``, that page of them: its order is
    ``INBOX_ORDER`` (a thread without a reply-by time sorts as if due at ``NO_REPLY_BY``)."""
    children = care_team_memberships(user).values("child_id")
    rows = Thread.objects.filter(child_id__in=children).filter(Q(pool_id__in=_my_pools(user)) | Q(assignee=user))
    rows = rows.filter(status=status) if status else rows.exclude(status=Thread.Status.CLOSED)
    if topic:
        rows = rows.filter(topic=topic)
    if priority:
        rows = rows.filter(priority=priority)
    if child_id:
        rows = rows.filter(child_id=child_id)
    if pool_id:
        rows = rows.filter(pool_id=pool_id)
    rows = rows.select_related("pool", "assignee", "child")
    threads: list[Thread]
    if page is not None:
        keyed: QuerySet[Thread] = rows.annotate(reply_by_key=Coalesce("reply_by", Value(NO_REPLY_BY)))
        threads = list(page.queryset(keyed))
    else:
        threads = list(rows.order_by(timezone_nulls_last("reply_by"), "-priority", "created_at")[:limit])
    unread = _unread_by_thread(user, [t.pk for t in threads])
    audit.reads(user, MESSAGE, sorted({t.child_id for t in threads}, key=str))
    alerts = alerts_of([t.pk for t in threads], latest_only=True) if threads else {}
    return [
        InboxItem(ThreadView(t, unread=unread.get(t.pk, 0)), next(iter(alerts.get(t.pk, [])), None)) for t in threads
    ]


# The inbox's page order: reply-by time (none last), urgent before routine, oldest first, then the id.
NO_REPLY_BY = datetime(9999, 12, 31, tzinfo=UTC)
INBOX_ORDER = ("reply_by_key", "-priority", "created_at", "id")


def timezone_nulls_last(field: str) -> Any:
    from django.db.models import F

    return F(field).asc(nulls_last=True)


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or below which ``fraction`` of the values fall)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class PoolStats:
    pool_id: uuid.UUID
    pool: str
    threads: int
    answered: int
    median_seconds: float | None
    p90_seconds: float | None


def response_stats(*, user: User, days: int = 30, now: datetime | None = None) -> list[PoolStats]:
    """Per pool I work in: threads opened by families in the period, how many got a first reply, and
    the median and 90th percentile time to it (seconds). No clinical content, no child."""
    moment = now or timezone.now()
    since = moment - timedelta(days=days)
    pools = DepartmentMembership.objects.filter(clinician=user, active=True).select_related("department")
    result = []
    for membership in pools:
        rows = list(
            Thread.objects.filter(pool=membership.department, created_at__gte=since, opened_by_family=True).values_list(
                "created_at", "first_reply_at"
            )
        )
        waits = [(first - created).total_seconds() for created, first in rows if first is not None]
        result.append(
            PoolStats(
                pool_id=membership.department_id,
                pool=membership.department.name,
                threads=len(rows),
                answered=len(waits),
                median_seconds=statistics.median(waits) if waits else None,
                p90_seconds=_percentile(waits, 0.9) if waits else None,
            )
        )
    return result


# -- preferences --------------------------------------------------------------------------------


def preferences(*, user: User) -> NotificationPreference:
    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user)


PUSH_SUBSCRIPTION_ORDER = ("-created_at", "-id")


def push_subscriptions(*, user: User, page: Pager | None = None) -> list[PushSubscription]:
    """The account's own devices that receive web push, newest first (one query); one page of them
    with ``page``."""
    rows = PushSubscription.objects.filter(user=user, revoked_at__isnull=True)
    return list(page.queryset(rows) if page else rows.order_by(*PUSH_SUBSCRIPTION_ORDER))
