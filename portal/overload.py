"""Overload: when no database connection can be had in time, answer ``503 overloaded`` with
``Retry-After``, never 500.

Two ways it shows: the connection pool's ``PoolTimeout`` (every pooled connection is busy for longer
than ``PORTAL_DB_POOL_TIMEOUT``), and PostgreSQL's own ``too_many_connections`` (53300) without a
pool. The API's exception handler asks ``is_overload``; anything outside a ninja view (a middleware
resolving the session, allauth's views) reaches ``handler500``, which answers the same.
"""

from __future__ import annotations

import json
import logging
import sys

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from portal.errors import Overloaded

logger = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = "53300"


def is_overload(error: BaseException | None) -> bool:
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__
    if cause is None:
        return False
    if type(cause).__name__ == "PoolTimeout":  # psycopg_pool.PoolTimeout, without importing the pool
        return True
    return getattr(cause, "sqlstate", None) == TOO_MANY_CONNECTIONS


def overloaded_response() -> HttpResponse:
    error = Overloaded()
    response = HttpResponse(json.dumps(error.payload()), status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response[name] = value
    return response


def handler500(request: HttpRequest) -> HttpResponse:
    """Django's last resort for an uncaught exception (called while it is being handled)."""
    if is_overload(sys.exc_info()[1]):
        logger.warning("overloaded: no database connection in time on %s %s", request.method, request.path)
        return overloaded_response()
    return defaults.server_error(request)
