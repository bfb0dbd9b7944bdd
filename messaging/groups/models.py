"""Peer family groups: families facing the same condition, under pseudonyms, moderated.

Real names never reach other members: a membership carries a pseudonym chosen per group. Post bodies
are encrypted at rest. A new member's first posts wait for a moderator.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.fields import EncryptedTextField
from portal.models import User


class Group(models.Model):
    class Visibility(models.TextChoices):
        LISTED = "listed", "Listed"
        INVITE_ONLY = "invite_only", "Invite only"

    class JoinPolicy(models.TextChoices):
        OPEN = "open", "Open"
        APPROVAL = "approval", "Moderator approval"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(max_length=2000)
    # The group's topic (e.g. SNOMED CT codes); says nothing about any member.
    condition_codes = models.JSONField(default=list, blank=True)
    visibility = models.CharField(max_length=12, choices=Visibility.choices, default=Visibility.LISTED)
    join_policy = models.CharField(max_length=10, choices=JoinPolicy.choices, default=JoinPolicy.OPEN)
    rules = models.TextField(max_length=4000, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


LIVE_MEMBER_STATUSES = ("active", "muted")


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        PENDING = "pending", "Waiting for approval"
        ACTIVE = "active", "Active"
        MUTED = "muted", "Muted"
        BANNED = "banned", "Banned"
        LEFT = "left", "Left"

    class Kind(models.TextChoices):
        FAMILY = "family", "Family"
        CLINICIAN = "clinician", "Clinician"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="group_memberships")
    pseudonym = models.CharField(max_length=40)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Clinicians are shown as clinicians; families only by pseudonym.
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FAMILY)
    approved_posts = models.PositiveIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "user"], name="one_membership_per_user"),
            models.UniqueConstraint(
                fields=["group", "pseudonym"], condition=~Q(status="left"), name="unique_pseudonym_in_group"
            ),
        ]

    def __str__(self) -> str:
        return f"Membership {self.pk} ({self.status})"


class Post(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a moderator"
        PUBLISHED = "published", "Published"
        HIDDEN = "hidden", "Hidden by a moderator"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="posts")
    author = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="posts")
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="replies")
    body = EncryptedTextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PUBLISHED)
    created_at = models.DateTimeField(default=timezone.now)
    moderated_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    moderated_at = models.DateTimeField(null=True, blank=True)
    moderation_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["group", "status", "created_at"])]

    def __str__(self) -> str:
        return f"Post {self.pk} ({self.status})"


class Reaction(models.Model):
    """A "helpful" mark from one member on one post."""

    id = models.BigAutoField(primary_key=True)
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="reactions")
    member = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "member"], name="one_helpful_per_member")]

    def __str__(self) -> str:
        return f"Helpful {self.pk}"


class Report(models.Model):
    class Reason(models.TextChoices):
        IDENTIFYING = "identifying", "Shares identifying details"
        MEDICAL_ADVICE = "medical_advice", "Harmful medical advice"
        ABUSIVE = "abusive", "Abusive or unkind"
        SPAM = "spam", "Spam or advertising"
        OTHER = "other", "Other"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "reporter"], name="one_report_per_member")]

    def __str__(self) -> str:
        return f"Report {self.pk}"


class ReadingFlag(models.Model):
    """An account read an unusual number of posts or profiles in a short time (shown to staff)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    reads = models.PositiveIntegerField()
    window_minutes = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Reading flag {self.pk}"


class NameKey(models.Model):
    """A keyed blind index of the real names of every portal user and child, so a pseudonym that
    spells one of them (in any lookalike form) is refused without decrypting everyone's name.

    ``digest`` is an HMAC (the blind-index key) of ``messaging.groups.normalise.name_key(name)``; ``part`` is
    ``full`` (the whole name) or ``surname`` (the last word: "Dr Ortiz" impersonates Dr. Helen Ortiz).
    Kept in step with User and Child saves (``messaging.groups.names``).
    """

    class Owner(models.TextChoices):
        USER = "user", "User"
        CHILD = "child", "Child"

    class Part(models.TextChoices):
        FULL = "full", "Full name"
        SURNAME = "surname", "Surname"

    id = models.BigAutoField(primary_key=True)
    owner_type = models.CharField(max_length=5, choices=Owner.choices)
    owner_id = models.UUIDField()
    part = models.CharField(max_length=7, choices=Part.choices)
    digest = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner_type", "owner_id", "part"], name="community_namekey_unique")
        ]

    def __str__(self) -> str:
        return f"Name key of {self.owner_type} {self.owner_id} ({self.part})"
