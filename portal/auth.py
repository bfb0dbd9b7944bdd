"""API authentication: allauth's app token (``X-Session-Token``) or its browser session (cookie +
CSRF), then the portal's own admission rules: an active account, not idle, and two factors for
clinicians and administrators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.headless.contrib.ninja.security import XSessionTokenAuth
from allauth.headless.internal.sessionkit import authenticate_by_x_session_token
from django.conf import settings
from django.http import HttpRequest
from ninja.security import SessionAuth
from ninja.utils import check_csrf

from portal.access import has_mfa, requires_mfa
from portal.errors import CsrfFailed, MfaRequired
from portal.sessions import audit_idle_logout, check_idle


def admit(request: HttpRequest, user: Any, staff: bool | None = None) -> Any:
    """Final checks shared by both clients; returns the user or raises ``MfaRequired``.

    ``staff`` is whether the user must use MFA, when the caller has already worked it out.
    """
    if user is None or not user.is_active:
        return None
    if staff is None:
        staff = requires_mfa(user)
    if staff and not has_mfa(user):
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
        found = authenticate_by_x_session_token(token)
        if not found:
            return None
        # allauth 65.22 answers a result object; earlier 65.x releases a (user, session) pair.
        user, session = (found.user, found.session) if hasattr(found, "session") else found
        if not user.is_active:
            return None
        staff = requires_mfa(user)
        if check_idle(session, user, persist=True, staff=staff):
            audit_idle_logout(user)
            session.flush()
            return None
        # The token's session is not attached to the request: SessionMiddleware would send it back
        # as a cookie, turning an app token into a browser session.
        return admit(request, user, staff)


class BrowserSessionAuth(SessionAuth):
    """The browser client: Django's session cookie, with CSRF on unsafe methods.

    A request that carries an app token, or no session cookie at all, is not a browser request: it is
    left to the app client's answer (401 for a bad or expired token) instead of failing CSRF.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if request.headers.get("X-Session-Token") or settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise CsrfFailed()
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if key is None:
            return None
        user = super().authenticate(request, key)
        return admit(request, user) if user else None


app_token_auth = AppTokenAuth()
browser_session_auth = BrowserSessionAuth()
PORTAL_AUTH: list[Callable[[HttpRequest], Any]] = [app_token_auth, browser_session_auth]
