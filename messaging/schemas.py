"""Messaging API schemas. Inputs forbid unknown fields (``portal.schemas.In``)."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal

from django.utils import timezone
from ninja import Schema
from pydantic import Field, field_validator

from messaging.models import AlertStep, Attachment, Message, Priority, Thread, ThreadAssignment, Topic, UrgentAlert
from messaging.selectors import AlertView, InboxItem, MessageView, ThreadDetail, ThreadView
from portal.schemas import In, OneOf
from portal.vocabulary import EventType

TopicIn = Literal["medical", "medication", "refill", "scheduling", "billing", "other"]
StatusIn = Literal["awaiting_care_team", "awaiting_family", "closed"]


class ThreadIn(In):
    subject: str = Field(min_length=1, max_length=200)
    topic: TopicIn
    body: str = Field(min_length=1, max_length=10_000)
    client_id: uuid.UUID = Field(description="Chosen by the client; a retry with the same id is not stored twice.")
    confidential: bool = Field(False, description="Care team only: an adolescent's thread guardians never see.")
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=5)


class MessageIn(In):
    body: str = Field(min_length=1, max_length=10_000)
    client_id: uuid.UUID
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=5)


class AssignIn(In):
    assignee_id: uuid.UUID


class AttachmentOut(Schema):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int


class MessageOut(Schema):
    id: uuid.UUID
    thread_id: uuid.UUID
    client_id: uuid.UUID | None
    author_id: uuid.UUID | None
    author_name: str
    author_role: Literal["guardian", "care_team", "automatic"]
    automatic: bool = Field(description="Sent by the portal (emergency instructions, after-hours notice).")
    automatic_reason: Literal["emergency", "after_hours"] | None
    body: str
    created_at: datetime
    attachments: list[AttachmentOut]


class ThreadOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    subject: str
    topic: Annotated[str, OneOf(Topic)]
    priority: Annotated[str, OneOf(Priority)]
    status: Annotated[str, OneOf(Thread.Status)]
    confidential: bool
    pool_id: uuid.UUID | None
    pool: str | None
    assignee_id: uuid.UUID | None
    assignee_name: str | None
    created_at: datetime
    last_message_at: datetime
    reply_by: datetime | None
    overdue: bool
    escalated_at: datetime | None
    unread: int


class AlertStepOut(Schema):
    kind: Annotated[str, OneOf(AlertStep.Kind)]
    level: int
    user_id: uuid.UUID | None
    at: datetime


class AlertOut(Schema):
    id: uuid.UUID
    thread_id: uuid.UUID
    status: Annotated[str, OneOf(UrgentAlert.Status)]
    level: int = Field(description="0 on-call clinician, 1 next on-call clinician, 2 department lead.")
    created_at: datetime
    escalate_at: datetime | None
    acknowledged_by: uuid.UUID | None
    acknowledged_at: datetime | None
    steps: list[AlertStepOut]


class InboxThreadOut(ThreadOut):
    child_name: str
    alert: AlertOut | None = Field(description="The thread's latest urgent alert, if any.")


class ReceiptOut(Schema):
    user_id: uuid.UUID
    name: str
    read_at: datetime


class AssignmentOut(Schema):
    kind: Annotated[str, OneOf(ThreadAssignment.Kind)]
    from_user_id: uuid.UUID | None
    to_user_id: uuid.UUID | None
    by_id: uuid.UUID | None
    at: datetime


class ThreadDetailOut(ThreadOut):
    messages: list[MessageOut]
    read_receipts: list[ReceiptOut]
    assignment_history: list[AssignmentOut] | None = Field(description="Care team only.")
    alerts: list[AlertOut] | None = Field(description="Urgent alerts with their steps; care team only.")


class PoolStatsOut(Schema):
    pool_id: uuid.UUID
    pool: str
    threads: int
    answered: int
    median_seconds: float | None
    p90_seconds: float | None


class EventOut(Schema):
    id: int
    type: Annotated[str, OneOf(EventType)]
    child_id: uuid.UUID | None
    entity_type: str
    entity_id: uuid.UUID | None
    data: dict[str, object]
    created_at: datetime


class EventsOut(Schema):
    events: list[EventOut]
    last_id: int = Field(description="Pass as ?after= next time (events are also deduplicated by id).")


class PreferencesIn(In):
    email: bool | None = Field(None, description="Leave out to keep; null is refused.")
    sms: bool | None = Field(None, description="Leave out to keep; null is refused.")
    quiet_start: time | None = Field(None, description="Null clears quiet hours.")
    quiet_end: time | None = None

    @field_validator("email", "sms")
    @classmethod
    def _on_or_off(cls, value: bool | None) -> bool:
        if value is None:
            raise ValueError("must be true or false (leave the field out to keep it)")
        return value


class PreferencesOut(Schema):
    email: bool
    sms: bool
    quiet_start: time | None
    quiet_end: time | None


class PushKeysIn(In):
    p256dh: str = Field(min_length=80, max_length=100, description="The device's P-256 public key, base64url.")
    auth: str = Field(min_length=16, max_length=32, description="The 16-byte authentication secret, base64url.")


class PushSubscriptionIn(In):
    """The browser's ``PushSubscription.toJSON()``, as it gives it."""

    endpoint: str = Field(max_length=1024, description="The push service URL (https).")
    expirationTime: int | None = Field(None, ge=0, description="Ignored: the push service says when it ends.")
    keys: PushKeysIn


class PushSubscriptionOut(Schema):
    id: uuid.UUID
    label: str = Field(description='The device, from its browser ("Chrome on Android").')
    created_at: datetime
    last_used_at: datetime | None


class PushConfigOut(Schema):
    enabled: bool = Field(description="Whether this portal sends web push.")
    public_key: str | None = Field(description="The VAPID public key: the browser's applicationServerKey.")


# -- presenters: the domain's typed results as the JSON the API answers -------------------------


def alert_out(view: AlertView) -> dict[str, Any]:
    alert = view.alert
    return {
        "id": alert.pk,
        "thread_id": alert.thread_id,
        "status": alert.status,
        "level": alert.level,
        "created_at": alert.created_at,
        "escalate_at": alert.escalate_at,
        "acknowledged_by": alert.acknowledged_by_id,
        "acknowledged_at": alert.acknowledged_at,
        "steps": [
            {"kind": step.kind, "level": step.level, "user_id": step.user_id, "at": step.at} for step in view.steps
        ],
    }


def thread_out(view: ThreadView, *, include_child_name: bool = False) -> dict[str, Any]:
    """A thread as its reader may see it (``view.limited`` hides the pool)."""
    thread, limited = view.thread, view.limited
    now = timezone.now()
    out: dict[str, Any] = {
        "id": thread.pk,
        "child_id": thread.child_id,
        "subject": thread.subject,
        "topic": thread.topic,
        "priority": thread.priority,
        "status": thread.status,
        "confidential": thread.confidential,
        "pool_id": None if limited else thread.pool_id,
        "pool": thread.pool.name if thread.pool and not limited else None,
        "assignee_id": thread.assignee_id,
        "assignee_name": str(thread.assignee) if thread.assignee else None,
        "created_at": thread.created_at,
        "last_message_at": thread.last_message_at,
        "reply_by": thread.reply_by,
        "overdue": bool(
            thread.reply_by and thread.reply_by < now and thread.status == Thread.Status.AWAITING_CARE_TEAM
        ),
        "escalated_at": thread.escalated_at,
        "unread": view.unread,
    }
    if include_child_name:
        out["child_name"] = thread.child.name
    return out


def attachment_meta(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.pk,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
    }


_AUTHOR_ROLES = {"family": "guardian", "care_team": "care_team", "automatic": "automatic"}


def message_out(view: MessageView) -> dict[str, Any]:
    message = view.message
    return {
        "id": message.pk,
        "thread_id": message.thread_id,
        "client_id": message.client_id,
        "author_id": message.author_id,
        "author_name": str(message.author) if message.author else "Automatic reply",
        "author_role": _AUTHOR_ROLES[message.kind],
        "automatic": message.kind == Message.Kind.AUTOMATIC,
        "automatic_reason": message.automatic_reason or None,
        "body": message.body,
        "created_at": message.created_at,
        "attachments": [attachment_meta(a) for a in view.attachments],
    }


def thread_detail_out(detail: ThreadDetail) -> dict[str, Any]:
    return {
        **thread_out(detail.view),
        "messages": [message_out(m) for m in detail.messages],
        "read_receipts": [{"user_id": r.user_id, "name": str(r.user), "read_at": r.read_at} for r in detail.receipts],
        "assignment_history": None
        if detail.history is None
        else [
            {
                "kind": row.kind,
                "from_user_id": row.from_user_id,
                "to_user_id": row.to_user_id,
                "by_id": row.by_id,
                "at": row.at,
            }
            for row in detail.history
        ],
        "alerts": None if detail.alerts is None else [alert_out(a) for a in detail.alerts],
    }


def inbox_out(item: InboxItem) -> dict[str, Any]:
    return {
        **thread_out(item.view, include_child_name=True),
        "alert": alert_out(item.alert) if item.alert is not None else None,
    }


class PhoneIn(In):
    phone: str = Field(max_length=32, description="With its country code (+1 555 010 0201); empty removes it.")


class PhoneCodeIn(In):
    code: str = Field(min_length=1, max_length=12, description="The code from the text message.")


class PhoneOut(Schema):
    phone: str = Field(description="E.164, or empty when there is none.")
    verified: bool
    verified_at: datetime | None


class PhoneCodeOut(Schema):
    expires_at: datetime


def phone_out(user: Any) -> dict[str, Any]:
    return {"phone": user.phone, "verified": user.phone_verified_at is not None, "verified_at": user.phone_verified_at}
