"""Reads for peer groups. Other members appear only by pseudonym (clinicians as clinicians); a group
that is invite-only does not exist for non-members. Reads return models and typed views; the API's
presenters (``schemas``) make the JSON. Counting reads (and flagging unusual reading) is a write:
``services.reads_note``, called by the edge."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from messaging.groups.models import LIVE_MEMBER_STATUSES, Group, Membership, Post, Reaction, ReadingFlag, Report
from portal import audit
from portal.access import effective_scope, guardian_links, is_portal_manager
from portal.errors import NotFound
from portal.models import GuardianLink, User
from portal.pagination import Pager
from portal.vocabulary import Resource

VISIBLE_TO_MEMBER = (*LIVE_MEMBER_STATUSES, Membership.Status.PENDING, Membership.Status.INVITED)


def group_for(user: User, group_id: uuid.UUID) -> tuple[Group, Membership | None]:
    """The group as this user may know it, or 404 (audited) when it is invisible to them."""
    group = Group.objects.filter(pk=group_id).first()
    membership = Membership.objects.filter(group=group, user=user).first() if group else None
    visible = group is not None and (
        group.visibility == Group.Visibility.LISTED
        or (membership is not None and membership.status in VISIBLE_TO_MEMBER)
        or is_portal_manager(user)
    )
    if not visible:
        audit.deny(actor=user, entity_type=Resource.GROUP, entity_id=str(group_id), reason="not_visible")
        raise NotFound("No such group.")
    assert group is not None
    return group, membership


def member_for(user: User, group_id: uuid.UUID) -> tuple[Group, Membership | None]:
    """A live member (active or muted) or portal staff; anyone else gets 404 (audited)."""
    group, membership = group_for(user, group_id)
    if (membership is None or membership.status not in LIVE_MEMBER_STATUSES) and not is_portal_manager(user):
        audit.deny(actor=user, entity_type=Resource.GROUP, entity_id=str(group_id), reason="not_a_member")
        raise NotFound("No such group.")
    return group, membership


@dataclass(frozen=True)
class GroupView:
    """A group as one user sees it: ``matches`` (a match with the user's own children's conditions) is
    computed for this user alone; ``member`` is the user's live membership, if any."""

    group: Group
    membership: Membership | None
    member_count: int
    matches: bool
    member: bool = False
    rules_visible: bool = False


@dataclass(frozen=True)
class PostView:
    post: Post
    helpful: int = 0
    mine: bool = False
    # Open reports, for moderators only (None for everyone else).
    reports: int | None = None


@dataclass(frozen=True)
class ModerationQueue:
    pending_posts: list[PostView]
    reported_posts: list[PostView]
    pending_members: list[Membership]


def _my_children_conditions(user: User) -> set[str]:
    """The conditions of the children the user sees at full scope. A child seen at limited scope (an
    adolescent) never counts: a group "matching my child" would reveal the diagnosis."""
    now = timezone.now()
    conditions: set[str] = set()
    for link in guardian_links(user, now):
        if effective_scope(link, now) == GuardianLink.Scope.FULL:
            conditions.update(str(code) for code in (link.child.conditions or []))
    return conditions


def discover(*, user: User) -> list[GroupView]:
    """Listed groups (and the user's own), the ones matching the user's children's conditions first.

    The match is computed for this user only and never stored or shown to anyone else.
    """
    mine = {m.group_id: m for m in Membership.objects.filter(user=user).exclude(status=Membership.Status.LEFT)}
    groups = list(
        Group.objects.filter(Q(visibility=Group.Visibility.LISTED) | Q(pk__in=list(mine))).annotate(
            members=Count("memberships", filter=Q(memberships__status__in=LIVE_MEMBER_STATUSES))
        )
    )
    conditions = _my_children_conditions(user)
    result = []
    for group in groups:
        matches = bool(conditions & {str(code) for code in group.condition_codes})
        result.append(GroupView(group, mine.get(group.pk), group.members, matches))
    result.sort(key=lambda view: (not view.matches, view.group.name))
    return result


def group_detail(*, user: User, group: Group, membership: Membership | None) -> GroupView:
    count = Membership.objects.filter(group=group, status__in=LIVE_MEMBER_STATUSES).count()
    conditions = _my_children_conditions(user)
    is_member = membership is not None and membership.status in LIVE_MEMBER_STATUSES
    return GroupView(
        group,
        membership,
        count,
        bool(conditions & set(map(str, group.condition_codes))),
        member=is_member,
        rules_visible=is_member or is_portal_manager(user),
    )


def members_list(*, group: Group, page: Pager | None = None) -> list[Membership]:
    """Live members, by pseudonym. The edge counts them as read (``services.reads_note``)."""
    rows = Membership.objects.filter(group=group, status__in=LIVE_MEMBER_STATUSES).order_by("joined_at")
    return list(page.queryset(rows) if page is not None else rows)


def posts_list(
    *,
    user: User,
    group: Group,
    membership: Membership | None,
    moderator: bool,
    limit: int = 100,
    page: Pager | None = None,
) -> list[PostView]:
    """Published posts, the member's own waiting ones, and (for moderators) everything. The edge counts
    them as read (``services.reads_note``)."""
    rows = Post.objects.filter(group=group).select_related("author")
    if not moderator:
        own = Q(author=membership) if membership else Q(pk__in=[])
        rows = rows.filter(Q(status=Post.Status.PUBLISHED) | (own & Q(status=Post.Status.PENDING)))
    found = list(page.queryset(rows) if page is not None else rows.order_by("-created_at")[:limit])
    ids = [post.pk for post in found]
    helpful = Counter(Reaction.objects.filter(post_id__in=ids).values_list("post_id", flat=True))
    mine = (
        set(Reaction.objects.filter(post_id__in=ids, member=membership).values_list("post_id", flat=True))
        if membership
        else set()
    )
    reports: Counter[Any] = Counter()
    if moderator:
        reports = Counter(
            Report.objects.filter(post_id__in=ids, resolved_at__isnull=True).values_list("post_id", flat=True)
        )
    audit.record(actor=user, action=audit.Action.READ, entity_type=Resource.GROUP_POST, entity_id=group.pk)
    return [PostView(p, helpful[p.pk], p.pk in mine, reports[p.pk] if moderator else None) for p in found]


def moderation_queue(*, user: User, group: Group) -> ModerationQueue:
    pending = list(
        Post.objects.filter(group=group, status=Post.Status.PENDING).select_related("author").order_by("created_at")
    )
    reported_ids = set(
        Report.objects.filter(post__group=group, resolved_at__isnull=True).values_list("post_id", flat=True)
    )
    reported = list(Post.objects.filter(pk__in=reported_ids).select_related("author").order_by("created_at"))
    counts = Counter(
        Report.objects.filter(post_id__in=reported_ids, resolved_at__isnull=True).values_list("post_id", flat=True)
    )
    waiting = list(Membership.objects.filter(group=group, status=Membership.Status.PENDING).order_by("joined_at"))
    audit.record(actor=user, action=audit.Action.READ, entity_type=Resource.GROUP_MODERATION, entity_id=group.pk)
    return ModerationQueue(
        pending_posts=[PostView(p, reports=0) for p in pending],
        reported_posts=[PostView(p, reports=counts[p.pk]) for p in reported],
        pending_members=waiting,
    )


def reading_flags(*, user: User, page: Pager | None = None) -> list[ReadingFlag]:
    if not is_portal_manager(user):
        audit.deny(actor=user, entity_type=Resource.READING_FLAG, entity_id=None, reason="not_staff")
        raise NotFound()
    rows = ReadingFlag.objects.filter(reviewed_at__isnull=True).select_related("user")
    return list(page.queryset(rows) if page is not None else rows.order_by("-created_at")[:200])


def post_in_group(group_id: uuid.UUID, post_id: uuid.UUID, *, published_only: bool = True) -> Post:
    rows = Post.objects.filter(pk=post_id, group_id=group_id).select_related("author")
    if published_only:
        rows = rows.filter(status=Post.Status.PUBLISHED)
    post = rows.first()
    if post is None:
        raise NotFound("No such post.")
    return post


def member_of(group_id: uuid.UUID, membership_id: uuid.UUID) -> Membership:
    found = Membership.objects.filter(pk=membership_id, group_id=group_id).first()
    if found is None:
        raise NotFound("No such member.")
    return found
