"""Limits on what the API accepts: text without control characters, and dates inside a window that
makes sense for each field. The ``In`` schema base applies the text rule and an outer date bound to
every field of every request body; fields name their own window with ``Window``.

Windows are relative to the moment of the request (so they hold under a frozen or shifted clock):

| field | earliest | latest |
|---|---|---|
| appointment `start`/`end` | 1 year ago | 5 years ahead |
| medication plan `start` | 5 years ago | 2 years ahead |
| medication plan `end` | 5 years ago | 10 years ahead |
| dose `occurred_at`, `scheduled_for` | 90 days ago | 1 day ahead |
| coverage `period_start` | 10 years ago | 2 years ahead |
| coverage `period_end` | 10 years ago | 10 years ahead |
| guardian link `valid_until` | 1 year ago | 25 years ahead |
| care team `start`/`end` | 25 years ago | 5 years ahead |
| any other date (queries included) | 1 January 1900 | 31 December 2199 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from pydantic import AfterValidator

DAY = timedelta(days=1)
YEAR = timedelta(days=365)

EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)

# C0 controls except tab, line feed and carriage return; DEL and the C1 controls; lone surrogates
# (JSON can spell them as \\ud800, no database can store them).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: Any) -> str | None:
    """Why ``value`` (a string, or lists and dicts of them) is not acceptable text, or None."""
    if isinstance(value, str):
        if _FORBIDDEN.search(value):
            return "must not contain NUL or other control characters"
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if problem := text_problem(item):
                return problem
    if isinstance(value, dict):
        for key, item in value.items():
            if problem := text_problem(key) or text_problem(item):
                return problem
    return None


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def date_problem(value: Any) -> str | None:
    """The outer bound every date and time in a request must respect."""
    if isinstance(value, time) and value.tzinfo is not None:
        return "is a time of day in the account's own time zone: give it without a UTC offset"
    if isinstance(value, date | datetime) and not EARLIEST <= _day(value) <= LATEST:
        return f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"
    if isinstance(value, list | tuple):
        for item in value:
            if problem := date_problem(item):
                return problem
    return None


@dataclass(frozen=True)
class Window:
    """How far before and after the moment of the request a date field may lie."""

    past: timedelta
    future: timedelta

    def check(self, value: date | datetime | None) -> date | datetime | None:
        if value is None:
            return value
        now = timezone.now()
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            low: date | datetime = now - self.past
            high: date | datetime = now + self.future
            inside = low <= moment <= high
        else:
            low, high = (now - self.past).date(), (now + self.future).date()
            inside = low <= value <= high
        if not inside:
            raise ValueError(f"must be between {_fmt(low)} and {_fmt(high)} (the window allowed for this field)")
        return value

    def __call__(self) -> AfterValidator:
        return AfterValidator(self.check)


def _fmt(value: date | datetime) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else value.isoformat()


def window(*, past: timedelta, future: timedelta) -> AfterValidator:
    """An ``Annotated`` validator: ``start: Annotated[datetime, window(past=YEAR, future=3 * YEAR)]``."""
    return Window(past, future)()


# -- request size ---------------------------------------------------------------------------------


def body_limit(request: HttpRequest) -> int:
    """The largest body accepted: ``DATA_UPLOAD_MAX_MEMORY_SIZE`` for JSON and forms, more for a
    multipart upload (an attachment or a calls file, each with its own limit checked afterwards)."""
    if (request.content_type or "").lower() == "multipart/form-data":
        return int(settings.PORTAL_MAX_UPLOAD_BODY_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) or int(settings.PORTAL_MAX_UPLOAD_BODY_BYTES)


def body_limit_message(request: HttpRequest) -> str:
    return f"The request body is larger than the limit of {body_limit(request)} bytes."


def header_bytes(request: HttpRequest) -> int:
    return sum(len(key) - 5 + len(str(value)) for key, value in request.META.items() if key.startswith("HTTP_"))


def url_bytes(request: HttpRequest) -> int:
    return len(request.META.get("PATH_INFO", "")) + len(request.META.get("QUERY_STRING", ""))
