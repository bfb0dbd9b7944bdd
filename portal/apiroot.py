"""The one ``NinjaAPI`` at ``/api/v1``: authentication, the error format, and every app's router."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from care.api import router as care_router
from messaging.api import router as messaging_router
from portal.api import router as portal_router
from portal.auth import PORTAL_AUTH
from portal.errors import ApiError, Overloaded
from portal.overload import is_overload, note_overload

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Family care portal API",
    version="1",
    description=(
        "Guardians see their children's care; clinicians answer from shared inboxes; administrators "
        "measure call deflection. Sign in through allauth's headless API (`/_allauth/app/v1/...` with "
        "`X-Session-Token`, or `/_allauth/browser/v1/...` with the session cookie and CSRF token)."
    ),
    auth=PORTAL_AUTH,
    urls_namespace="api",
    docs_url="/docs",
)
api.add_router("/", portal_router)
api.add_router("/", care_router)
api.add_router("/", "portal.metrics.api.router")
api.add_router("/", messaging_router)
api.add_router("/", "community.api.router")


def _error(request: HttpRequest, status: int, code: str, message: str, **extra: object) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message, **extra}, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    response = api.create_response(request, exc.payload(), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Only where and what: pydantic's "input" would echo submitted values back.
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "type": error.get("type", ""),
            "msg": error.get("msg", ""),
        }
        for error in exc.errors
    ]
    return _error(request, 422, "invalid_input", "The request is not valid; see errors.", errors=errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "not_authenticated", "Sign in first.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 429: "rate_limited"}.get(
        exc.status_code, "error"
    )
    return _error(request, exc.status_code, code, str(exc.message) if exc.status_code < 500 else "Server error.")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if is_overload(exc):
        note_overload()
        return _api_error(request, Overloaded())
    # The exception type only: messages can carry data.
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path)
    return _error(request, 500, "internal_error", "Something went wrong on our side. Please try again.")
