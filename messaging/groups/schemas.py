from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field

from messaging.groups.models import Group, Membership, Post, ReadingFlag, Report
from messaging.groups.selectors import GroupView, ModerationQueue, PostView
from portal.schemas import In, OneOf

MemberRole = Annotated[str, OneOf(Membership.Role)]
MemberStatus = Annotated[str, OneOf(Membership.Status)]
MemberKind = Annotated[str, OneOf(Membership.Kind)]


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
    visibility: Annotated[str, OneOf(Group.Visibility)]
    join_policy: Annotated[str, OneOf(Group.JoinPolicy)]
    member_count: int
    membership_status: MemberStatus | None
    matches_my_children: bool = Field(description="Computed for you alone; never shown to others.")


class GroupDetailOut(GroupOut):
    rules: str | None
    my_pseudonym: str | None
    my_role: MemberRole | None


class JoinIn(In):
    pseudonym: str = Field(min_length=3, max_length=40)


class MembershipOut(Schema):
    id: uuid.UUID
    pseudonym: str
    role: MemberRole
    kind: MemberKind
    joined_at: datetime


class MyMembershipOut(MembershipOut):
    status: MemberStatus


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
    author_kind: MemberKind
    author_role: MemberRole
    body: str
    status: Annotated[str, OneOf(Post.Status)]
    created_at: datetime
    helpful_count: int
    helpful_by_me: bool
    open_reports: int | None = Field(None, description="Moderators only.")


class HelpfulOut(Schema):
    helpful: bool


class ReportIn(In):
    reason: Literal["identifying", "medical_advice", "abusive", "spam", "other"]


class PostReportOut(Schema):
    id: uuid.UUID
    reason: Annotated[str, OneOf(Report.Reason)]
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


# -- presenters: the selectors' typed views as the JSON the API answers ----------------------------


def group_out(view: GroupView) -> dict[str, Any]:
    membership = view.membership
    return {
        "id": view.group.pk,
        "name": view.group.name,
        "description": view.group.description,
        "visibility": view.group.visibility,
        "join_policy": view.group.join_policy,
        "member_count": view.member_count,
        "membership_status": membership.status if membership and membership.status != Membership.Status.LEFT else None,
        "matches_my_children": view.matches,
    }


def group_detail_out(view: GroupView) -> dict[str, Any]:
    mine = view.membership if view.member else None
    return {
        **group_out(view),
        "rules": view.group.rules if view.rules_visible else None,
        "my_pseudonym": mine.pseudonym if mine else None,
        "my_role": mine.role if mine else None,
    }


def member_out(member: Membership) -> dict[str, Any]:
    return {
        "id": member.pk,
        "pseudonym": member.pseudonym,
        "role": member.role,
        "kind": member.kind,
        "joined_at": member.joined_at,
    }


def my_membership_out(member: Membership) -> dict[str, Any]:
    return {**member_out(member), "status": member.status}


def post_out(view: PostView) -> dict[str, Any]:
    post, author = view.post, view.post.author
    return {
        "id": post.pk,
        "parent_id": post.parent_id,
        "author_id": author.pk,
        "author_pseudonym": author.pseudonym,
        "author_kind": author.kind,
        "author_role": author.role,
        "body": post.body,
        "status": post.status,
        "created_at": post.created_at,
        "helpful_count": view.helpful,
        "helpful_by_me": view.mine,
        "open_reports": view.reports,
    }


def moderation_queue_out(queue: ModerationQueue) -> dict[str, Any]:
    return {
        "pending_posts": [post_out(view) for view in queue.pending_posts],
        "reported_posts": [post_out(view) for view in queue.reported_posts],
        "pending_members": [member_out(member) for member in queue.pending_members],
    }


def reading_flag_out(flag: ReadingFlag) -> dict[str, Any]:
    return {
        "id": flag.pk,
        "user_id": flag.user_id,
        "user_name": str(flag.user),
        "reads": flag.reads,
        "window_minutes": flag.window_minutes,
        "created_at": flag.created_at,
    }
