from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

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


class NoStoreMiddleware:
    """Tells every cache (browser, proxy, CDN) to keep nothing of a response that may carry PHI: the
    whole API (the calendar feed included) and the account endpoints (``PORTAL_NO_STORE_PREFIXES``).

    It replaces whatever a view set: ``Cache-Control: max-age=0, no-cache, no-store, must-revalidate,
    private``, ``Expires`` in the past, and ``Pragma: no-cache`` for HTTP/1.0 caches.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefixes = tuple(settings.PORTAL_NO_STORE_PREFIXES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(self.prefixes):
            if "Cache-Control" in response:
                del response["Cache-Control"]
            add_never_cache_headers(response)
            response["Pragma"] = "no-cache"
        return response
