"""Peer family groups: privacy, safety checks, the first-posts review, moderation, events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from messaging.groups.models import Group, Membership, Post, ReadingFlag
from portal.models import AuditEvent, GuardianLink
from tests.conftest import ADA_NAME, BEN_NAME, World, app_client, make_user


@dataclass
class Groups:
    world: World
    diabetes: Group
    secret: Group
    member: Membership  # the guardian: trusted
    newcomer: Membership  # the co-guardian: first posts wait
    banned: Membership  # the other family's guardian
    outsider: Client  # a guardian of another child, not a member
    moderator: Membership  # the clinician

    def url(self, suffix: str = "", group: Group | None = None) -> str:
        return f"/api/v1/groups/{(group or self.diabetes).pk}{suffix}"


def post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def groups(world: World) -> Groups:
    admin = world.admin
    diabetes = Group.objects.create(
        name="Type 1 diabetes — under 10s",
        description="Parents of young children",
        condition_codes=["46635009"],
        created_by=admin,
        rules="Be kind.",
    )
    secret = Group.objects.create(
        name="Bereaved parents", description="Invite only", created_by=admin, visibility="invite_only"
    )
    Group.objects.create(
        name="Asthma parents", description="Wheeze and inhalers", condition_codes=["195967001"], created_by=admin
    )
    member = Membership.objects.create(group=diabetes, user=world.guardian, pseudonym="SunnyMum", approved_posts=3)
    newcomer = Membership.objects.create(group=diabetes, user=world.co_guardian, pseudonym="NightOwl")
    banned = Membership.objects.create(group=diabetes, user=world.other_guardian, pseudonym="Rowdy", status="banned")
    moderator = Membership.objects.create(
        group=diabetes, user=world.clinician, pseudonym="Dr C", role="moderator", kind="clinician"
    )
    outsider_user = make_user("outsider@example.org", "Otto Outsider")
    GuardianLink.objects.create(guardian=outsider_user, child=world.ben, relationship="father", status="active")
    return Groups(world, diabetes, secret, member, newcomer, banned, app_client(outsider_user), moderator)


def test_discovery_lists_matching_groups_first_and_hides_invite_only(groups: Groups) -> None:
    listed = groups.world.client("guardian").get("/api/v1/groups").json()["items"]
    names = [g["name"] for g in listed]
    assert names[0] == "Type 1 diabetes — under 10s" and listed[0]["matches_my_children"]
    assert "Bereaved parents" not in names
    assert groups.outsider.get(groups.url(group=groups.secret)).status_code == 404
    stranger_view = groups.world.client("stranger").get(groups.url()).json()
    assert stranger_view["member_count"] == 3 and stranger_view["rules"] is None
    assert not stranger_view["matches_my_children"]


@pytest.mark.parametrize("persona", ["outsider", "banned", "stranger"])
def test_non_members_read_no_post(groups: Groups, persona: str) -> None:
    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Night-time lows: what helps you?"})
    client = (
        groups.outsider
        if persona == "outsider"
        else groups.world.client("other_guardian" if persona == "banned" else "stranger")
    )
    denials = AuditEvent.objects.filter(action="deny").count()
    for path in ("/posts", "/members"):
        response = client.get(groups.url(path))
        assert response.status_code == 404, (persona, path)
        assert "Night-time" not in response.content.decode()
    assert post(client, groups.url("/posts"), {"body": "hello"}).status_code == 404
    assert AuditEvent.objects.filter(action="deny").count() == denials + 3


def test_identifying_details_are_refused_with_a_reason(groups: Groups, settings: Any) -> None:
    settings.PORTAL_GROUP_POST_RATE = "20/m"  # refused attempts count against the limit too
    client = groups.world.client("guardian")
    cases = {
        "Call me on +1 (555) 010-0201 any time": "phone_number",
        "Write to sunny.mum@example.org": "email_address",
        "Her MRN is 4471-22 if the nurse asks": "medical_record_number",
        "Adaline had a low at 3am": "child_name",
        "Our number at the clinic is 88123456": "phone_number",
    }
    for text, code in cases.items():
        response = post(client, groups.url("/posts"), {"body": text})
        assert response.status_code == 422, text
        body = response.json()
        assert body["code"] == "identifying_details"
        assert code in {error["type"] for error in body["errors"]}, (text, body)
        assert "remove" in body["message"]
    fine = post(client, groups.url("/posts"), {"body": "She had a low at 3am on 2026-05-17, 2.9 mmol/L at 03:10"})
    assert fine.status_code == 201 and fine.json()["status"] == "published"


def test_new_members_first_three_posts_wait_for_a_moderator(groups: Groups) -> None:
    newcomer = groups.world.client("co_guardian")
    waiting = [post(newcomer, groups.url("/posts"), {"body": f"Question {i}"}).json() for i in range(3)]
    assert {item["status"] for item in waiting} == {"pending"}
    # Others do not see them yet; the author does.
    assert groups.world.client("guardian").get(groups.url("/posts")).json()["items"] == []
    assert len(newcomer.get(groups.url("/posts")).json()["items"]) == 3
    queue = groups.world.client("clinician").get(groups.url("/moderation")).json()
    assert [p["id"] for p in queue["pending_posts"]] == [item["id"] for item in waiting]
    for item in waiting:
        done = post(
            groups.world.client("clinician"), groups.url(f"/posts/{item['id']}/moderate"), {"action": "approve"}
        )
        assert done.status_code == 200 and done.json()["status"] == "published"
    assert len(groups.world.client("guardian").get(groups.url("/posts")).json()["items"]) == 3
    trusted = post(newcomer, groups.url("/posts"), {"body": "Thanks everyone"}).json()
    assert trusted["status"] == "published"
    assert AuditEvent.objects.filter(entity_type="GroupPost", reason="moderation:approve").count() == 3


def test_report_hide_restore(groups: Groups) -> None:
    made = post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Try this supplement!"}).json()
    reported = post(
        groups.world.client("co_guardian"), groups.url(f"/posts/{made['id']}/report"), {"reason": "medical_advice"}
    )
    assert reported.status_code == 201
    again = post(groups.world.client("co_guardian"), groups.url(f"/posts/{made['id']}/report"), {"reason": "spam"})
    assert again.status_code == 409
    queue = groups.world.client("clinician").get(groups.url("/moderation")).json()
    assert queue["reported_posts"][0]["id"] == made["id"] and queue["reported_posts"][0]["open_reports"] == 1
    hidden = post(
        groups.world.client("clinician"),
        groups.url(f"/posts/{made['id']}/moderate"),
        {"action": "hide", "reason": "unproven advice"},
    )
    assert hidden.json()["status"] == "hidden"
    assert groups.world.client("co_guardian").get(groups.url("/posts")).json()["items"] == []
    assert groups.world.client("clinician").get(groups.url("/moderation")).json()["reported_posts"] == []
    restored = post(
        groups.world.client("clinician"), groups.url(f"/posts/{made['id']}/moderate"), {"action": "restore"}
    )
    assert restored.json()["status"] == "published"
    assert len(groups.world.client("co_guardian").get(groups.url("/posts")).json()["items"]) == 1
    # Only moderators moderate.
    assert (
        post(
            groups.world.client("co_guardian"), groups.url(f"/posts/{made['id']}/moderate"), {"action": "hide"}
        ).status_code
        == 404
    )
    reasons = set(AuditEvent.objects.filter(entity_type="GroupPost").values_list("reason", flat=True))
    assert {"moderation:hide", "moderation:restore"} <= reasons


def test_mute_and_ban(groups: Groups) -> None:
    moderator = groups.world.client("clinician")
    muted = post(moderator, groups.url(f"/members/{groups.member.pk}/moderate"), {"action": "mute"})
    assert muted.json()["status"] == "muted"
    refused = post(groups.world.client("guardian"), groups.url("/posts"), {"body": "hello"})
    assert refused.status_code == 403 and refused.json()["code"] == "muted"
    assert groups.world.client("guardian").get(groups.url("/posts")).status_code == 200  # muted members still read
    post(moderator, groups.url(f"/members/{groups.member.pk}/moderate"), {"action": "unmute"})
    assert post(moderator, groups.url(f"/members/{groups.member.pk}/moderate"), {"action": "ban"}).status_code == 200
    assert groups.world.client("guardian").get(groups.url("/posts")).status_code == 404
    rejoin = post(groups.world.client("guardian"), groups.url("/join"), {"pseudonym": "Another Name"})
    assert rejoin.status_code == 404


def test_no_real_names_reach_other_members(groups: Groups) -> None:
    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Hello from a tired parent"})
    for persona in ("co_guardian", "clinician"):
        client = groups.world.client(persona)
        text = client.get(groups.url("/members")).content.decode() + client.get(groups.url("/posts")).content.decode()
        text += client.get(groups.url()).content.decode() + client.get("/api/v1/groups").content.decode()
        for secret in ("Gwen Guardian", "guardian@example.org", ADA_NAME, "Adaline", BEN_NAME, "Carl Coguardian"):
            assert secret not in text, (persona, secret)
    members = groups.world.client("co_guardian").get(groups.url("/members")).json()["items"]
    assert {(m["pseudonym"], m["kind"]) for m in members} >= {("SunnyMum", "family"), ("Dr C", "clinician")}


def test_join_leave_pseudonyms_and_eligibility(groups: Groups) -> None:
    outsider = groups.outsider
    assert post(outsider, groups.url("/join"), {"pseudonym": "SunnyMum"}).json()["code"] == "pseudonym_taken"
    assert post(outsider, groups.url("/join"), {"pseudonym": "Otto"}).json()["code"] == "identifying_pseudonym"
    assert post(outsider, groups.url("/join"), {"pseudonym": "Benedict fan"}).json()["code"] == "identifying_pseudonym"
    joined = post(outsider, groups.url("/join"), {"pseudonym": "Quiet Dad"})
    assert joined.status_code == 201 and joined.json()["status"] == "active"
    assert outsider.get(groups.url("/posts")).status_code == 200
    assert post(outsider, groups.url("/leave")).status_code == 204
    assert outsider.get(groups.url("/posts")).status_code == 404
    stranger = post(groups.world.client("stranger"), groups.url("/join"), {"pseudonym": "Curious"})
    assert stranger.status_code == 403 and stranger.json()["code"] == "not_eligible"
    assert post(outsider, groups.url("/join", groups.secret), {"pseudonym": "Quiet Dad"}).status_code == 404


def test_invite_only_group_through_an_invitation(groups: Groups) -> None:
    admin = groups.world.client("admin")
    outsider_user = Membership.objects.none()
    invited_user = make_user("invitee@example.org", "Ivy Invitee")
    GuardianLink.objects.create(guardian=invited_user, child=groups.world.ben, relationship="mother", status="active")
    made = post(admin, groups.url("/invitations", groups.secret), {"user_id": str(invited_user.pk)})
    assert made.status_code == 201 and made.json()["status"] == "invited"
    invitee = app_client(invited_user)
    assert invitee.get(groups.url(group=groups.secret)).status_code == 200
    joined = post(invitee, groups.url("/join", groups.secret), {"pseudonym": "Leafy"})
    assert joined.status_code == 201, joined.content
    assert joined.json()["status"] == "active"
    assert outsider_user.count() == 0


def test_posting_is_rate_limited(groups: Groups) -> None:
    client = groups.world.client("guardian")
    # One instant, so one fixed rate-limit window: a run that crossed a minute boundary would start a
    # fresh count.
    with time_machine.travel(datetime.now(UTC), tick=False):
        statuses = [post(client, groups.url("/posts"), {"body": f"Update {i}"}).status_code for i in range(7)]
    assert statuses[:5] == [201] * 5 and statuses[5:] == [429, 429]


def test_unusual_reading_is_flagged_to_staff(groups: Groups, settings: Any) -> None:
    settings.PORTAL_GROUP_READ_ALERT = "5/10m"
    client = groups.world.client("co_guardian")
    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "one"})
    for _ in range(4):
        client.get(groups.url("/members"))
    assert ReadingFlag.objects.filter(user=groups.world.co_guardian).count() == 1
    flags = groups.world.client("admin").get("/api/v1/community/reading-flags").json()["items"]
    assert flags[0]["user_id"] == str(groups.world.co_guardian.pk)
    assert groups.world.client("guardian").get("/api/v1/community/reading-flags").status_code == 404


def test_helpful_toggle(groups: Groups) -> None:
    made = post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Pump tips"}).json()
    assert post(groups.world.client("co_guardian"), groups.url(f"/posts/{made['id']}/helpful")).json() == {
        "helpful": True
    }
    listed = groups.world.client("guardian").get(groups.url("/posts")).json()["items"]
    assert listed[0]["helpful_count"] == 1 and not listed[0]["helpful_by_me"]
    assert post(groups.world.client("co_guardian"), groups.url(f"/posts/{made['id']}/helpful")).json() == {
        "helpful": False
    }


def test_group_events_reach_members_only_and_stop_when_they_leave(groups: Groups) -> None:
    from messaging.models import UserEvent

    def got(user: Any) -> int:
        return UserEvent.objects.filter(user=user, type="group.post").count()

    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "First"})
    world = groups.world
    assert got(world.co_guardian) == 1 and got(world.clinician) == 1
    assert got(world.other_guardian) == 0 and got(world.stranger) == 0  # banned, stranger
    post(groups.world.client("co_guardian"), groups.url("/leave"))
    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Second"})
    assert got(world.co_guardian) == 1  # nothing after leaving
    pending = Post.objects.filter(status="pending").count()
    assert pending == 0


def test_staff_create_groups(groups: Groups) -> None:
    made = post(
        groups.world.client("admin"),
        "/api/v1/groups",
        {"name": "Epilepsy parents", "description": "Seizure plans, school, sleep", "condition_codes": ["84757009"]},
    )
    assert made.status_code == 201
    assert (
        post(groups.world.client("guardian"), "/api/v1/groups", {"name": "Mine", "description": "x"}).status_code == 404
    )
    assert (
        post(
            groups.world.client("admin"), "/api/v1/groups", {"name": "Epilepsy parents", "description": "x"}
        ).status_code
        == 409
    )


ENDPOINTS = [
    ("GET", "/posts", None),
    ("GET", "/members", None),
    ("GET", "/moderation", None),
    ("POST", "/posts", {"body": "hello"}),
    ("POST", "/leave", None),
    ("POST", "/invitations", "user"),
    ("POST", "/posts/{post}/helpful", None),
    ("POST", "/posts/{post}/report", {"reason": "spam"}),
    ("POST", "/posts/{post}/moderate", {"action": "hide"}),
    ("POST", "/members/{member}/moderate", {"action": "mute"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
@pytest.mark.parametrize("persona", ["outsider", "banned", "stranger", "revoked_guardian", "other_clinician"])
def test_group_endpoint_matrix(groups: Groups, method: str, path: str, body: Any, persona: str) -> None:
    """Everyone outside the group gets 404 with nothing about it, and the refusal is audited."""
    made = post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Sensor tips for sports day"}).json()
    url = groups.url(path.format(post=made["id"], member=groups.newcomer.pk))
    client = (
        groups.outsider
        if persona == "outsider"
        else groups.world.client("other_guardian" if persona == "banned" else persona)
    )
    if body == "user":
        body = {"user_id": str(groups.world.stranger.pk)}
    denials = AuditEvent.objects.filter(action="deny").count()
    response = client.get(url) if method == "GET" else post(client, url, body)
    assert response.status_code == 404, response.content
    assert "Sensor tips" not in response.content.decode() and "SunnyMum" not in response.content.decode()
    assert AuditEvent.objects.filter(action="deny").count() == denials + 1


def test_the_stream_rechecks_membership_when_delivering(groups: Groups) -> None:
    """An event written while someone was a member is not delivered after they leave or are banned."""
    from messaging.realtime import delivery, stream
    from portal.vocabulary import Resource

    as_delivered = delivery.Delivery(
        entity_type=Resource.GROUP_POST,
        child_id=None,
        capability="message",
        confidential=False,
        data={"group_id": str(groups.diabetes.pk)},
    )
    post(groups.world.client("guardian"), groups.url("/posts"), {"body": "Before"})
    world = groups.world
    events, _ = stream.events_after(user=world.co_guardian, after=0)
    assert [event["type"] for event in events] == ["group.post"]
    assert delivery.may_receive(world.co_guardian, as_delivered)
    post(world.client("clinician"), groups.url(f"/members/{groups.newcomer.pk}/moderate"), {"action": "ban"})
    assert stream.events_after(user=world.co_guardian, after=0)[0] == []
    assert not delivery.may_receive(world.co_guardian, as_delivered)
