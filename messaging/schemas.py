"""Messaging API schemas. Inputs forbid unknown fields (``portal.schemas.In``)."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Literal

from ninja import Schema
from pydantic import Field, field_validator

from portal.schemas import In

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
    topic: str
    priority: str
    status: str
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
    kind: str
    level: int
    user_id: uuid.UUID | None
    at: datetime


class AlertOut(Schema):
    id: uuid.UUID
    thread_id: uuid.UUID
    status: str
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
    kind: str
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
    type: str
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
