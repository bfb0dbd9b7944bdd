"""Messaging endpoints: threads and messages, attachments, read receipts, the clinician inbox and its
statistics, the event stream for polling clients, and notification preferences."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import File, Query, Router, Status
from ninja.decorators import decorate_view
from ninja.files import UploadedFile
from pydantic import Field

from messaging import alerts, attachments, handling, notify, phones, push, selectors, sending
from messaging.conf import max_attachment_bytes
from messaging.files import TooLarge
from messaging.models import NotificationPreference, PushSubscription
from messaging.realtime import stream
from messaging.schemas import (
    AlertOut,
    AssignIn,
    AttachmentOut,
    EventsOut,
    InboxThreadOut,
    MessageIn,
    MessageOut,
    PhoneCodeIn,
    PhoneCodeOut,
    PhoneIn,
    PhoneOut,
    PoolStatsOut,
    PreferencesIn,
    PreferencesOut,
    PushConfigOut,
    PushSubscriptionIn,
    PushSubscriptionOut,
    StatusIn,
    ThreadDetailOut,
    ThreadIn,
    ThreadOut,
    TopicIn,
    alert_out,
    attachment_meta,
    inbox_out,
    message_out,
    phone_out,
    thread_detail_out,
    thread_out,
)
from messaging.selectors import ThreadView
from portal import services
from portal.access import Capability, child_for
from portal.api import actor
from portal.errors import Invalid
from portal.etag import etag
from portal.idempotency import status_for
from portal.pagination import Page, PageIn, pager

router = Router(tags=["messaging"])


# -- threads and messages -----------------------------------------------------------------------


class ThreadsQuery(PageIn):
    status: StatusIn | None = None


@router.get(
    "/children/{child_id}/threads",
    response={200: Page[ThreadOut], 304: None},
    summary="Conversations about the child, latest message first",
)
@decorate_view(etag)
def threads(request: HttpRequest, child_id: uuid.UUID, query: Query[ThreadsQuery]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    pages = pager(request, query, "-last_message_at", "-id")
    views = selectors.threads_list(user=actor(request), access=access, status=query.status, page=pages)
    return pages.page(views, thread_out, row=lambda view: view.thread)


@router.post(
    "/children/{child_id}/threads",
    response={200: ThreadDetailOut, 201: ThreadDetailOut},
    summary="Start a conversation (routed to a pool; idempotent by client_id)",
)
def thread_create(request: HttpRequest, child_id: uuid.UUID, payload: ThreadIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    thread, created = sending.thread_create(actor=actor(request), access=access, **payload.dict())
    return Status(
        status_for(created=created),
        thread_detail_out(selectors.thread_detail(user=actor(request), access=access, thread_id=thread.pk)),
    )


@router.get(
    "/children/{child_id}/threads/{thread_id}",
    response=ThreadDetailOut,
    summary="A conversation with its messages and read receipts",
)
def thread(request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    return thread_detail_out(selectors.thread_detail(user=actor(request), access=access, thread_id=thread_id))


@router.post(
    "/children/{child_id}/threads/{thread_id}/messages",
    response={200: MessageOut, 201: MessageOut},
    summary="Send a message (never edited: a correction is a new message; idempotent by client_id)",
)
def message_send(
    request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID, payload: MessageIn
) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    message, created = sending.message_send(actor=actor(request), access=access, thread_id=thread_id, **payload.dict())
    return Status(status_for(created=created), message_out(selectors.message_view(message=message)))


@router.post(
    "/children/{child_id}/threads/{thread_id}/read", response={204: None}, summary="Read receipt: read up to now"
)
def thread_read(request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID) -> Status[None]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    handling.thread_mark_read(actor=actor(request), access=access, thread_id=thread_id)
    return Status(204, None)


@router.post("/children/{child_id}/threads/{thread_id}/claim", response=ThreadOut, summary="Care team: take it")
def thread_claim(request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    return thread_out(ThreadView(handling.thread_claim(actor=actor(request), access=access, thread_id=thread_id)))


@router.post(
    "/children/{child_id}/threads/{thread_id}/assign",
    response=ThreadOut,
    summary="Care team: assign or reassign to a clinician of the care team (history kept)",
)
def thread_assign(request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID, payload: AssignIn) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    thread = handling.thread_assign(actor=actor(request), access=access, thread_id=thread_id, **payload.dict())
    return thread_out(ThreadView(thread))


@router.post("/children/{child_id}/threads/{thread_id}/close", response=ThreadOut, summary="Care team: close")
def thread_close(request: HttpRequest, child_id: uuid.UUID, thread_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    return thread_out(ThreadView(handling.thread_close(actor=actor(request), access=access, thread_id=thread_id)))


@router.post(
    "/children/{child_id}/alerts/{alert_id}/acknowledge",
    response=AlertOut,
    summary="Care team: acknowledge an urgent alert (stops its escalation)",
)
def alert_acknowledge(request: HttpRequest, child_id: uuid.UUID, alert_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    alert = alerts.alert_acknowledge(actor=actor(request), access=access, alert_id=alert_id)
    return alert_out(selectors.alert_detail(alert))


# -- attachments --------------------------------------------------------------------------------


@router.post(
    "/children/{child_id}/attachments",
    response={201: AttachmentOut},
    summary="Upload a JPEG, PNG or PDF (≤ 10 MB) to send with a message: pass its id in attachment_ids",
)
def attachment_upload(request: HttpRequest, child_id: uuid.UUID, file: File[UploadedFile]) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    if file.size is not None and file.size > max_attachment_bytes():
        raise TooLarge()
    attachment = attachments.attachment_upload(
        actor=actor(request), access=access, filename=str(file.name or ""), data=file.read(max_attachment_bytes() + 1)
    )
    return Status(201, attachment_meta(attachment))


@router.get(
    "/children/{child_id}/attachments/{attachment_id}",
    response={200: None},
    summary="Download an attachment (participants of its conversation only)",
)
def attachment_download(request: HttpRequest, child_id: uuid.UUID, attachment_id: uuid.UUID) -> HttpResponse:
    access = child_for(actor(request), child_id, Capability.MESSAGE)
    attachment, data = selectors.attachment_content(user=actor(request), access=access, attachment_id=attachment_id)
    response = HttpResponse(data, content_type=attachment.content_type)
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}[attachment.content_type]
    response["Content-Disposition"] = f'attachment; filename="{attachment.pk}.{extension}"'
    response["Cache-Control"] = "private, no-store"
    return response


# -- the clinician inbox ------------------------------------------------------------------------


class InboxQuery(PageIn):
    status: StatusIn | None = None
    topic: TopicIn | None = None
    priority: Literal["routine", "urgent"] | None = None
    child_id: uuid.UUID | None = None
    pool_id: uuid.UUID | None = None


@router.get(
    "/inbox",
    response=Page[InboxThreadOut],
    summary="Clinicians: threads in my pools, by reply-by time (none last), urgent first, oldest first",
)
def inbox(request: HttpRequest, query: Query[InboxQuery]) -> dict[str, Any]:
    pages = pager(request, query, *selectors.INBOX_ORDER)
    filters = query.dict(exclude={"limit", "cursor"})
    items = selectors.inbox(user=actor(request), **filters, page=pages)
    return pages.page(items, inbox_out, row=lambda item: item.view.thread)


class StatsQuery(PageIn):
    days: int = Field(30, description="The period, in days back from now (1 to 365).")


@router.get(
    "/inbox/stats",
    response=Page[PoolStatsOut],
    summary="Clinicians: median and 90th percentile time to first reply per pool",
)
def inbox_stats(request: HttpRequest, query: Query[StatsQuery]) -> dict[str, Any]:
    if not 1 <= query.days <= 365:
        raise Invalid("days must be between 1 and 365.", code="invalid_days")
    pages = pager(request, query, "pool", "pool_id")
    return pages.page_of(selectors.response_stats(user=actor(request), days=query.days), dataclasses.asdict)


# -- the event stream ---------------------------------------------------------------------------


@router.get("/events", response=EventsOut, summary="My event stream after an event id (for clients that poll)")
def events(request: HttpRequest, after: int = 0, limit: int = 500) -> dict[str, Any]:
    if after < 0 or not 1 <= limit <= 1000:
        raise Invalid("after must be ≥ 0 and limit between 1 and 1000.", code="invalid_range")
    found, last_id = stream.events_after(user=actor(request), after=after, limit=limit)
    return {"events": found, "last_id": last_id}


# -- notification preferences -------------------------------------------------------------------


@router.get("/me/notification-preferences", response=PreferencesOut, summary="Email, SMS and quiet hours")
def preferences(request: HttpRequest) -> NotificationPreference:
    return selectors.preferences(user=actor(request))


@router.patch("/me/notification-preferences", response=PreferencesOut, summary="Change email, SMS or quiet hours")
def preferences_update(request: HttpRequest, payload: PreferencesIn) -> NotificationPreference:
    notify.preferences_update(actor=actor(request), **payload.dict(exclude_unset=True))
    return selectors.preferences(user=actor(request))


# -- web push: the account's devices -----------------------------------------------------------------


@router.get("/me/push-config", response=PushConfigOut, summary="Whether web push is on, and its VAPID public key")
def push_config(request: HttpRequest) -> dict[str, Any]:
    actor(request)
    key = push.public_key()
    return {"enabled": key is not None, "public_key": key}


@router.get("/me/push-subscriptions", response=Page[PushSubscriptionOut], summary="My devices that receive web push")
def push_subscriptions(request: HttpRequest, query: Query[PageIn]) -> dict[str, Any]:
    pages = pager(request, query, *selectors.PUSH_SUBSCRIPTION_ORDER)
    return pages.page(selectors.push_subscriptions(user=actor(request), page=pages), lambda row: row)


@router.post(
    "/me/push-subscriptions",
    response={201: PushSubscriptionOut},
    summary="Register this browser's PushSubscription (the same one again is the same device)",
)
def push_subscription_register(request: HttpRequest, payload: PushSubscriptionIn) -> Status[PushSubscription]:
    subscription = push.push_subscription_register(
        actor=actor(request),
        endpoint=payload.endpoint,
        p256dh=payload.keys.p256dh,
        auth=payload.keys.auth,
        user_agent=str(request.META.get("HTTP_USER_AGENT", ""))[:512],
    )
    return Status(201, subscription)


@router.delete("/me/push-subscriptions/{subscription_id}", response={204: None}, summary="Stop web push to a device")
def push_subscription_revoke(request: HttpRequest, subscription_id: uuid.UUID) -> Status[None]:
    push.push_subscription_revoke(actor=actor(request), subscription_id=subscription_id)
    return Status(204, None)


# -- the account's phone number (where texts go; what phone-bound invitations check) ---------------


@router.get("/me/phone", response=PhoneOut, summary="My phone number and whether it is verified")
def phone(request: HttpRequest) -> dict[str, Any]:
    return phone_out(actor(request))


@router.put("/me/phone", response=PhoneOut, summary="Set or remove my phone number (a new number is unverified)")
def phone_set(request: HttpRequest, payload: PhoneIn) -> dict[str, Any]:
    return phone_out(services.phone_set(actor=actor(request), phone=payload.phone))


@router.post("/me/phone/code", response={202: PhoneCodeOut}, summary="Text a verification code to my phone number")
def phone_code(request: HttpRequest) -> Status[dict[str, Any]]:
    expires_at = phones.phone_code_send(actor=actor(request))
    return Status(202, {"expires_at": expires_at})


@router.post("/me/phone/verify", response=PhoneOut, summary="Verify my phone number with the code texted to it")
def phone_verify(request: HttpRequest, payload: PhoneCodeIn) -> dict[str, Any]:
    user = services.phone_verification_confirm(
        actor=actor(request), code=payload.code, client_address=str(request.META.get("REMOTE_ADDR", ""))
    )
    return phone_out(user)
