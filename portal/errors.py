"""The one error shape of the API: ``{"code": "...", "message": "..."}`` with a fitting status.

Messages are written for people and never echo stored data; codes are stable for programs.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    code = "bad_request"
    message = "The request could not be processed."
    # Response headers that go with the error (``Retry-After`` on 409 in_progress and 503 overloaded).
    headers: dict[str, str] = {}

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        super().__init__(self.message)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["errors"] = self.details
        return body


class NotFound(ApiError):
    status = 404
    code = "not_found"
    message = "Not found."


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    message = "You may not do this."


class MfaRequired(ApiError):
    status = 403
    code = "mfa_required"
    message = "Clinicians and administrators must enrol two-factor authentication (TOTP) before using the portal."


class Conflict(ApiError):
    status = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"
    message = "Too many attempts. Please wait a minute and try again."


class Invalid(ApiError):
    status = 422
    code = "invalid_input"
    message = "The request is not valid."


class InProgress(ApiError):
    """An earlier request with the same idempotency key is still running: retry after a moment."""

    status = 409
    code = "in_progress"
    message = "An earlier request with the same key is still being processed. Retry in a moment."
    headers = {"Retry-After": "1"}


class Overloaded(ApiError):
    """No database connection could be had in time."""

    status = 503
    code = "overloaded"
    message = "The service is busy. Retry in a moment."
    headers = {"Retry-After": "2"}


class CsrfFailed(ApiError):
    status = 403
    code = "csrf_failed"
    message = "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header."


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    message = "The request body is too large."


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    message = "Send the request body as JSON (Content-Type: application/json)."
