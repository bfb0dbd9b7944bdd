"""Peer group pages: discover, join under a pseudonym, read, post, report; the moderators' queue (approve,
hide, restore) behind the groups' own access rules, safety check and audit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from messaging.groups.models import Group, Membership, Post, Report
from portal.audit import AuditEvent
from portal.models import GuardianLink, User
from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import World, make_user

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
PUBLISHED = "Night lows got better once we moved the snack earlier"
HIDDEN_TEXT = "Buy my miracle supplement today"
REAL_NAMES = ("Gwen Guardian", "Carl Coguardian", "Cleo Clinician", ADA_NAME, ADA_MRN)


@dataclass
class Groups:
    world: World
    diabetes: Group
    secret: Group
    outsider: User  # a guardian of another child, not a member
    published: Post
    pending: Post  # the newcomer's first post, waiting
    hidden: Post

    def url(self, suffix: str = "", group: Group | None = None) -> str:
        return f"/groups/{(group or self.diabetes).pk}/{suffix}"


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def groups(clock: Any, world: World) -> Groups:
    admin = world.admin
    diabetes = Group.objects.create(
        name="Type 1 diabetes, under 10s",
        description="Parents of young children with diabetes",
        condition_codes=["46635009"],
        created_by=admin,
        rules="Be kind. No medical advice.",
    )
    secret = Group.objects.create(
        name="Bereaved parents", description="Invite only", created_by=admin, visibility="invite_only"
    )
    Group.objects.create(name="Asthma parents", description="Wheeze and inhalers", created_by=admin)
    member = Membership.objects.create(group=diabetes, user=world.guardian, pseudonym="SunnyMum", approved_posts=3)
    newcomer = Membership.objects.create(group=diabetes, user=world.co_guardian, pseudonym="NightOwl")
    Membership.objects.create(
        group=diabetes, user=world.clinician, pseudonym="Dr C", role="moderator", kind="clinician"
    )
    outsider = make_user("outsider@example.org", "Otto Outsider")
    GuardianLink.objects.create(guardian=outsider, child=world.ben, relationship="father", status="active")
    published = Post.objects.create(group=diabetes, author=member, body=PUBLISHED)
    pending = Post.objects.create(
        group=diabetes, author=newcomer, body="Is it normal to feel this tired?", status="pending"
    )
    hidden = Post.objects.create(group=diabetes, author=member, body=HIDDEN_TEXT, status="hidden")
    return Groups(world, diabetes, secret, outsider, published, pending, hidden)


def browser(user: User, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def denials() -> int:
    return AuditEvent.objects.filter(action="deny").count()


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]


# -- discovering and joining -----------------------------------------------------------------------


def test_discovery_lists_matching_groups_first_and_hides_invite_only(groups: Groups) -> None:
    response = browser(groups.world.guardian).get("/groups/")
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert body.index("Type 1 diabetes") < body.index("Asthma parents")
    assert "Matches your child" in body and "You are a member" in body
    assert "Bereaved parents" not in body


def test_a_match_is_never_shown_to_an_account_without_a_full_scope_child(groups: Groups) -> None:
    for persona in ("revoked_guardian", "stranger", "other_clinician"):
        body = browser(groups.world.users[persona]).get("/groups/").content.decode()
        assert "Type 1 diabetes" in body and "Matches your child" not in body, persona


def test_a_member_reads_posts_by_pseudonym_only(groups: Groups) -> None:
    response = browser(groups.world.guardian).get(groups.url())
    assert response.status_code == 200
    body = response.content.decode()
    assert PUBLISHED in body and "SunnyMum" in body and "No medical advice" in body
    assert "Is it normal to feel this tired?" not in body  # another member's waiting post
    assert HIDDEN_TEXT not in body
    for name in REAL_NAMES:
        assert name not in body


def test_the_author_sees_their_own_waiting_post(groups: Groups) -> None:
    body = browser(groups.world.co_guardian).get(groups.url()).content.decode()
    assert "Is it normal to feel this tired?" in body and "Waiting for a moderator" in body


def test_a_family_joins_under_a_pseudonym_and_posts(groups: Groups) -> None:
    client = browser(groups.outsider)
    page = client.get(groups.url())
    assert page.status_code == 200 and "Join this group" in page.content.decode()
    assert PUBLISHED not in page.content.decode()  # not a member yet: no posts
    response = client.post(groups.url("join/"), {"pseudonym": "Hopeful Dad"})
    assert response.status_code == 302 and response["Location"] == groups.url()
    membership = Membership.objects.get(group=groups.diabetes, user=groups.outsider)
    assert membership.status == "active" and membership.pseudonym == "Hopeful Dad"
    joined = client.get(groups.url()).content.decode()
    assert "Welcome to the group." in joined and PUBLISHED in joined
    response = client.post(groups.url("posts/"), {"body": "Hello from a new dad"})
    assert response.status_code == 302
    post = Post.objects.get(author=membership)
    assert post.status == "pending"  # a new member's first posts wait
    assert "once a moderator has read it" in client.get(groups.url()).content.decode()


@pytest.mark.parametrize(
    ("pseudonym", "status", "words"),
    [
        ("ab", 400, "at least 3 characters"),
        ("Otto Outsider", 422, "no real names"),
        ("Benedict", 422, "no real names"),  # the account's own child
        ("call 555 010 0201", 422, "no real names"),
        ("x\x07y z", 400, "control characters"),
    ],
)
def test_a_pseudonym_that_identifies_is_refused_and_nothing_is_written(
    groups: Groups, pseudonym: str, status: int, words: str
) -> None:
    response = browser(groups.outsider).post(groups.url("join/"), {"pseudonym": pseudonym})
    assert response.status_code == status
    assert words in response.content.decode()
    assert not Membership.objects.filter(user=groups.outsider).exists()


@pytest.mark.parametrize("persona", ("revoked_guardian", "stranger"))
def test_accounts_without_a_live_family_link_cannot_join(groups: Groups, persona: str) -> None:
    user = groups.world.users[persona]
    response = browser(user).post(groups.url("join/"), {"pseudonym": "Quiet Reader"})
    assert response.status_code == 403
    assert "families of our patients" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()


# -- posting and reporting -------------------------------------------------------------------------


def test_identifying_details_are_refused_and_the_text_is_kept(groups: Groups) -> None:
    client = browser(groups.world.guardian)
    text = "Adaline is on the ward, call me on +1 (555) 010-0201"
    response = client.post(groups.url("posts/"), {"body": text})
    assert response.status_code == 422
    body = response.content.decode()
    assert "please remove a phone number, your child&#x27;s name" in body
    assert "+1 (555) 010-0201" in body  # the draft is given back to edit
    assert Post.objects.filter(group=groups.diabetes).count() == 3


def test_an_empty_post_is_refused(groups: Groups) -> None:
    response = browser(groups.world.guardian).post(groups.url("posts/"), {"body": "   "})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert Post.objects.filter(group=groups.diabetes).count() == 3


def test_a_trusted_member_posts_at_once(groups: Groups) -> None:
    client = browser(groups.world.guardian)
    assert client.post(groups.url("posts/"), {"body": "Pump site tips, anyone?"}).status_code == 302
    mine = Post.objects.filter(author__user=groups.world.guardian).exclude(
        pk__in=[groups.published.pk, groups.hidden.pk]
    )
    assert [post.status for post in mine] == ["published"]
    assert "Your post is published." in client.get(groups.url()).content.decode()


def test_a_member_reports_a_post_once(groups: Groups) -> None:
    client = browser(groups.world.co_guardian)
    url = groups.url(f"posts/{groups.published.pk}/report/")
    assert client.post(url, {"reason": "medical_advice"}).status_code == 302
    report = Report.objects.get(post=groups.published)
    assert report.reason == "medical_advice" and report.reporter.user_id == groups.world.co_guardian.pk
    assert AuditEvent.objects.filter(entity_type="GroupReport", action="create").count() == 1
    again = client.post(url, {"reason": "spam"})
    assert again.status_code == 409 and "already reported" in again.content.decode()
    bad = client.post(url, {"reason": "boring"})
    assert bad.status_code == 400 and "Choose why" in bad.content.decode()
    assert Report.objects.count() == 1


def test_a_waiting_or_hidden_post_cannot_be_reported(groups: Groups) -> None:
    client = browser(groups.world.guardian)
    for post in (groups.pending, groups.hidden):
        assert client.post(groups.url(f"posts/{post.pk}/report/"), {"reason": "spam"}).status_code == 404
    assert not Report.objects.exists()


# -- moderation ------------------------------------------------------------------------------------


def test_the_clinician_who_moderates_finds_the_queue_from_the_landing(groups: Groups) -> None:
    client = browser(groups.world.clinician)
    assert groups.url("moderation/") in client.get("/").content.decode()
    Report.objects.create(post=groups.published, reporter=groups.pending.author, reason="medical_advice")
    response = client.get(groups.url("moderation/"))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert "Is it normal to feel this tired?" in body and PUBLISHED in body and HIDDEN_TEXT in body
    assert "1 report" in body
    for name in REAL_NAMES:
        assert name not in body


def test_approve_hide_and_restore_are_audited(groups: Groups) -> None:
    client = browser(groups.world.clinician)
    Report.objects.create(post=groups.published, reporter=groups.pending.author, reason="abusive")
    steps = [
        (groups.pending, "approve", "published"),
        (groups.published, "hide", "hidden"),
        (groups.hidden, "restore", "published"),
    ]
    for post, action, status in steps:
        response = client.post(groups.url(f"posts/{post.pk}/moderate/"), {"action": action, "reason": "checked"})
        assert response.status_code == 302 and response["Location"] == groups.url("moderation/")
        row = Post.objects.get(pk=post.pk)
        assert row.status == status and row.moderated_by_id == groups.world.clinician.pk
        assert AuditEvent.objects.filter(entity_type="GroupPost", reason=f"moderation:{action}").count() == 1
    assert Report.objects.get(post=groups.published).resolved_at is not None
    assert "Post restored." in client.get(groups.url("moderation/")).content.decode()


def test_a_moderation_step_that_does_not_apply_is_refused_in_words(groups: Groups) -> None:
    client = browser(groups.world.clinician)
    response = client.post(groups.url(f"posts/{groups.published.pk}/moderate/"), {"action": "restore"})
    assert response.status_code == 409 and "cannot be restored" in response.content.decode()
    response = client.post(groups.url(f"posts/{groups.published.pk}/moderate/"), {"action": "delete"})
    assert response.status_code == 400
    assert Post.objects.get(pk=groups.published.pk).status == "published"
    assert not AuditEvent.objects.filter(entity_type="GroupPost", reason__startswith="moderation:").exists()


# -- access ----------------------------------------------------------------------------------------

OUTSIDERS = ("other_guardian", "revoked_guardian", "other_clinician", "stranger")


@pytest.mark.parametrize("persona", OUTSIDERS)
def test_non_members_read_no_post_and_cannot_act(groups: Groups, persona: str) -> None:
    client = browser(groups.world.users[persona])
    page = client.get(groups.url())
    assert page.status_code == 200  # a listed group's name and description, as the API shows them
    for text in (PUBLISHED, HIDDEN_TEXT, "SunnyMum", "No medical advice"):
        assert text not in page.content.decode()
    attempts = [
        ("post", groups.url("posts/"), {"body": "hello"}),
        ("post", groups.url(f"posts/{groups.published.pk}/report/"), {"reason": "spam"}),
        ("get", groups.url("moderation/"), {}),
        ("post", groups.url(f"posts/{groups.published.pk}/moderate/"), {"action": "hide"}),
        ("get", groups.url(group=groups.secret), {}),
    ]
    for method, url, data in attempts:
        before = denials()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url)
        assert PUBLISHED not in response.content.decode()
        assert_private(response)
        assert denials() == before + 1, (persona, url)
    assert Post.objects.filter(group=groups.diabetes).count() == 3 and not Report.objects.exists()
    assert Post.objects.get(pk=groups.published.pk).status == "published"


def test_a_member_who_does_not_moderate_cannot_moderate(groups: Groups) -> None:
    client = browser(groups.world.guardian)
    for method, url, data in (
        ("get", groups.url("moderation/"), {}),
        ("post", groups.url(f"posts/{groups.pending.pk}/moderate/"), {"action": "approve"}),
    ):
        before = denials()
        response = getattr(client, method)(url, data)
        assert response.status_code == 404
        assert "Is it normal to feel this tired?" not in response.content.decode()
        assert AuditEvent.objects.filter(action="deny", entity_type="GroupModeration").count() >= 1
        assert denials() == before + 1
    assert Post.objects.get(pk=groups.pending.pk).status == "pending"


def test_an_unknown_group_is_a_404(groups: Groups) -> None:
    assert browser(groups.world.guardian).get(f"/groups/{uuid.uuid4()}/").status_code == 404


def test_posting_needs_the_csrf_token(groups: Groups) -> None:
    client = browser(groups.world.guardian, enforce_csrf_checks=True)
    assert client.post(groups.url("posts/"), {"body": "hello"}).status_code == 403
    assert client.post(groups.url("join/"), {"pseudonym": "Someone New"}).status_code == 403
    assert Post.objects.filter(group=groups.diabetes).count() == 3


def test_signed_out_visitors_go_to_sign_in(groups: Groups) -> None:
    for method, url in (("get", "/groups/"), ("get", groups.url()), ("post", groups.url("posts/"))):
        response = getattr(Client(), method)(url, {"body": "x"})
        assert response.status_code == 302 and response["Location"] == "/sign-in/"


# -- language --------------------------------------------------------------------------------------


def test_a_spanish_speaking_guardian_sees_the_groups_in_spanish(groups: Groups) -> None:
    groups.world.guardian.preferred_language = "es"
    groups.world.guardian.save(update_fields=["preferred_language"])
    client = browser(groups.world.guardian)
    assert "Grupos de familias" in client.get("/groups/").content.decode()
    refused = client.post(groups.url("posts/"), {"body": "Call me on +1 (555) 010-0201"})
    assert refused.status_code == 422
    assert "Quite nombres" in refused.content.decode()
