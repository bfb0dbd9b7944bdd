"""The one ``NinjaAPI`` at ``/api/v1``: authentication, the error format, and every app's router."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.parser import Parser
from ninja.types import DictStrAny

from care.api import router as care_router
from interop.family_api import router as interop_router
from messaging.api import router as messaging_router
from portal.api import router as portal_router
from portal.auth import PORTAL_AUTH
from portal.errors import ApiError, Overloaded, PayloadTooLarge, UnsupportedMediaType
from portal.limits import body_limit_message
from portal.overload import is_overload, note_overload

logger = logging.getLogger(__name__)


class JsonParser(Parser):
    """Request bodies are JSON: another content type is refused (415) rather than parsed anyway."""

    def parse_body(self, request: HttpRequest) -> DictStrAny:
        content_type = (request.content_type or "").lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise UnsupportedMediaType()
        return super().parse_body(request)


# The error answers each operation can give, declared in the OpenAPI document so that generated
# clients handle them: (status, description, applies to an operation with these traits).
ERROR_RESPONSES: tuple[tuple[int, str, str], ...] = (
    (400, "Bad request: unreadable JSON, a malformed header.", "any"),
    (401, "Not signed in, or the session token is unknown or expired (`not_authenticated`).", "auth"),
    (403, "Two factors required (`mfa_required`), CSRF check failed (`csrf_failed`), or not allowed.", "auth"),
    (404, "Not found, or not yours to see (the same answer either way).", "any"),
    (409, "Conflicts with the current state (the code says which).", "write"),
    (410, "Gone: an expired invitation.", "write"),
    (413, "Payload too large (`payload_too_large`; the message states the limit).", "body"),
    (415, "The body is not JSON (`unsupported_media_type`).", "json"),
    (422, "Invalid input (`invalid_input` with `errors`, or a specific code).", "any"),
    (429, "Rate limited (`rate_limited`).", "any"),
    (503, "Overloaded: no database connection could be had in time (`overloaded`, with `Retry-After`).", "any"),
)

ERROR_SCHEMA: DictStrAny = {
    "title": "Error",
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "Stable, machine-readable."},
        "message": {"type": "string", "description": "For people; never echoes stored data."},
        "errors": {
            "type": "array",
            "description": "Validation errors: where and what.",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "type": {"type": "string"},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


class PortalAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: DictStrAny | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for item in schema.get("paths", {}).values():
            for method, operation in item.items():
                traits = _traits(method, operation)
                responses = operation.setdefault("responses", {})
                for status, description, applies in ERROR_RESPONSES:
                    if applies in traits and str(status) not in responses and status not in responses:
                        responses[str(status)] = {"description": description, "content": reference}
        return schema


def _traits(method: str, operation: dict[str, Any]) -> set[str]:
    traits = {"any"}
    if operation.get("security"):
        traits.add("auth")
    if method.lower() in {"post", "put", "patch", "delete"}:
        traits.add("write")
    content = operation.get("requestBody", {}).get("content", {})
    if content:
        traits.add("body")
    if "application/json" in content:
        traits.add("json")
    return traits


api = PortalAPI(
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
    parser=JsonParser(),
)
api.add_router("/", portal_router)
api.add_router("/", care_router)
api.add_router("/", interop_router)
api.add_router("/", "portal.metrics.api.router")
api.add_router("/", messaging_router)
api.add_router("/", "messaging.groups.api.router")


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


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _api_error(request, PayloadTooLarge(body_limit_message(request)))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja wraps whatever the body parser raises into a 400: keep the parser's own answer (415).
    if isinstance(exc.__cause__, ApiError):
        return _api_error(request, exc.__cause__)
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
