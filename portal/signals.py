"""Sign-in events come from allauth's flows; they are audited here and end open sockets on logout."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from portal import audit, realtime
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
    realtime.end_sessions(user_id=user.pk, session_key=session_key)


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
