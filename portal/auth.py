"""API authentication: allauth's app token (``X-Session-Token``) or its browser session (cookie +
CSRF), then the portal's own admission rules: an active account, not idle, and two factors for
clinicians and administrators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.headless.contrib.ninja.security import XSessionTokenAuth
from allauth.headless.internal.sessionkit import authenticate_by_x_session_token
from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.http import HttpRequest
from ninja.security import SessionAuth
from ninja.utils import check_csrf

from portal.admission import MfaState, mfa_state
from portal.errors import CsrfFailed, MfaRequired
from portal.sessions import audit_idle_logout, check_idle


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
        found: Any = authenticate_by_x_session_token(token)
        if not found:
            return None
        # allauth 65.22 answers a result object (user, session), earlier releases a pair.
        user, session = (found.user, found.session) if hasattr(found, "session") else found
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
