from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from portal import audit, health, limits
from portal.admission import mfa_state
from portal.sessions import audit_idle_logout, check_idle


class IdleTimeoutMiddleware:
    """Signs out a browser session that has been idle longer than its timeout, and records the
    client address and user agent for the audit rows written while serving the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = audit.set_client(audit.client_from_request(request))
        try:
            user = request.user
            if user.is_authenticated and check_idle(
                request.session, user, persist=False, staff=mfa_state(request.session, user, request).required
            ):
                audit_idle_logout(user)
                logout(request)
            return self.get_response(request)
        finally:
            audit.reset_client(token)


HEALTH_PATH = "/api/v1/health"


class HealthMiddleware:
    """Answers ``GET /api/v1/health`` before the session, authentication and account middleware:
    the answer needs no session or user, and monitors poll it hard (``portal.health`` probes each
    dependency at most once a second per process). Placed after the input limits, so the
    ``no-store`` and security headers still apply."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "GET" or request.path_info != HEALTH_PATH:
            return self.get_response(request)
        status, body = health.answer()
        return HttpResponse(json.dumps(body), status=status, content_type="application/json; charset=utf-8")


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


API_PREFIX = "/api/v1/"

# What a status means when something other than an API handler answered (Django's URL resolver,
# ninja's method dispatch, a middleware): the same {code, message} shape as every API error.
GENERIC_ERRORS = {
    400: ("bad_request", "The request could not be read."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    414: ("uri_too_long", "The URL is too long."),
    431: ("request_header_fields_too_large", "The request headers are too large."),
    500: ("internal_error", "Something went wrong on our side. Please try again."),
}


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


class InputLimitsMiddleware:
    """Refuses oversized requests before anything reads them (413 body, 414 URL, 431 headers, each
    message stating the limit) and gives every error under ``/api/v1/`` the API's JSON shape, whoever
    produced it (an unknown path, a wrong method)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self.refuse(request)
        if refused is not None:
            return refused
        return self.shape(request, self.get_response(request))

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        max_url = int(settings.PORTAL_MAX_URL_BYTES)
        if limits.url_bytes(request) > max_url:
            return error_response(414, "uri_too_long", f"The URL is longer than the limit of {max_url} bytes.")
        max_headers = int(settings.PORTAL_MAX_HEADER_BYTES)
        if limits.header_bytes(request) > max_headers:
            return error_response(
                431,
                "request_header_fields_too_large",
                f"The request headers are larger than the limit of {max_headers} bytes.",
            )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "bad_request", "The Content-Length header is not a number.")
        if length > limits.body_limit(request):
            return error_response(413, "payload_too_large", limits.body_limit_message(request))
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return error_response(413, "payload_too_large", limits.body_limit_message(request))
        return None

    def shape(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if "json" in response.get("Content-Type", ""):
            return response
        code, message = GENERIC_ERRORS.get(response.status_code, ("error", "The request failed."))
        shaped = error_response(response.status_code, code, message)
        for header in ("Allow", "Retry-After"):
            if response.has_header(header):
                shaped[header] = response[header]
        return shaped
