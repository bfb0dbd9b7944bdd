"""``ETag`` and ``If-None-Match`` on the API's main reads, so a phone app that polls is answered
``304 Not Modified`` with no body when nothing changed.

The tag is a hash of the JSON body the operation answered (after authentication and the access policy
have run, so a 304 is only ever given to someone the 200 would have been given to). A strong tag
covers the exact bytes; a weak one (``W/"..."``) leaves out fields that change on every call without
changing the meaning (``/me/today``'s ``generated_at``). The answers still carry
``Cache-Control: no-store`` (``portal.middleware.NoStoreMiddleware``): the client keeps its own copy
in memory and revalidates it; no shared or disk cache keeps PHI.

Apply with ninja's ``decorate_view`` under the route decorator, and declare ``304`` in its responses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseNotModified
from django.http.response import HttpResponseBase

Run = Callable[..., HttpResponseBase]


def _tag(content: bytes, volatile: tuple[str, ...]) -> str:
    if not volatile:
        return '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    body = json.loads(content)
    if isinstance(body, dict):
        body = {name: value for name, value in body.items() if name not in volatile}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return 'W/"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'


def _matches(header: str, tag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): ``W/`` is ignored on both sides."""
    if header.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in header.split(","))


def etag_ignoring(*volatile: str) -> Callable[[Run], Run]:
    """A view decorator: tag a 200 answer to GET, and answer 304 when ``If-None-Match`` holds its tag."""

    def decorator(run: Run) -> Run:
        @wraps(run)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            response = run(request, *args, **kwargs)
            if request.method != "GET" or response.status_code != 200 or response.streaming:
                return response
            tag = _tag(response.content, volatile)  # type: ignore[attr-defined]
            if _matches(request.headers.get("If-None-Match", ""), tag):
                response = HttpResponseNotModified()
            response["ETag"] = tag
            return response

        return wrapper

    return decorator


etag = etag_ignoring()
