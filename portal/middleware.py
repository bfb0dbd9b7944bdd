from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from portal import audit
from portal.sessions import check_idle


class IdleTimeoutMiddleware:
    """Signs out a browser session that has been idle longer than its timeout, and records the
    client address and user agent for the audit rows written while serving the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = audit.set_client(audit.client_from_request(request))
        try:
            user = request.user
            if user.is_authenticated and check_idle(request.session, user, persist=False):
                audit.record(actor=user, action=audit.Action.LOGOUT, entity_type="Session", reason="idle_timeout")
                logout(request)
            return self.get_response(request)
        finally:
            audit.reset_client(token)
