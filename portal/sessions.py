"""Idle timeouts for browser sessions and app tokens (both are Django sessions underneath)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError

from portal import audit
from portal.access import requires_mfa
from portal.vocabulary import Resource

LAST_SEEN_KEY = "portal_last_seen"
# Refresh the stored timestamp at most this often, so a busy client does not write on every call.
TOUCH_EVERY = 60


def idle_timeout_for(user: Any, staff: bool | None = None) -> int:
    """Clinicians and administrators (who must use MFA) time out sooner than families."""
    if staff is None:
        staff = requires_mfa(user)
    return int(settings.PORTAL_STAFF_IDLE_TIMEOUT if staff else settings.PORTAL_IDLE_TIMEOUT)


def check_idle(session: SessionBase, user: Any, *, persist: bool, staff: bool | None = None) -> bool:
    """True when the session has been idle too long; otherwise note this activity.

    ``persist`` saves the session here (token sessions); browser sessions are saved by
    ``SessionMiddleware`` at the end of the response. ``staff`` spares a lookup when the caller
    already knows whether the user must use MFA.
    """
    now = int(time.time())
    last = session.get(LAST_SEEN_KEY)
    if last is not None and now - int(last) > idle_timeout_for(user, staff):
        return True
    if last is None or now - int(last) >= TOUCH_EVERY:
        session[LAST_SEEN_KEY] = now
        if persist:
            try:
                session.save(must_create=False)
            except UpdateError:  # the session was ended (deleted) meanwhile
                return True
    return False


def audit_idle_logout(user: Any) -> None:
    """The audit row for a session ended because it sat idle (browser cookie or app token alike)."""
    audit.record(actor=user, action=audit.Action.LOGOUT, entity_type=Resource.SESSION, reason="idle_timeout")
