"""Email, SMS and web push notifications for users who are not connected, sent by background tasks,
and the users' preferences that decide them (channels, quiet hours).

The texts are fixed and free of PHI: they say that something happened and ask the user to sign in,
never which child, which condition or what was written. Preferences decide the channels; quiet hours
defer non-urgent notices to their end; an urgent notice (a red flag, for the on-call clinician) goes
out at once on every channel the user has.

Web push goes to every device the user registered (``messaging.push``), one notification row per
device, under the same presence, quiet-hour and retry rules; a device the push service says is gone
(404/410) is revoked. Its payload is the same PHI-free title and sentence and a path in the app.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django_tasks import task

from messaging import push, sms
from messaging.conf import notification_backoff_seconds, notification_max_attempts
from messaging.models import Notification, NotificationPreference, PushSubscription
from messaging.realtime import presence
from messaging.realtime.stream import audience
from portal import audit, events, zones
from portal.models import User
from portal.vocabulary import EventType, Resource

logger = logging.getLogger(__name__)

# Marked for translation; rendered in the recipient's ``preferred_language`` when sent.
TEXTS: dict[str, tuple[Promise, Promise]] = {
    "new_message": (
        _("New message from the care team"),
        _("You have a new message from the care team. Sign in to the family care portal to read it."),
    ),
    "family_message": (
        _("New message from a family"),
        _("A family sent a new message in a conversation assigned to you. Sign in to the portal to read it."),
    ),
    "urgent_message": (
        _("URGENT: message flagged by triage"),
        _("URGENT: a family message was flagged by triage and needs attention now. Sign in to the portal."),
    ),
    "urgent_escalation": (
        _("URGENT: unacknowledged alert escalated to you"),
        _(
            "URGENT: an alert flagged by triage was not acknowledged in time and was escalated to you. "
            "Sign in to the portal and acknowledge it."
        ),
    ),
    "escalation": (
        _("Overdue conversation escalated to you"),
        _("A conversation in your pool is past its reply-by time and was escalated to you. Sign in to the portal."),
    ),
    "refill_changed": (
        _("Your refill request changed"),
        _("A refill request was updated. Sign in to the family care portal to see it."),
    ),
}

# Kinds sent by web push only (the email and SMS choices predate them and do not cover them).
PUSH_ONLY_KINDS = frozenset({"refill_changed"})

# Where a push notice opens the app: a page of the account's own, never a child's (no id in a payload).
PUSH_PAGES: dict[str, str] = {
    "new_message": "web:messages",
    "family_message": "web:inbox",
    "urgent_message": "web:inbox",
    "urgent_escalation": "web:inbox",
    "escalation": "web:inbox",
    "refill_changed": "web:home",
}


def push_payload(kind: str, language: str) -> str:
    """What a device is sent for ``kind``: the subject as title, the sentence, the page to open."""
    subject, body = texts(kind, language)
    return push.payload(title=subject, body=body, url=reverse(PUSH_PAGES[kind]), tag=kind)


def texts(kind: str, language: str) -> tuple[str, str]:
    """The subject and body of a notification in ``language`` (English where it has no catalogue)."""
    subject, body = TEXTS[kind]
    with translation.override(language):
        return str(subject), str(body)


def preference(user: User) -> NotificationPreference:
    found = NotificationPreference.objects.filter(user=user).first()
    return found or NotificationPreference(user=user)


def preferences_update(*, actor: User, **fields: Any) -> NotificationPreference:
    with transaction.atomic():
        pref, _ = NotificationPreference.objects.get_or_create(user=actor)
        for name, value in fields.items():
            setattr(pref, name, value)
        if fields:
            pref.save(update_fields=list(fields))
        audit.record(
            actor=actor, action=audit.Action.UPDATE, entity_type=Resource.NOTIFICATION_PREFERENCE, entity_id=pref.pk
        )
    return pref


def in_quiet_hours(pref: NotificationPreference, tz_name: str, moment: datetime) -> datetime | None:
    """The end of the quiet period ``moment`` falls in, or None when it is not quiet."""
    if pref.quiet_start is None or pref.quiet_end is None or pref.quiet_start == pref.quiet_end:
        return None
    tz = zones.zone(tz_name)
    local = moment.astimezone(tz)
    now_t: time = local.time()
    start, end = pref.quiet_start, pref.quiet_end
    if start < end:
        quiet = start <= now_t < end
        end_day = local.date()
    else:  # crosses midnight
        quiet = now_t >= start or now_t < end
        end_day = local.date() + timedelta(days=1) if now_t >= start else local.date()
    if not quiet:
        return None
    return datetime.combine(end_day, end, tzinfo=tz)


def schedule(user_ids: Iterable[uuid.UUID], kind: str, *, urgent: bool = False) -> list[Notification]:
    """Create the notifications for these users on the channels they chose and queue their sending
    after commit. Precondition: inside the transaction of the change that causes them."""
    if kind not in TEXTS:
        raise ValueError(f"unknown notification kind {kind}")
    # Each user with their preferences (a one-to-one: one query for both).
    users = list(User.objects.filter(pk__in=set(user_ids), is_active=True).select_related("notification_preference"))
    prefs = {}
    for user in users:
        try:
            prefs[user.pk] = user.notification_preference
        except NotificationPreference.DoesNotExist:
            continue
    devices: dict[uuid.UUID, list[PushSubscription]] = {}
    if push.enabled():
        for device in PushSubscription.objects.filter(user__in=users, revoked_at__isnull=True):
            devices.setdefault(device.user_id, []).append(device)
    rows = []
    for user in users:
        pref = prefs.get(user.pk) or NotificationPreference(user=user)
        if kind not in PUSH_ONLY_KINDS:
            if pref.email or urgent:
                rows.append(Notification(user=user, channel=Notification.Channel.EMAIL, kind=kind, urgent=urgent))
            if (pref.sms or urgent) and user.phone:
                rows.append(Notification(user=user, channel=Notification.Channel.SMS, kind=kind, urgent=urgent))
        rows.extend(
            Notification(user=user, channel=Notification.Channel.PUSH, kind=kind, urgent=urgent, subscription=device)
            for device in devices.get(user.pk, [])
        )
    Notification.objects.bulk_create(rows)
    ids = [str(row.pk) for row in rows]
    if ids:
        transaction.on_commit(lambda: (_send_at_once if urgent else _enqueue_all)(ids), robust=True)
    return rows


def _send_at_once(ids: list[str]) -> None:
    """Urgent pages go out from this process right after commit: the task queue may be dead. A send
    that fails is retried by the task ``deliver`` defers (and by the worker's ``send_due`` sweep);
    a row this process could not even attempt goes to the queue."""
    for notification_id in ids:
        try:
            deliver(notification_id)
        except Exception:
            logger.warning("urgent notification %s not attempted at once; queued", notification_id)
            try:
                _enqueue_all([notification_id])
            except Exception:  # the sweep finds the pending row
                logger.warning("urgent notification %s left for the sweep", notification_id)


def _enqueue_all(ids: list[str]) -> None:
    for notification_id in ids:
        deliver_notification.enqueue(notification_id)


def _defer(notification_id: str, when: datetime) -> None:
    """Queue a later attempt where the task backend can defer; otherwise ``send_notifications``
    (run periodically) picks the row up once ``not_before`` has passed."""
    if deliver_notification.get_backend().supports_defer:
        deliver_notification.using(run_after=when).enqueue(notification_id)


def _send(notification: Notification, moment: datetime) -> None:
    user = notification.user
    if notification.channel == Notification.Channel.PUSH:
        assert notification.subscription is not None
        push.send(notification.subscription, push_payload(notification.kind, user.preferred_language), moment=moment)
        return
    subject, body = texts(notification.kind, user.preferred_language)
    if notification.channel == Notification.Channel.EMAIL:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
    else:
        sms.backend().send(user.phone, body)


def _skip(notification: Notification, reason: str) -> str:
    notification.status = Notification.Status.SKIPPED
    notification.last_error = reason
    notification.save(update_fields=["status", "last_error"])
    return notification.status


def deliver(notification_id: uuid.UUID | str, now: datetime | None = None) -> str:
    """Send one notification if it is still due; returns its status afterwards."""
    moment = now or timezone.now()
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("user", "subscription")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.status != Notification.Status.PENDING:
            return notification.status if notification else "missing"
        if notification.not_before > moment:
            return notification.status
        user = notification.user
        if notification.channel == Notification.Channel.PUSH:
            if notification.subscription is None or notification.subscription.revoked_at is not None:
                return _skip(notification, "revoked")
            if not push.enabled():
                return _skip(notification, "push_off")
        if not notification.urgent:
            if presence.is_connected(user.pk):
                return _skip(notification, "connected")
            quiet_end = in_quiet_hours(preference(user), user.time_zone, moment)
            if quiet_end is not None:
                notification.not_before = quiet_end
                notification.save(update_fields=["not_before"])
                transaction.on_commit(lambda: _defer(str(notification.pk), quiet_end), robust=True)
                return notification.status
        notification.attempts += 1
        try:
            _send(notification, moment)
        except push.PushGone:
            # The device unsubscribed (404/410): no retry, the subscription is revoked.
            assert notification.subscription is not None
            push.push_subscription_gone(notification.subscription, moment=moment)
            notification.status = Notification.Status.FAILED
            notification.last_error = "gone"
        except Exception as exc:
            # The exception type only: provider messages can echo the number or the text.
            notification.last_error = type(exc).__name__[:60]
            if notification.attempts >= notification_max_attempts():
                notification.status = Notification.Status.FAILED
                logger.warning(
                    "notification %s failed for good after %s attempts", notification.pk, notification.attempts
                )
            else:
                retry_at = moment + timedelta(seconds=notification_backoff_seconds(notification.attempts))
                notification.not_before = retry_at
                transaction.on_commit(lambda: _defer(str(notification.pk), retry_at), robust=True)
        else:
            notification.status = Notification.Status.SENT
            notification.sent_at = moment
            notification.last_error = ""
        notification.save(update_fields=["attempts", "status", "sent_at", "not_before", "last_error"])
        return notification.status


def send_due(now: datetime | None = None, limit: int = 500) -> int:
    """Attempt every pending notification whose time has come (retries and quiet-hour deferrals)."""
    moment = now or timezone.now()
    due = list(
        Notification.objects.filter(status=Notification.Status.PENDING, not_before__lte=moment)
        .order_by("not_before")
        .values_list("pk", flat=True)[:limit]
    )
    for notification_id in due:
        deliver(notification_id, now=moment)
    return len(due)


# -- refill changes ---------------------------------------------------------------------------------


def on_event(event: events.Event) -> None:
    """A refill request changed: a push notice to the guardians who may see it (the one who made the
    change excepted). Runs in the publishing transaction, as ``schedule`` requires."""
    if not isinstance(event, events.DomainEvent) or event.type != EventType.REFILL_CHANGED:
        return
    if not push.enabled():
        return
    crowd = audience(event.child_id, event.capability, event.confidential)
    recipients = crowd.guardians - {event.actor_id}
    if recipients:
        schedule(recipients, "refill_changed")


# -- the background tasks that send them --------------------------------------------------------


@task()
def deliver_notification(notification_id: str) -> str:
    """Send one notification; a failure schedules a retry with exponential backoff (``deliver``)."""
    return deliver(notification_id)


@task()
def send_due_notifications() -> int:
    return send_due()
