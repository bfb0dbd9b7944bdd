"""Peer group pages: families discover groups (matched to their own children's conditions, for them
alone), join under a pseudonym, read, post and report; moderators approve, hide and restore posts.

Every page goes through ``messaging.groups.selectors.group_for``/``member_for`` exactly as the JSON
API does: an invisible group, or a non-member's read of posts, is a 404 and a ``deny`` audit row. Posts
pass the groups' safety check (``messaging.groups.safety``) inside ``services.post_create``; moderation
decisions are audited by ``services.post_moderate``. Other members appear by pseudonym only."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from messaging.groups import selectors, services
from messaging.groups.models import LIVE_MEMBER_STATUSES, Group, Membership, Post
from messaging.groups.schemas import JoinIn, PostIn
from portal import audit
from portal.errors import ApiError, NotFound
from portal.models import User
from portal.vocabulary import Resource
from web import views
from web.wording import error_text

REPORT_REASONS = [
    ("identifying", gettext_lazy("It identifies a child or a family")),
    ("medical_advice", gettext_lazy("It gives medical advice")),
    ("abusive", gettext_lazy("It is abusive or unkind")),
    ("spam", gettext_lazy("It is spam or advertising")),
    ("other", gettext_lazy("Something else")),
]
POST_STATUS: dict[str, Any] = {
    Post.Status.PUBLISHED: gettext_lazy("Published"),
    Post.Status.PENDING: gettext_lazy("Waiting for a moderator"),
    Post.Status.HIDDEN: gettext_lazy("Hidden by a moderator"),
}


# -- forms: the API's own input schemas decide what is valid --------------------------------------


def _schema_error(form: forms.Form, schema: Any, field: str, message: str) -> None:
    data = {field: form.cleaned_data.get(field, "")}
    try:
        schema(**data)
    except ValidationError:
        form.add_error(field, message)


class JoinForm(forms.Form):
    pseudonym = forms.CharField(label=gettext_lazy("Your pseudonym in this group"), min_length=3, max_length=40)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            _schema_error(self, JoinIn, "pseudonym", _("Remove the control characters from the pseudonym."))
        return data


class PostForm(forms.Form):
    body = forms.CharField(label=gettext_lazy("Your post"), max_length=5000, widget=forms.Textarea)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            _schema_error(self, PostIn, "body", _("Remove the control characters from the post."))
        return data


class ReportForm(forms.Form):
    reason = forms.ChoiceField(choices=REPORT_REASONS)


class ModerateForm(forms.Form):
    action = forms.ChoiceField(choices=[("approve", "approve"), ("hide", "hide"), ("restore", "restore")])
    reason = forms.CharField(required=False, max_length=200)


def form_problem(form: forms.Form) -> str:
    """The first problem of a form, in words (field errors say which field they are about)."""
    for field, errors in form.errors.items():
        if field == "__all__" or field not in form.fields:
            return str(errors[0])
        return f"{form.fields[field].label or field}: {errors[0]}"
    return ""


# -- reads ----------------------------------------------------------------------------------------


def moderated_groups(*, user: User) -> list[Group]:
    """The groups this account moderates (as an active moderator member), by name; for a portal
    manager, every group."""
    if services.is_moderator(user, None):
        return list(Group.objects.order_by("name"))
    return list(
        Group.objects.filter(
            memberships__user=user,
            memberships__role=Membership.Role.MODERATOR,
            memberships__status=Membership.Status.ACTIVE,
        ).order_by("name")
    )


def _moderator(user: User, group_id: uuid.UUID) -> tuple[Group, Membership | None]:
    group, membership = selectors.group_for(user, group_id)
    if not services.is_moderator(user, membership):
        audit.deny(actor=user, entity_type=Resource.GROUP_MODERATION, entity_id=str(group_id), reason="not_a_moderator")
        raise NotFound()
    return group, membership


def _live_member(user: User, group_id: uuid.UUID) -> Membership:
    """The account's live membership (staff read every group but act only where they are members)."""
    membership = selectors.member_for(user, group_id)[1]
    if membership is None:
        audit.deny(actor=user, entity_type=Resource.GROUP, entity_id=str(group_id), reason="not_a_member")
        raise NotFound()
    return membership


# -- pages ----------------------------------------------------------------------------------------


@views.family_page
def group_list(request: HttpRequest, user: User) -> HttpResponse:
    """Listed groups and the account's own; those matching its children's conditions first (the match
    is computed for this account alone and never shown to anyone else)."""
    return render(request, "web/groups/list.html", {"groups": selectors.discover(user=user)})


def _group(
    request: HttpRequest,
    user: User,
    group_id: uuid.UUID,
    *,
    status: int = 200,
    error: str = "",
    join_form: JoinForm | None = None,
    post_form: PostForm | None = None,
) -> HttpResponse:
    group, membership = selectors.group_for(user, group_id)
    view = selectors.group_detail(user=user, group=group, membership=membership)
    posts: list[selectors.PostView] = []
    moderator = services.is_moderator(user, membership)
    if view.member or moderator:
        posts = selectors.posts_list(user=user, group=group, membership=membership, moderator=moderator)
        services.reads_note(actor=user, count=len(posts))
    context = {
        "view": view,
        "group": group,
        "membership": membership,
        "moderator": moderator,
        "posts": [{"view": item, "status": POST_STATUS.get(item.post.status, item.post.status)} for item in posts],
        "reasons": REPORT_REASONS,
        "error": error,
        "join_form": join_form or JoinForm(),
        "post_form": post_form or PostForm(),
        "pending": membership is not None and membership.status == Membership.Status.PENDING,
        "can_join": membership is None
        or membership.status not in (*LIVE_MEMBER_STATUSES, Membership.Status.PENDING, Membership.Status.BANNED),
    }
    return render(request, "web/groups/group.html", context, status=status)


@views.family_page
def group_page(request: HttpRequest, user: User, group_id: uuid.UUID) -> HttpResponse:
    """A group: to a non-member its name, description and size and the way in; to a member its rules
    and posts (the member's own waiting posts too) with the forms to post and to report."""
    return _group(request, user, group_id)


@views.family_page
@require_POST
def group_join(request: HttpRequest, user: User, group_id: uuid.UUID) -> HttpResponse:
    """Join under a pseudonym (``services.group_join``: eligibility, the pseudonym checks, approval)."""
    group, membership = selectors.group_for(user, group_id)
    form = JoinForm(request.POST)
    if not form.is_valid():
        return _group(request, user, group_id, status=400, error=form_problem(form), join_form=form)
    try:
        joined = services.group_join(
            actor=user, group=group, membership=membership, pseudonym=form.cleaned_data["pseudonym"]
        )
    except NotFound:
        raise
    except ApiError as error:
        return _group(request, user, group_id, status=error.status, error=error_text(error), join_form=form)
    if joined.status == Membership.Status.PENDING:
        messages.success(request, _("Thank you. A moderator will approve your membership soon."))
    else:
        messages.success(request, _("Welcome to the group."))
    return redirect("web:group", group_id=group_id)


@views.family_page
@require_POST
def group_post(request: HttpRequest, user: User, group_id: uuid.UUID) -> HttpResponse:
    """Post (``services.post_create``: the safety check, rate limits, new members' posts wait)."""
    membership = _live_member(user, group_id)
    form = PostForm(request.POST)
    if not form.is_valid():
        return _group(request, user, group_id, status=400, error=form_problem(form), post_form=form)
    try:
        post = services.post_create(actor=user, membership=membership, body=form.cleaned_data["body"])
    except NotFound:
        raise
    except ApiError as error:
        return _group(request, user, group_id, status=error.status, error=error_text(error), post_form=form)
    if post.status == Post.Status.PENDING:
        messages.success(request, _("Thank you. Your post will appear once a moderator has read it."))
    else:
        messages.success(request, _("Your post is published."))
    return redirect("web:group", group_id=group_id)


@views.family_page
@require_POST
def group_report(request: HttpRequest, user: User, group_id: uuid.UUID, post_id: uuid.UUID) -> HttpResponse:
    """Report a published post to the moderators (once per member and post)."""
    membership = _live_member(user, group_id)
    post = selectors.post_in_group(group_id, post_id)
    form = ReportForm(request.POST)
    if not form.is_valid():
        return _group(request, user, group_id, status=400, error=_("Choose why you are reporting this post."))
    try:
        services.post_report(actor=user, membership=membership, post=post, reason=form.cleaned_data["reason"])
    except ApiError as error:
        return _group(request, user, group_id, status=error.status, error=error_text(error))
    messages.success(request, _("Thank you. The moderators will look at this post."))
    return redirect("web:group", group_id=group_id)


# -- moderation -----------------------------------------------------------------------------------


def _moderation(
    request: HttpRequest, user: User, group_id: uuid.UUID, *, status: int = 200, error: str = ""
) -> HttpResponse:
    group, membership = _moderator(user, group_id)
    queue = selectors.moderation_queue(user=user, group=group)
    every = selectors.posts_list(user=user, group=group, membership=membership, moderator=True)
    hidden = [item for item in every if item.post.status == Post.Status.HIDDEN]
    services.reads_note(actor=user, count=len(every))
    return render(
        request,
        "web/groups/moderation.html",
        {"group": group, "queue": queue, "hidden": hidden, "error": error},
        status=status,
    )


@views.family_page
def moderation(request: HttpRequest, user: User, group_id: uuid.UUID) -> HttpResponse:
    """Moderators: posts waiting for approval, reported posts, hidden posts."""
    return _moderation(request, user, group_id)


@views.family_page
@require_POST
def moderate(request: HttpRequest, user: User, group_id: uuid.UUID, post_id: uuid.UUID) -> HttpResponse:
    """Approve, hide or restore a post (``services.post_moderate``, which audits the decision and
    resolves the post's open reports)."""
    membership = _moderator(user, group_id)[1]
    post = selectors.post_in_group(group_id, post_id, published_only=False)
    form = ModerateForm(request.POST)
    if not form.is_valid():
        return _moderation(request, user, group_id, status=400, error=form_problem(form))
    try:
        services.post_moderate(actor=user, moderator=membership, post=post, **form.cleaned_data)
    except NotFound:
        raise
    except ApiError as error:
        return _moderation(request, user, group_id, status=error.status, error=error_text(error))
    done = {"approve": _("Post approved."), "hide": _("Post hidden."), "restore": _("Post restored.")}
    messages.success(request, done[form.cleaned_data["action"]])
    return redirect("web:group_moderation", group_id=group_id)
