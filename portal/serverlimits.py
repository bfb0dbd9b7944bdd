"""What daphne's HTTP parser (Twisted) says about request lines and header lines that are too long.

Twisted reads a request line by line and simply closes the connection when one line passes its
``MAX_LENGTH`` (16 KiB): the client gets no answer at all. Here it answers first: 414 for an
overlong request line (the URL), 431 for an overlong header line, as JSON in the API's error shape,
then closes. Shorter lines reach Django, where ``portal.middleware.InputLimitsMiddleware`` applies the
configured ``PORTAL_MAX_URL_BYTES`` and ``PORTAL_MAX_HEADER_BYTES``; Twisted itself answers 400 when
all headers together pass 16 KiB.
"""

from __future__ import annotations

import json
from typing import Any


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"code": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def install() -> None:
    """Teach Twisted's HTTP channel to answer overlong lines (idempotent; a no-op without Twisted)."""
    try:
        from twisted.web import http
    except ImportError:  # pragma: no cover - daphne always brings Twisted
        return
    if getattr(http.HTTPChannel, "_portal_line_limits", False):
        return

    def line_length_exceeded(self: Any, line: bytes) -> None:
        limit = int(self.MAX_LENGTH)
        if getattr(self, "_HTTPChannel__first_line", 0):
            answer = _answer(414, "URI Too Long", "uri_too_long", f"The request line is longer than {limit} bytes.")
        else:
            answer = _answer(
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                f"A request header is longer than {limit} bytes.",
            )
        self.transport.write(answer)
        self.loseConnection()

    setattr(http.HTTPChannel, "lineLengthExceeded", line_length_exceeded)  # noqa: B010
    setattr(http.HTTPChannel, "_portal_line_limits", True)  # noqa: B010
