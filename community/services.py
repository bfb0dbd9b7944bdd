"""Writes for peer groups: joining, posting, reactions, reports and moderation. Every moderation
action is audited; posts are checked for identifying details before they are saved."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from community import names, normalise, realtime, safety
from community.models import LIVE_MEMBER_STATUSES, Group, Membership, NameKey, Post, Reaction, Report
from portal import audit, ratelimit
from portal.access import care_team_memberships, guardian_links, is_clinician, is_portal_manager
from portal.errors import ApiError, Conflict, Forbidden, Invalid, NotFound
from portal.models import User
from portal.vocabulary import Resource

TRUST_AFTER = 3  # a member's first posts wait for a moderator until this many were approved
PSEUDONYM = re.compile(r"^[\w .'-]{3,40}$")


def _audit(actor: User, action: str, entity_type: Resource, entity_id: Any, reason: str = "") -> None:
    audit.record(actor=actor, action=action, entity_type=entity_type, entity_id=entity_id, reason=reason)


def is_moderator(user: User, membership: Membership | None) -> bool:
    if is_portal_manager(user):
        return True
    return bool(
        membership and membership.role == Membership.Role.MODERATOR and membership.status == Membership.Status.ACTIVE
    )


def own_children_names(user: User) -> list[str]:
    """Names the safety check refuses: the user's children (and a clinician's patients)."""
    names = [link.child.name for link in guardian_links(user)]
    names += [membership.child.name for membership in care_team_memberships(user)]
    return names


def group_create(
    *,
    actor: User,
    name: str,
    description: str,
    condition_codes: list[str],
    visibility: str,
    join_policy: str,
    rules: str = "",
) -> Group:
    if not is_portal_manager(actor):
        raise NotFound()
    with transaction.atomic():
        try:
            with transaction.atomic():
                group = Group.objects.create(
                    name=name,
                    description=description,
                    condition_codes=condition_codes,
                    visibility=visibility,
                    join_policy=join_policy,
                    rules=rules,
                    created_by=actor,
                )
        except IntegrityError:
            raise Conflict("A group with this name exists.", code="group_exists") from None
        _audit(actor, audit.Action.CREATE, Resource.GROUP, group.pk)
    return group


def _check_pseudonym(user: User, pseudonym: str) -> str:
    """The pseudonym as stored (NFKC, invisible characters removed, spaces collapsed), or Invalid.

    Refused, on the normalised skeleton (lookalike letters, spacing and case ignored): contact details;
    the user's own name, address or children's names; the real name of any portal user or child (the
    blind index in ``community.names``); a clinical title with a clinician's name or surname.
    """
    cleaned = " ".join(normalise.clean(pseudonym).split())
    if not PSEUDONYM.match(cleaned):
        raise Invalid(
            "A pseudonym has 3 to 40 letters, digits, spaces, dots, dashes or apostrophes.", code="invalid_pseudonym"
        )
    real = [user.display_name, user.email.split("@")[0], *own_children_names(user)]
    if safety.check(cleaned, child_names=real) is not None or _spells_a_real_name(user, cleaned):
        raise Invalid(
            "Choose a pseudonym that contains no real names or contact details.", code="identifying_pseudonym"
        )
    return cleaned


def _spells_a_real_name(user: User, pseudonym: str) -> bool:
    titled, key, surname = normalise.title_and_name(pseudonym)
    if names.owners_named(key):
        return True  # someone's real name, with or without a title
    if not titled:
        return False
    # "Dr Ortiz", "Nurse Lee": a title with a clinician's surname (or full name) impersonates them.
    candidates = names.user_ids(names.owners_named(surname, part=NameKey.Part.SURNAME))
    candidates += names.user_ids(names.owners_named(key, part=NameKey.Part.SURNAME))
    return any(is_clinician(other) for other in User.objects.filter(pk__in=candidates))


def group_join(*, actor: User, group: Group, membership: Membership | None, pseudonym: str) -> Membership:
    """Families (guardians with a live link) and clinicians may join; an approval group holds the
    membership as pending. Banned members stay banned."""
    clinician = is_clinician(actor)
    if not clinician and not guardian_links(actor).exists():
        raise Forbidden("Groups are for the families of our patients and their clinicians.", code="not_eligible")
    if membership is not None and membership.status in (*LIVE_MEMBER_STATUSES, Membership.Status.PENDING):
        raise Conflict("You are already a member of this group.", code="already_member")
    if membership is not None and membership.status == Membership.Status.BANNED:
        raise NotFound()
    name = _check_pseudonym(actor, pseudonym)
    status = (
        Membership.Status.PENDING
        if group.join_policy == Group.JoinPolicy.APPROVAL
        and (membership is None or membership.status != Membership.Status.INVITED)
        else Membership.Status.ACTIVE
    )
    kind = Membership.Kind.CLINICIAN if clinician else Membership.Kind.FAMILY
    with transaction.atomic():
        try:
            with transaction.atomic():
                if membership is None:
                    membership = Membership.objects.create(
                        group=group, user=actor, pseudonym=name, status=status, kind=kind
                    )
                else:
                    membership.pseudonym, membership.status, membership.kind = name, status, kind
                    membership.joined_at, membership.left_at = timezone.now(), None
                    membership.save(update_fields=["pseudonym", "status", "kind", "joined_at", "left_at"])
        except IntegrityError:
            raise Conflict("That pseudonym is taken in this group; choose another.", code="pseudonym_taken") from None
        _audit(actor, audit.Action.CREATE, Resource.GROUP_MEMBERSHIP, membership.pk, status)
    return membership


def group_leave(*, actor: User, membership: Membership) -> Membership:
    with transaction.atomic():
        membership.status = Membership.Status.LEFT
        membership.left_at = timezone.now()
        membership.save(update_fields=["status", "left_at"])
        _audit(actor, audit.Action.UPDATE, Resource.GROUP_MEMBERSHIP, membership.pk, "left")
    return membership


def group_invite(*, actor: User, group: Group, moderator: Membership | None, user_id: uuid.UUID) -> Membership:
    """Moderators invite a family or clinician into a group (the way into an invite-only group)."""
    if not is_moderator(actor, moderator):
        raise NotFound()
    invitee = User.objects.filter(pk=user_id, is_active=True).first()
    if invitee is None:
        raise Invalid("Unknown user.", code="unknown_user")
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            group=group,
            user=invitee,
            defaults={"pseudonym": f"invited-{uuid.uuid4().hex[:10]}", "status": Membership.Status.INVITED},
        )
        if not created and membership.status in (Membership.Status.LEFT,):
            membership.status = Membership.Status.INVITED
            membership.save(update_fields=["status"])
        elif not created:
            raise Conflict("This person already has a membership here.", code="already_member")
        _audit(actor, audit.Action.CREATE, Resource.GROUP_MEMBERSHIP, membership.pk, "invited")
    return membership


def post_create(*, actor: User, membership: Membership, body: str, parent_id: uuid.UUID | None = None) -> Post:
    """Check, rate-limit and save a post; new members' posts wait for a moderator."""
    if membership.status == Membership.Status.MUTED:
        raise Forbidden("A moderator has muted you in this group for now.", code="muted")
    ratelimit.enforce("group_post", [str(membership.pk)], settings.PORTAL_GROUP_POST_RATE)
    ratelimit.enforce("group_post_hour", [str(actor.pk)], settings.PORTAL_GROUP_POST_HOURLY_RATE)
    text = body.strip()
    if not text:
        raise Invalid("A post needs some text.", code="empty_post")
    finding = safety.check(text, child_names=own_children_names(actor))
    if finding is not None:
        raise ApiError(
            finding.message,
            code="identifying_details",
            status=422,
            details=[{"loc": ["body"], "type": code, "msg": safety.LABELS[code]} for code in finding.codes],
        )
    parent = None
    if parent_id is not None:
        parent = Post.objects.filter(pk=parent_id, group=membership.group, status=Post.Status.PUBLISHED).first()
        if parent is None:
            raise NotFound("No such post.")
    trusted = membership.approved_posts >= TRUST_AFTER or is_moderator(actor, membership)
    with transaction.atomic():
        post = Post.objects.create(
            group=membership.group,
            author=membership,
            parent=parent,
            body=text,
            status=Post.Status.PUBLISHED if trusted else Post.Status.PENDING,
        )
        _audit(actor, audit.Action.CREATE, Resource.GROUP_POST, post.pk, post.status)
        if post.status == Post.Status.PUBLISHED:
            realtime.post_changed(post)
    return post


def post_moderate(*, actor: User, moderator: Membership | None, post: Post, action: str, reason: str = "") -> Post:
    """Approve a waiting post, hide a post, or restore a hidden one."""
    if not is_moderator(actor, moderator):
        raise NotFound()
    transitions = {
        "approve": (Post.Status.PENDING, Post.Status.PUBLISHED),
        "hide": (None, Post.Status.HIDDEN),
        "restore": (Post.Status.HIDDEN, Post.Status.PUBLISHED),
    }
    required, target = transitions[action]
    with transaction.atomic():
        post = Post.objects.select_for_update().get(pk=post.pk)
        if (required is not None and post.status != required) or post.status == target:
            raise Conflict(f"A {post.status} post cannot be {action}d.", code="invalid_transition")
        post.status = target
        post.moderated_by, post.moderated_at, post.moderation_reason = actor, timezone.now(), reason[:200]
        post.save(update_fields=["status", "moderated_by", "moderated_at", "moderation_reason"])
        if action == "approve":
            Membership.objects.filter(pk=post.author_id).update(approved_posts=F("approved_posts") + 1)
        Report.objects.filter(post=post, resolved_at__isnull=True).update(resolved_at=timezone.now(), resolved_by=actor)
        _audit(actor, audit.Action.UPDATE, Resource.GROUP_POST, post.pk, f"moderation:{action}")
        realtime.post_changed(post)
    return post


def member_moderate(*, actor: User, moderator: Membership | None, membership: Membership, action: str) -> Membership:
    """Approve a pending member, mute or unmute, ban, or make a trusted parent a moderator."""
    if not is_moderator(actor, moderator):
        raise NotFound()
    allowed = {
        "approve": ((Membership.Status.PENDING,), Membership.Status.ACTIVE),
        "mute": ((Membership.Status.ACTIVE,), Membership.Status.MUTED),
        "unmute": ((Membership.Status.MUTED,), Membership.Status.ACTIVE),
        "ban": (
            (Membership.Status.ACTIVE, Membership.Status.MUTED, Membership.Status.PENDING),
            Membership.Status.BANNED,
        ),
        "make_moderator": ((Membership.Status.ACTIVE,), None),
    }
    sources, target = allowed[action]
    if membership.user_id == actor.pk:
        raise Conflict("Moderators do not moderate themselves.", code="self_moderation")
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        if membership.status not in sources:
            raise Conflict(f"A {membership.status} member cannot be {action}d.", code="invalid_transition")
        if target is None:
            membership.role = Membership.Role.MODERATOR
            membership.save(update_fields=["role"])
        else:
            membership.status = target
            membership.save(update_fields=["status"])
        _audit(actor, audit.Action.UPDATE, Resource.GROUP_MEMBERSHIP, membership.pk, f"moderation:{action}")
    return membership


def post_report(*, actor: User, membership: Membership, post: Post, reason: str) -> Report:
    with transaction.atomic():
        try:
            with transaction.atomic():
                report = Report.objects.create(post=post, reporter=membership, reason=reason)
        except IntegrityError:
            raise Conflict("You have already reported this post.", code="already_reported") from None
        _audit(actor, audit.Action.CREATE, Resource.GROUP_REPORT, report.pk, reason)
    return report


def post_helpful(*, actor: User, membership: Membership, post: Post) -> bool:
    """Toggle the member's "helpful" mark; returns whether it is now set."""
    with transaction.atomic():
        deleted, _ = Reaction.objects.filter(post=post, member=membership).delete()
        if deleted:
            return False
        Reaction.objects.create(post=post, member=membership)
    return True
