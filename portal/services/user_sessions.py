"""The account's own signed-in sessions (allauth's ``UserSession``: every browser and app sign-in),
listed and ended by the account itself from another of its sessions.

A session is named outside the server by a keyed hash of its session key (``handle``), never by
the key (which would sign a reader in) nor by a database id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from allauth.usersessions.internal.flows.sessions import end_sessions
from allauth.usersessions.models import UserSession
from django.http import HttpRequest

from portal import audit, events
from portal.crypto import keyring
from portal.errors import Invalid, NotFound
from portal.models import User
from portal.vocabulary import Resource


@dataclass(frozen=True)
class SessionView:
    handle: str
    user_agent: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


def _handle(session_key: str) -> str:
    return keyring().blind_index(session_key, purpose="portal.user_session")[:32]


def user_sessions_list(*, user: User, current_key: str | None) -> list[SessionView]:
    """The account's live sessions, the current one first, then the most recently seen."""
    views = [
        SessionView(
            handle=_handle(s.session_key),
            user_agent=s.user_agent,
            ip=s.ip,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            current=s.session_key == current_key,
        )
        for s in UserSession.objects.purge_and_list(user)
    ]
    return sorted(views, key=lambda v: (not v.current, -v.last_seen_at.timestamp()))


def user_sessions_end(*, actor: User, request: HttpRequest, handle: str | None = None) -> int:
    """End one other session of the account (``handle``) or, with None, all of them but this one.

    Each ended session is audited as a logout and its open sockets are closed. The current session
    is never ended here (signing out does that); an unknown handle, or another account's, is a 404.
    """
    current = request.session.session_key
    sessions = [s for s in UserSession.objects.filter(user_id=actor.pk) if s.session_key != current]
    if handle is not None:
        if current and _handle(current) == handle:
            raise Invalid("Use Sign out to end this session.", code="current_session")
        sessions = [s for s in sessions if _handle(s.session_key) == handle]
        if not sessions:
            raise NotFound()
    keys = [s.session_key for s in sessions]
    end_sessions(request, sessions)
    client = audit.client_from_request(request)
    for key in keys:
        audit.record(
            actor=actor,
            action=audit.Action.LOGOUT,
            entity_type=Resource.SESSION,
            reason="ended_from_another_session",
            client=client,
        )
        events.end_sessions(user_id=actor.pk, session_key=key)
    return len(keys)
