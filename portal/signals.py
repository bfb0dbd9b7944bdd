"""Sign-in events come from allauth's flows; they are audited here and end open sockets on logout. A
deactivated account's open sockets are closed as well: nothing more is forwarded to it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from portal import audit, events
from portal.models import User
from portal.vocabulary import Resource


@receiver(user_logged_in)
def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record(
        actor=user,
        action=audit.Action.LOGIN,
        entity_type=Resource.SESSION,
        client=audit.client_from_request(request) if request is not None else None,
    )


@receiver(user_logged_out)
def _audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    audit.record(
        actor=user,
        action=audit.Action.LOGOUT,
        entity_type=Resource.SESSION,
        client=audit.client_from_request(request) if request is not None else None,
    )
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    events.end_sessions(user_id=user.pk, session_key=session_key)


@receiver(user_login_failed)
def _audit_login_failed(sender: Any, credentials: Any, request: Any = None, **kwargs: Any) -> None:
    # The attempted email is not recorded: a failed login names no account.
    audit.record(
        actor=None,
        action=audit.Action.LOGIN,
        entity_type=Resource.SESSION,
        outcome=audit.Outcome.FAILURE,
        reason="bad_credentials",
        client=audit.client_from_request(request) if request is not None else None,
    )


@receiver(pre_save, sender=User)
def _note_deactivation(sender: Any, instance: User, **kwargs: Any) -> None:
    """Remember whether this save turns an active account inactive (read before the row changes)."""
    if instance.pk is None or instance.is_active:
        instance._deactivating = False  # type: ignore[attr-defined]
        return
    was_active = sender.objects.filter(pk=instance.pk, is_active=True).exists()
    instance._deactivating = was_active  # type: ignore[attr-defined]


@receiver(post_save, sender=User)
def _end_sessions_of_deactivated(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    """Open sockets check the account only at connect and at their idle deadline, so a deactivation
    closes them at once (after commit), as a sign-out everywhere does."""
    if created or not getattr(instance, "_deactivating", False):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: events.end_sessions(user_id=user_id))
