"""Every API operation requires authentication unless it is on a short, explicit public list."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Router

from portal.apiroot import api
from portal.auth import PORTAL_AUTH

# The calendar feed authenticates by the secret token in its URL (calendar apps send no headers).
# The phone system's call webhook authenticates by its HMAC signature per source (timestamp window,
# replays refused: tests/metrics/test_calls_import.py), not by a session.
PUBLIC_OPERATIONS = {("GET", "/health"), ("GET", "/calendar/{token}.ics"), ("POST", "/metrics/calls")}


def unauthenticated_operations(target: NinjaAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation that runs without authentication, as the API serves it
    (ninja binds cloned operations with their inherited auth per mounted router)."""
    found = set()
    for bound in target._get_bound_routers():
        prefix = bound.prefix
        for path, path_view in bound.path_operations.items():
            for operation in path_view.operations:
                if not operation.auth_callbacks:
                    for method in operation.methods:
                        found.add((method, (prefix.rstrip("/") + "/" + path.lstrip("/")).rstrip("/") or "/"))
    return found


def test_only_allowlisted_operations_are_public() -> None:
    assert unauthenticated_operations(api) == PUBLIC_OPERATIONS


def test_the_walk_catches_an_operation_without_auth() -> None:
    """The check above is real: an operation added with ``auth=None`` is reported."""
    probe = NinjaAPI(auth=PORTAL_AUTH, urls_namespace="probe")
    router = Router()

    @router.get("/leaky", auth=None)
    def leaky(request: HttpRequest) -> dict[str, Any]:
        return {}

    @router.get("/guarded")
    def guarded(request: HttpRequest) -> dict[str, Any]:
        return {}

    probe.add_router("/", router)
    assert unauthenticated_operations(probe) == {("GET", "/leaky")}


def test_every_operation_is_in_the_openapi_document_with_security() -> None:
    schema = api.get_openapi_schema()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            public = (method.upper(), path.removeprefix("/api/v1")) in PUBLIC_OPERATIONS
            assert bool(operation.get("security")) != public, (method, path)
