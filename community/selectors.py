"""Reads for peer groups. Other members appear only by pseudonym (clinicians as clinicians); a group
that is invite-only does not exist for non-members; reading unusually much is flagged to staff."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.utils import timezone

from community.models import LIVE_MEMBER_STATUSES, Group, Membership, Post, Reaction, ReadingFlag, Report
from portal import audit, ratelimit
from portal.access import effective_scope, guardian_links, is_portal_manager
from portal.errors import NotFound
from portal.models import GuardianLink, User
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


def note_reads(user: User, count: int) -> None:
    """Count posts and profiles read; past the threshold in the window, flag the account to staff once."""
    allowed = True
    for _ in range(max(1, count)):
        allowed = ratelimit.hit("group_reads", str(user.pk), settings.PORTAL_GROUP_READ_ALERT) and allowed
    if not allowed and cache.add(f"group_reads_flagged:{user.pk}", 1, timeout=600):
        limit, window = ratelimit.parse_rate(settings.PORTAL_GROUP_READ_ALERT)
        ReadingFlag.objects.create(user=user, reads=limit, window_minutes=window // 60)
        audit.record(actor=user, action=audit.Action.READ, entity_type=Resource.GROUP_POST, reason="unusual_reading")


def _summary(group: Group, membership: Membership | None, member_count: int, matches: bool) -> dict[str, Any]:
    status = membership.status if membership and membership.status != Membership.Status.LEFT else None
    return {
        "id": group.pk,
        "name": group.name,
        "description": group.description,
        "visibility": group.visibility,
        "join_policy": group.join_policy,
        "member_count": member_count,
        "membership_status": status,
        "matches_my_children": matches,
    }


def _my_children_conditions(user: User) -> set[str]:
    """The conditions of the children the user sees at full scope. A child seen at limited scope (an
    adolescent) never counts: a group "matching my child" would reveal the diagnosis."""
    now = timezone.now()
    conditions: set[str] = set()
    for link in guardian_links(user, now):
        if effective_scope(link, now) == GuardianLink.Scope.FULL:
            conditions.update(str(code) for code in (link.child.conditions or []))
    return conditions


def discover(*, user: User) -> list[dict[str, Any]]:
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
        result.append(_summary(group, mine.get(group.pk), group.members, matches))
    result.sort(key=lambda g: (not g["matches_my_children"], g["name"]))
    return result


def group_detail(*, user: User, group: Group, membership: Membership | None) -> dict[str, Any]:
    count = Membership.objects.filter(group=group, status__in=LIVE_MEMBER_STATUSES).count()
    conditions = _my_children_conditions(user)
    detail = _summary(group, membership, count, bool(conditions & set(map(str, group.condition_codes))))
    is_member = membership is not None and membership.status in LIVE_MEMBER_STATUSES
    detail["rules"] = group.rules if is_member or is_portal_manager(user) else None
    detail["my_pseudonym"] = membership.pseudonym if is_member and membership else None
    detail["my_role"] = membership.role if is_member and membership else None
    return detail


def members_list(*, user: User, group: Group) -> list[dict[str, Any]]:
    rows = list(Membership.objects.filter(group=group, status__in=LIVE_MEMBER_STATUSES).order_by("joined_at"))
    note_reads(user, len(rows))
    return [
        {"id": row.pk, "pseudonym": row.pseudonym, "role": row.role, "kind": row.kind, "joined_at": row.joined_at}
        for row in rows
    ]


def post_out(post: Post, helpful: int, mine: bool, reports: int | None = None) -> dict[str, Any]:
    author = post.author
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
        "helpful_count": helpful,
        "helpful_by_me": mine,
        "open_reports": reports,
    }


def posts_list(
    *, user: User, group: Group, membership: Membership | None, moderator: bool, limit: int = 100
) -> list[dict[str, Any]]:
    """Published posts, the member's own waiting ones, and (for moderators) everything."""
    rows = Post.objects.filter(group=group).select_related("author")
    if not moderator:
        own = Q(author=membership) if membership else Q(pk__in=[])
        rows = rows.filter(Q(status=Post.Status.PUBLISHED) | (own & Q(status=Post.Status.PENDING)))
    page = list(rows.order_by("-created_at")[:limit])
    ids = [post.pk for post in page]
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
    note_reads(user, len(page))
    audit.record(actor=user, action=audit.Action.READ, entity_type=Resource.GROUP_POST, entity_id=group.pk)
    return [post_out(p, helpful[p.pk], p.pk in mine, reports[p.pk] if moderator else None) for p in page]


def moderation_queue(*, user: User, group: Group) -> dict[str, Any]:
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
    return {
        "pending_posts": [post_out(p, 0, False, 0) for p in pending],
        "reported_posts": [post_out(p, 0, False, counts[p.pk]) for p in reported],
        "pending_members": [
            {"id": m.pk, "pseudonym": m.pseudonym, "role": m.role, "kind": m.kind, "joined_at": m.joined_at}
            for m in waiting
        ],
    }


def reading_flags(*, user: User) -> list[dict[str, Any]]:
    if not is_portal_manager(user):
        audit.deny(actor=user, entity_type=Resource.READING_FLAG, entity_id=None, reason="not_staff")
        raise NotFound()
    rows = ReadingFlag.objects.filter(reviewed_at__isnull=True).select_related("user").order_by("-created_at")[:200]
    return [
        {
            "id": row.pk,
            "user_id": row.user_id,
            "user_name": str(row.user),
            "reads": row.reads,
            "window_minutes": row.window_minutes,
            "created_at": row.created_at,
        }
        for row in rows
    ]
