"""Peer group endpoints. Every group route goes through ``group_for``/``member_for``: an invisible
group and a non-member's reads are 404, audited."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from messaging.groups import selectors, services
from messaging.groups.models import Membership
from messaging.groups.schemas import (
    GroupDetailOut,
    GroupIn,
    GroupOut,
    HelpfulOut,
    InviteIn,
    JoinIn,
    MemberModerationIn,
    MembershipOut,
    ModerationQueueOut,
    MyMembershipOut,
    PostIn,
    PostModerationIn,
    PostOut,
    PostReportOut,
    ReadingFlagOut,
    ReportIn,
    group_detail_out,
    group_out,
    member_out,
    moderation_queue_out,
    my_membership_out,
    post_out,
    reading_flag_out,
)
from messaging.groups.selectors import PostView
from portal import audit
from portal.api import actor
from portal.errors import NotFound
from portal.pagination import Page, PageIn, pager
from portal.vocabulary import Resource

router = Router(tags=["groups"])


def _moderator(request: HttpRequest, group_id: uuid.UUID) -> tuple[Any, Membership | None]:
    group, membership = selectors.group_for(actor(request), group_id)
    if not services.is_moderator(actor(request), membership):
        audit.deny(
            actor=actor(request),
            entity_type=Resource.GROUP_MODERATION,
            entity_id=str(group_id),
            reason="not_a_moderator",
        )
        raise NotFound("No such group.")
    return group, membership


@router.get("/groups", response=Page[GroupOut], summary="Discover groups (those matching my children first, by name)")
def groups(request: HttpRequest, page: Query[PageIn]) -> dict[str, Any]:
    pages = pager(request, page, "-matches", "group__name", "group__id")
    return pages.page_of(selectors.discover(user=actor(request)), group_out)


@router.post("/groups", response={201: GroupDetailOut}, summary="Staff: create a group")
def group_create(request: HttpRequest, payload: GroupIn) -> Status[dict[str, Any]]:
    group = services.group_create(actor=actor(request), **payload.dict())
    return Status(201, group_detail_out(selectors.group_detail(user=actor(request), group=group, membership=None)))


@router.get("/groups/{group_id}", response=GroupDetailOut, summary="A group (non-members: name, description, size)")
def group(request: HttpRequest, group_id: uuid.UUID) -> dict[str, Any]:
    found, membership = selectors.group_for(actor(request), group_id)
    return group_detail_out(selectors.group_detail(user=actor(request), group=found, membership=membership))


@router.post("/groups/{group_id}/join", response={201: MyMembershipOut}, summary="Join under a pseudonym")
def join(request: HttpRequest, group_id: uuid.UUID, payload: JoinIn) -> Status[dict[str, Any]]:
    found, membership = selectors.group_for(actor(request), group_id)
    joined = services.group_join(actor=actor(request), group=found, membership=membership, pseudonym=payload.pseudonym)
    return Status(201, my_membership_out(joined))


@router.post("/groups/{group_id}/leave", response={204: None}, summary="Leave the group")
def leave(request: HttpRequest, group_id: uuid.UUID) -> Status[None]:
    _, membership = selectors.member_for(actor(request), group_id)
    if membership is None:
        raise NotFound("No such group.")
    services.group_leave(actor=actor(request), membership=membership)
    return Status(204, None)


@router.post(
    "/groups/{group_id}/invitations",
    response={201: MyMembershipOut},
    summary="Moderators: invite someone (the way into an invite-only group)",
)
def invite(request: HttpRequest, group_id: uuid.UUID, payload: InviteIn) -> Status[dict[str, Any]]:
    found, membership = _moderator(request, group_id)
    invited = services.group_invite(actor=actor(request), group=found, moderator=membership, user_id=payload.user_id)
    return Status(201, my_membership_out(invited))


@router.get("/groups/{group_id}/members", response=Page[MembershipOut], summary="Members, longest-standing first")
def members(request: HttpRequest, group_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    found, _ = selectors.member_for(actor(request), group_id)
    pages = pager(request, page, "joined_at", "id")
    answer = pages.page(selectors.members_list(group=found, page=pages), member_out)
    services.reads_note(actor=actor(request), count=len(answer["items"]))
    return answer


@router.get("/groups/{group_id}/posts", response=Page[PostOut], summary="Posts and replies, newest first")
def posts(request: HttpRequest, group_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    found, membership = selectors.member_for(actor(request), group_id)
    moderator = services.is_moderator(actor(request), membership)
    pages = pager(request, page, "-created_at", "-id")
    views = selectors.posts_list(
        user=actor(request), group=found, membership=membership, moderator=moderator, page=pages
    )
    answer = pages.page(views, post_out, row=lambda view: view.post)
    services.reads_note(actor=actor(request), count=len(answer["items"]))
    return answer


@router.post(
    "/groups/{group_id}/posts",
    response={201: PostOut},
    summary="Post or reply (refused if it contains identifying details)",
)
def post_create(request: HttpRequest, group_id: uuid.UUID, payload: PostIn) -> Status[dict[str, Any]]:
    _, membership = selectors.member_for(actor(request), group_id)
    if membership is None:  # staff read every group but post only where they are members
        raise NotFound("No such group.")
    post = services.post_create(
        actor=actor(request), membership=membership, body=payload.body, parent_id=payload.parent_id
    )
    return Status(201, post_out(PostView(post)))


@router.post("/groups/{group_id}/posts/{post_id}/helpful", response=HelpfulOut, summary="Toggle a helpful mark")
def helpful(request: HttpRequest, group_id: uuid.UUID, post_id: uuid.UUID) -> dict[str, Any]:
    _, membership = selectors.member_for(actor(request), group_id)
    if membership is None:
        raise NotFound("No such group.")
    state = services.post_helpful(
        actor=actor(request), membership=membership, post=selectors.post_in_group(group_id, post_id)
    )
    return {"helpful": state}


@router.post("/groups/{group_id}/posts/{post_id}/report", response={201: PostReportOut}, summary="Report a post")
def report(request: HttpRequest, group_id: uuid.UUID, post_id: uuid.UUID, payload: ReportIn) -> Status[dict[str, Any]]:
    _, membership = selectors.member_for(actor(request), group_id)
    if membership is None:
        raise NotFound("No such group.")
    made = services.post_report(
        actor=actor(request),
        membership=membership,
        post=selectors.post_in_group(group_id, post_id),
        reason=payload.reason,
    )
    return Status(201, {"id": made.pk, "reason": made.reason, "created_at": made.created_at})


@router.get(
    "/groups/{group_id}/moderation",
    response=ModerationQueueOut,
    summary="Moderators: waiting posts, reported posts, waiting members",
)
def moderation(request: HttpRequest, group_id: uuid.UUID) -> dict[str, Any]:
    found, _ = _moderator(request, group_id)
    return moderation_queue_out(selectors.moderation_queue(user=actor(request), group=found))


@router.post(
    "/groups/{group_id}/posts/{post_id}/moderate",
    response=PostOut,
    summary="Moderators: approve, hide or restore a post",
)
def post_moderate(
    request: HttpRequest, group_id: uuid.UUID, post_id: uuid.UUID, payload: PostModerationIn
) -> dict[str, Any]:
    _, membership = _moderator(request, group_id)
    post = services.post_moderate(
        actor=actor(request),
        moderator=membership,
        post=selectors.post_in_group(group_id, post_id, published_only=False),
        **payload.dict(),
    )
    return post_out(PostView(post))


@router.post(
    "/groups/{group_id}/members/{membership_id}/moderate",
    response=MyMembershipOut,
    summary="Moderators: approve, mute, unmute, ban, or make a moderator",
)
def member_moderate(
    request: HttpRequest, group_id: uuid.UUID, membership_id: uuid.UUID, payload: MemberModerationIn
) -> dict[str, Any]:
    _, membership = _moderator(request, group_id)
    target = selectors.member_of(group_id, membership_id)
    done = services.member_moderate(
        actor=actor(request), moderator=membership, membership=target, action=payload.action
    )
    return my_membership_out(done)


@router.get(
    "/community/reading-flags",
    response=Page[ReadingFlagOut],
    summary="Staff: accounts that read unusually many posts or profiles, latest first",
)
def reading_flags(request: HttpRequest, page: Query[PageIn]) -> dict[str, Any]:
    pages = pager(request, page, "-created_at", "-id")
    return pages.page(selectors.reading_flags(user=actor(request), page=pages), reading_flag_out)
