"""Group events on the members' realtime streams: what a post change publishes, and the membership
rule each socket applies when it forwards one."""

from __future__ import annotations

from messaging.groups.models import LIVE_MEMBER_STATUSES, Membership, Post
from messaging.realtime import delivery
from portal import events
from portal.vocabulary import EventType, Resource


def post_changed(post: Post) -> None:
    """Tell the members about a post: published posts reach live members; waiting ones reach the
    group's moderators only. Call inside the transaction that changed the post (the stream is an
    outbox); each socket checks the membership again when it forwards the event."""
    members = Membership.objects.filter(group_id=post.group_id, status__in=LIVE_MEMBER_STATUSES)
    if post.status != Post.Status.PUBLISHED:
        members = members.filter(role=Membership.Role.MODERATOR)
    events.publish(
        events.AddressedEvent.to(
            members.values_list("user_id", flat=True),
            type=EventType.GROUP_POST,
            entity_type=Resource.GROUP_POST,
            entity_id=post.pk,
            data={"group_id": str(post.group_id), "status": post.status},
        )
    )


def live_member(viewer: delivery.Viewer, event: delivery.Delivery) -> bool:
    """Peer-group events reach live members only: a member who left or was banned gets nothing more."""
    group_id = str(event.data.get("group_id") or "")
    key = ("group", group_id)
    if key not in viewer.memo:
        viewer.memo[key] = bool(group_id) and (
            Membership.objects.filter(group_id=group_id, user=viewer.user, status__in=LIVE_MEMBER_STATUSES).exists()
        )
    return viewer.memo[key]


def connect() -> None:
    delivery.register(Resource.GROUP_POST, live_member)
