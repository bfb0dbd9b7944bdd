"""API authentication: allauth's app token (``X-Session-Token``) or its browser session (cookie +
CSRF), then the portal's own admission rules: an active account, not idle, and two factors for
clinicians and administrators."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from allauth.core.internal.sessionkit import get_session_user
from allauth.headless import app_settings as headless_settings
from allauth.headless.contrib.ninja.security import XSessionTokenAuth
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from ninja.security import SessionAuth
from ninja.utils import check_csrf

from portal.admission import MfaState, mfa_state
from portal.errors import CsrfFailed, MfaRequired
from portal.models import User
from portal.prepared import Prepared
from portal.sessions import audit_idle_logout, check_idle


def _user_fields() -> tuple[str, ...]:
    return tuple(field.attname for field in User._meta.concrete_fields)


_USER = Prepared(lambda pk: User.objects.filter(pk=pk).values_list(*_user_fields()))


def session_user(session: SessionBase) -> Any:
    """The account signed in to ``session``, or None: what ``django.contrib.auth.get_user`` decides
    (through allauth's ``get_session_user``), with the account read by a prepared query.

    On every API call with an app token this runs once; the ORM's ``User.objects.get`` it replaces
    cost more CPU than the rest of the check (``tests/benchmarks/profile_requests.py``). The session's
    hash of the password must still match the account's (a changed password ends every other
    session); a session whose hash does not match (signed by a previous ``SECRET_KEY``, which Django
    re-keys, or stale, which it flushes) is left to Django's own ``get_user``. A session naming no
    account, an unknown backend or a malformed id is nobody (Django's ``get_user`` would fail on the
    malformed id).
    """
    try:
        user_id = User._meta.pk.to_python(session[SESSION_KEY])
        backend = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):  # signed out, or an id that is no account's
        return None
    if backend not in settings.AUTHENTICATION_BACKENDS or not isinstance(user_id, uuid.UUID):
        return None
    rows = _USER.rows(pk=user_id)
    if not rows:
        return None
    user = User.from_db("default", _user_fields(), rows[0])
    stored = session.get(HASH_SESSION_KEY)
    if not stored or not constant_time_compare(stored, user.get_session_auth_hash()):
        return get_session_user(session)  # Django checks the fallback keys, re-keys or flushes
    return user if user.is_active else None


def admit(request: HttpRequest, user: Any, state: MfaState) -> Any:
    """Final checks shared by both clients; returns the user or raises ``MfaRequired``.

    ``state`` is the account's MFA requirement as settled for this session (``portal.admission``).
    """
    if user is None or not user.is_active:
        return None
    if not state.admitted:
        raise MfaRequired()
    request.user = user
    return user


class AppTokenAuth(XSessionTokenAuth):
    """The app client: allauth's session token in the ``X-Session-Token`` header."""

    openapi_in = "header"
    openapi_name = "X-Session-Token"

    def __call__(self, request: HttpRequest) -> Any:
        token = self.get_session_token(request)
        if not token:
            return None
        session = headless_settings.TOKEN_STRATEGY.lookup_session(token)
        if session is None:
            return None
        user = session_user(session)
        if user is None or not user.is_active:
            return None
        state = mfa_state(session, user, request)
        # check_idle saves the session when it notes activity, the settled MFA answer with it.
        if check_idle(session, user, persist=True, staff=state.required):
            audit_idle_logout(user)
            session.flush()
            return None
        if session.modified:  # the MFA answer was settled just now
            try:
                session.save(must_create=False)
            except UpdateError:  # ended meanwhile
                return None
        # The token's session is not attached to the request: SessionMiddleware would send it back
        # as a cookie, turning an app token into a browser session.
        return admit(request, user, state)


class BrowserSessionAuth(SessionAuth):
    """The browser client: Django's session cookie, with CSRF on unsafe methods.

    A request that carries an app token, or no session cookie at all, is not a browser request: it is
    left to the app client's answer (401 for a bad or expired token) instead of failing CSRF. The CSRF
    check comes after the session is known to be signed in: a stale, anonymous or signed-out cookie is
    a 401 ``not_authenticated`` (sign in again), never a 403 that would send a client to look for a
    token it cannot use.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if request.headers.get("X-Session-Token") or settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if key is None:
            return None
        user = super().authenticate(request, key)
        if not user:
            return None
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise CsrfFailed()
        # SessionMiddleware saves the browser session (and an answer settled now) with the response.
        return admit(request, user, mfa_state(request.session, user, request))


app_token_auth = AppTokenAuth()
browser_session_auth = BrowserSessionAuth()
PORTAL_AUTH: list[Callable[[HttpRequest], Any]] = [app_token_auth, browser_session_auth]
