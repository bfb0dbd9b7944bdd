from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from portal.schemas import In


class GroupIn(In):
    name: str = Field(min_length=3, max_length=120)
    description: str = Field(min_length=1, max_length=2000)
    condition_codes: list[str] = Field(default_factory=list, max_length=20)
    visibility: Literal["listed", "invite_only"] = "listed"
    join_policy: Literal["open", "approval"] = "open"
    rules: str = Field("", max_length=4000)


class GroupOut(Schema):
    id: uuid.UUID
    name: str
    description: str
    visibility: str
    join_policy: str
    member_count: int
    membership_status: str | None
    matches_my_children: bool = Field(description="Computed for you alone; never shown to others.")


class GroupDetailOut(GroupOut):
    rules: str | None
    my_pseudonym: str | None
    my_role: str | None


class JoinIn(In):
    pseudonym: str = Field(min_length=3, max_length=40)


class MembershipOut(Schema):
    id: uuid.UUID
    pseudonym: str
    role: str
    kind: str = Field(description="family or clinician")
    joined_at: datetime


class MyMembershipOut(MembershipOut):
    status: str


class InviteIn(In):
    user_id: uuid.UUID


class PostIn(In):
    body: str = Field(min_length=1, max_length=5000)
    parent_id: uuid.UUID | None = None


class PostOut(Schema):
    id: uuid.UUID
    parent_id: uuid.UUID | None
    author_id: uuid.UUID
    author_pseudonym: str
    author_kind: str
    author_role: str
    body: str
    status: str
    created_at: datetime
    helpful_count: int
    helpful_by_me: bool
    open_reports: int | None = Field(None, description="Moderators only.")


class HelpfulOut(Schema):
    helpful: bool


class ReportIn(In):
    reason: Literal["identifying", "medical_advice", "abusive", "spam", "other"]


class ReportOut(Schema):
    id: uuid.UUID
    reason: str
    created_at: datetime


class PostModerationIn(In):
    action: Literal["approve", "hide", "restore"]
    reason: str = Field("", max_length=200)


class MemberModerationIn(In):
    action: Literal["approve", "mute", "unmute", "ban", "make_moderator"]


class ModerationQueueOut(Schema):
    pending_posts: list[PostOut]
    reported_posts: list[PostOut]
    pending_members: list[MembershipOut]


class ReadingFlagOut(Schema):
    id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    reads: int
    window_minutes: int
    created_at: datetime
