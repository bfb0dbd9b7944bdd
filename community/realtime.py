"""Group events on the members' realtime streams (the messenger's per-user event stream)."""

from __future__ import annotations

from community.models import LIVE_MEMBER_STATUSES, Membership, Post
from portal.vocabulary import EventType, Resource


def post_changed(post: Post) -> None:
    """Tell the members about a post: published posts reach live members; waiting ones reach the
    group's moderators only. Call inside the transaction that changed the post (the stream is an
    outbox); each socket checks the membership again when it forwards the event."""
    from messaging import stream  # the messenger owns the per-user stream

    members = Membership.objects.filter(group_id=post.group_id, status__in=LIVE_MEMBER_STATUSES)
    if post.status != Post.Status.PUBLISHED:
        members = members.filter(role=Membership.Role.MODERATOR)
    stream.emit(
        users=list(members.values_list("user_id", flat=True)),
        type=EventType.GROUP_POST,
        child_id=None,
        entity_type=Resource.GROUP_POST,
        entity_id=post.pk,
        data={"group_id": str(post.group_id), "status": post.status},
    )
