"""The secure messenger in the web app: a guardian's conversations about a child (list, thread, new
conversation, replies with photos or files, read marks) and the care team's shared inbox (pools,
reply-by times, claim and assign, replies, urgent acknowledgements).

Every view checks access through ``portal.access.child_for`` (a denial is a 404 page and a ``deny``
audit row, as in the JSON API) and calls the messenger's own selectors and services, the ones
``messaging.api`` calls: ``selectors.threads_list``, ``thread_detail``, ``attachment_content`` and
``inbox``; ``sending.thread_create`` and ``message_send``; ``attachments.attachment_upload``;
``handling.thread_mark_read``, ``thread_claim`` and ``thread_assign``; ``alerts.alert_acknowledge``.
Everything works without JavaScript (form posts, redirect after post); ``web/static/web/messenger.js``
adds live messages over the websocket."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from messaging import alerts, attachments, handling, selectors, sending
from messaging.conf import emergency_number, max_attachment_bytes, max_attachments_per_message
from messaging.files import TooLarge
from messaging.models import Attachment, Message, Thread, UrgentAlert
from messaging.selectors import MessageView, ThreadDetail
from portal import zones
from portal.access import Capability, ChildAccess, child_for, is_clinician, visible_children
from portal.errors import ApiError, Invalid, NotFound
from portal.models import User
from web import selectors as web_selectors
from web.forms import AssignForm, InboxFilterForm, NewThreadForm, ReplyForm
from web.views import family_page
from web.wording import (
    ATTACHMENT_REFUSALS,
    THREAD_STATUS,
    TOPICS,
    error_text,
    label,
)

# -- helpers ----------------------------------------------------------------------------------------


def _refusal(error: ApiError) -> str:
    """A refusal of the messenger's services in the reader's language."""
    if not (translation.get_language() or "en").startswith("en") and error.code in ATTACHMENT_REFUSALS:
        return str(ATTACHMENT_REFUSALS[error.code])
    return error_text(error)


def _uploaded(request: HttpRequest) -> list[UploadedFile]:
    """The files of a compose form: the camera's photo and the chosen files, empty inputs left out."""
    return [upload for name in ("photo", "files") for upload in request.FILES.getlist(name) if upload.name]


def _upload_all(user: User, access: ChildAccess, uploads: list[UploadedFile]) -> list[uuid.UUID]:
    """Check and store every file for the message about to be sent. Call inside the transaction that
    sends it: a refused file (or a refused message) rolls back the ones stored before it."""
    if len(uploads) > max_attachments_per_message():
        raise Invalid(f"At most {max_attachments_per_message()} attachments per message.", code="too_many_attachments")
    ids = []
    for upload in uploads:
        if upload.size is not None and upload.size > max_attachment_bytes():
            raise TooLarge()
        data = upload.read(max_attachment_bytes() + 1)
        stored = attachments.attachment_upload(actor=user, access=access, filename=str(upload.name or ""), data=data)
        ids.append(stored.pk)
    return ids


def _author(message: Message, user: User) -> str:
    if message.kind == Message.Kind.AUTOMATIC:
        return _("Automatic reply")
    if message.author_id == user.pk:
        return _("You")
    return str(message.author) if message.author else ""


def _message_context(view: MessageView, user: User, child_id: uuid.UUID) -> dict[str, Any]:
    message = view.message
    return {
        "id": str(message.pk),
        "position": message.position,
        "author": _author(message, user),
        "kind": message.kind,
        "mine": message.author_id == user.pk,
        "emergency": message.automatic_reason == Message.Reason.EMERGENCY,
        "after_hours": message.automatic_reason == Message.Reason.AFTER_HOURS,
        "body": message.body,
        "created_at": message.created_at,
        "attachments": [_attachment_context(item, child_id) for item in view.attachments],
    }


def _attachment_context(attachment: Attachment, child_id: uuid.UUID) -> dict[str, Any]:
    return {
        "name": attachment.filename,
        "size_kb": max(1, round(attachment.size / 1024)),
        "url": reverse("web:attachment", args=[child_id, attachment.pk]),
    }


def _thread_context(
    detail: ThreadDetail, user: User, access: ChildAccess, form: ReplyForm, last_event: int
) -> dict[str, Any]:
    """What the conversation page shows. ``last_event``, where its live updates resume from, is read
    before the messages: a message written in between is announced again rather than missed."""
    thread = detail.view.thread
    child_id = access.child.pk
    others_read = [receipt for receipt in detail.receipts if receipt.user_id != user.pk]
    return {
        "child": access.child,
        "thread": thread,
        "status": label(THREAD_STATUS, thread.status),
        "topic": label(TOPICS, thread.topic),
        "limited": detail.view.limited,
        "entries": [_message_context(view, user, child_id) for view in detail.messages],
        "last_position": detail.messages[-1].message.position if detail.messages else 0,
        "read_by": [{"name": str(receipt.user), "at": receipt.read_at} for receipt in others_read],
        "clinician": access.is_clinician,
        "alerts": detail.alerts or [],
        "history": detail.history or [],
        "time_zone": user.time_zone,
        "form": form,
        "last_event": last_event,
        "assign_form": AssignForm(
            clinicians=web_selectors.care_team(access=access), initial={"assignee": thread.assignee_id}
        )
        if access.is_clinician
        else None,
    }


# -- where "Messages" leads -------------------------------------------------------------------------


@family_page
@require_GET
def messages_home(request: HttpRequest, user: User) -> HttpResponse:
    """Clinicians: the shared inbox. Guardians: the conversations of their child (with several
    children, a choice of child)."""
    if is_clinician(user):
        return redirect("web:inbox")
    children = list(visible_children(user).order_by("name"))
    if len(children) == 1:
        return redirect("web:threads", child_id=children[0].pk)
    return render(request, "web/messenger/children.html", {"children": children})


# -- a guardian's conversations ---------------------------------------------------------------------


@family_page
@require_GET
def thread_list(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """The conversations about the child, newest first, each with its number of unread messages."""
    access = child_for(user, child_id, Capability.MESSAGE)
    views = selectors.threads_list(user=user, access=access)
    threads = [
        {
            "thread": view.thread,
            "unread": view.unread,
            "status": label(THREAD_STATUS, view.thread.status),
            "topic": label(TOPICS, view.thread.topic),
        }
        for view in views
    ]
    return render(
        request,
        "web/messenger/threads.html",
        {
            "child": access.child,
            "threads": threads,
            "time_zone": user.time_zone,
            "emergency_number": emergency_number(),
        },
    )


@family_page
@require_http_methods(["GET", "POST"])
def thread_new(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """Start a conversation, with photos or files; one ``client_id`` per form, so a double submission
    starts it once."""
    access = child_for(user, child_id, Capability.MESSAGE)
    form = NewThreadForm(request.POST or None, request.FILES or None, initial={"client_id": uuid.uuid4()})
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    ids = _upload_all(user, access, _uploaded(request))
                    thread, created = sending.thread_create(
                        actor=user,
                        access=access,
                        subject=data["subject"],
                        topic=data["topic"],
                        body=data["body"],
                        client_id=data["client_id"],
                        attachment_ids=ids,
                    )
                    if not created:  # a repeated submission: the first one's thread, no new files
                        transaction.set_rollback(True)
            except NotFound:
                raise
            except ApiError as error:
                form.add_error(None, _refusal(error))
            else:
                messages.success(request, _("Message sent."))
                return redirect("web:thread", child_id=child_id, thread_id=thread.pk)
        status = 400
    else:
        status = 200
    context = {"form": form, "child": access.child, "emergency_number": emergency_number()}
    return render(request, "web/messenger/new.html", context, status=status)


@family_page
@require_GET
def thread_page(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """One conversation: its messages (the emergency reply shown first and prominently), attachments,
    who has read it, and the reply form; for the care team also the claim, assignment and urgent
    alerts. Opening it marks it read."""
    access = child_for(user, child_id, Capability.MESSAGE)
    last_event = web_selectors.newest_event_id(user=user)
    detail = selectors.thread_detail(user=user, access=access, thread_id=thread_id)
    if detail.view.unread:
        handling.thread_mark_read(actor=user, access=access, thread_id=thread_id)
    form = ReplyForm(initial={"client_id": uuid.uuid4()})
    return render(request, "web/messenger/thread.html", _thread_context(detail, user, access, form, last_event))


@family_page
@require_POST
def thread_reply(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """Send a message in the conversation, with photos or files (idempotent by the form's
    ``client_id``)."""
    access = child_for(user, child_id, Capability.MESSAGE)
    form = ReplyForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                ids = _upload_all(user, access, _uploaded(request))
                _sent, created = sending.message_send(
                    actor=user,
                    access=access,
                    thread_id=thread_id,
                    body=data["body"],
                    client_id=data["client_id"],
                    attachment_ids=ids,
                )
                if not created:
                    transaction.set_rollback(True)
        except NotFound:
            raise
        except ApiError as error:
            form.add_error(None, _refusal(error))
        else:
            messages.success(request, _("Message sent."))
            return redirect("web:thread", child_id=child_id, thread_id=thread_id)
    last_event = web_selectors.newest_event_id(user=user)
    detail = selectors.thread_detail(user=user, access=access, thread_id=thread_id)
    context = _thread_context(detail, user, access, form, last_event)
    return render(request, "web/messenger/thread.html", context, status=400)


@family_page
@require_GET
def thread_since(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """The conversation's messages after a position, as JSON, for the live page (``messenger.js``
    renders them as text). The same access check and audited read as the page."""
    access = child_for(user, child_id, Capability.MESSAGE)
    after = request.GET.get("after", "")
    if not after.isdigit() or len(after) > 9:
        return JsonResponse({"code": "invalid_after", "message": _("after must be a message position.")}, status=400)
    detail = selectors.thread_detail(user=user, access=access, thread_id=thread_id)
    found = [_message_context(view, user, child_id) for view in detail.messages if view.message.position > int(after)]
    zone = zones.zone(user.time_zone)
    for item in found:
        item["when"] = formats.date_format(timezone.localtime(item["created_at"], zone), "j M, H:i")
        item["created_at"] = item["created_at"].isoformat()
    thread = detail.view.thread
    waiting = thread.status == Thread.Status.AWAITING_CARE_TEAM
    return JsonResponse({"messages": found, "status": label(THREAD_STATUS, thread.status), "waiting": waiting})


@family_page
@require_POST
def thread_read(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """Read mark: everything in the conversation so far has been read (the live page sends it when a
    new message appears while it is open)."""
    access = child_for(user, child_id, Capability.MESSAGE)
    handling.thread_mark_read(actor=user, access=access, thread_id=thread_id)
    if request.headers.get("Accept") == "application/json":
        return HttpResponse(status=204)
    return redirect("web:thread", child_id=child_id, thread_id=thread_id)


@family_page
@require_GET
def attachment(request: HttpRequest, user: User, child_id: uuid.UUID, attachment_id: uuid.UUID) -> HttpResponse:
    """Download an attachment (participants of its conversation only), as the API does."""
    access = child_for(user, child_id, Capability.MESSAGE)
    found, data = selectors.attachment_content(user=user, access=access, attachment_id=attachment_id)
    response = HttpResponse(data, content_type=found.content_type)
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}[found.content_type]
    response["Content-Disposition"] = f'attachment; filename="{found.pk}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# -- the care team's shared inbox -------------------------------------------------------------------


@family_page
@require_GET
def inbox(request: HttpRequest, user: User) -> HttpResponse:
    """Threads in my pools (or assigned to me) about children whose care team I am on, the most
    pressing reply-by first, each with its latest urgent alert; filters by status, priority and pool."""
    if not is_clinician(user):
        raise NotFound()
    pools = web_selectors.my_pools(user=user)
    form = InboxFilterForm(request.GET or None, pools=pools)
    filters = form.cleaned_data if form.is_valid() else {}
    items = selectors.inbox(
        user=user,
        status=filters.get("status") or None,
        priority=filters.get("priority") or None,
        pool_id=filters.get("pool") or None,
    )
    now = timezone.now()
    rows = [
        {
            "thread": item.view.thread,
            "unread": item.view.unread,
            "status": label(THREAD_STATUS, item.view.thread.status),
            "topic": label(TOPICS, item.view.thread.topic),
            "alert": item.alert.alert if item.alert else None,
            "mine": item.view.thread.assignee_id == user.pk,
            "overdue": bool(
                item.view.thread.reply_by
                and item.view.thread.reply_by < now
                and item.view.thread.status == Thread.Status.AWAITING_CARE_TEAM
            ),
        }
        for item in items
    ]
    return render(
        request,
        "web/messenger/inbox.html",
        {
            "rows": rows,
            "form": form,
            "time_zone": user.time_zone,
            "stats": selectors.response_stats(user=user),
            "last_event": web_selectors.newest_event_id(user=user),
        },
    )


def _thread_action(
    request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID, action: Callable[[], object], done: str
) -> HttpResponse:
    """Run a care team's action on a conversation and go back to it: ``done`` on success, the reason on
    a refusal; an unknown or hidden conversation stays a 404."""
    try:
        action()
    except NotFound:
        raise
    except ApiError as error:
        messages.error(request, _refusal(error))
    else:
        messages.success(request, done)
    return redirect("web:thread", child_id=child_id, thread_id=thread_id)


@family_page
@require_POST
def thread_claim(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """Care team: take the conversation."""
    access = child_for(user, child_id, Capability.TREAT)
    return _thread_action(
        request,
        child_id,
        thread_id,
        lambda: handling.thread_claim(actor=user, access=access, thread_id=thread_id),
        _("You took this conversation."),
    )


@family_page
@require_POST
def thread_assign(request: HttpRequest, user: User, child_id: uuid.UUID, thread_id: uuid.UUID) -> HttpResponse:
    """Care team: assign (or reassign) the conversation to a clinician of the child's care team."""
    access = child_for(user, child_id, Capability.TREAT)
    form = AssignForm(request.POST, clinicians=web_selectors.care_team(access=access))
    if not form.is_valid():
        messages.error(request, _("Choose a clinician of the care team."))
        return redirect("web:thread", child_id=child_id, thread_id=thread_id)
    assignee_id = form.cleaned_data["assignee"]
    return _thread_action(
        request,
        child_id,
        thread_id,
        lambda: handling.thread_assign(actor=user, access=access, thread_id=thread_id, assignee_id=assignee_id),
        _("Conversation assigned."),
    )


@family_page
@require_POST
def alert_acknowledge(request: HttpRequest, user: User, child_id: uuid.UUID, alert_id: uuid.UUID) -> HttpResponse:
    """Care team: acknowledge an urgent alert (its escalation stops); back to its conversation."""
    access = child_for(user, child_id, Capability.TREAT)
    alert: UrgentAlert = alerts.alert_acknowledge(actor=user, access=access, alert_id=alert_id)
    messages.success(request, _("Urgent alert acknowledged."))
    return redirect("web:thread", child_id=child_id, thread_id=alert.thread_id)
