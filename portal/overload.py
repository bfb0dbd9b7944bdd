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
import threading
import time

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from portal.errors import Overloaded

logger = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = "53300"
# Under overload every request would log; one line per this many seconds says how many there were.
LOG_EVERY_SECONDS = 10.0

_log_lock = threading.Lock()
_last_logged = 0.0
_unlogged = 0


def note_overload() -> None:
    """Count a 503; log the count at most every ``LOG_EVERY_SECONDS`` (no path: it can name a child)."""
    global _last_logged, _unlogged
    now = time.monotonic()
    with _log_lock:
        _unlogged += 1
        if now - _last_logged < LOG_EVERY_SECONDS:
            return
        count, _unlogged, _last_logged = _unlogged, 0, now
    logger.warning("overloaded: %s request(s) answered 503, no database connection free in time", count)


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
        note_overload()
        return overloaded_response()
    return defaults.server_error(request)
