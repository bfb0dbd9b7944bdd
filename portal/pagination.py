"""Cursor (keyset) pagination for every list the API answers.

Every list is ``{"items": [...], "next": "<cursor>" | null}``. A client passes ``next`` back as
``?cursor=`` for the following page, with the same ``limit`` or another (1 to ``MAX_LIMIT``, default
``DEFAULT_LIMIT``); ``null`` means there is nothing after. Each list has a fixed order whose last key is
the item's id, so items with equal sort keys are neither skipped nor repeated across a page boundary,
and the next page starts *after* the last item shown (a keyset condition in SQL, never ``OFFSET``).

The cursor holds the sort keys of the last item shown. Those can be times of clinical events, so the
cursor is encrypted and authenticated (AES-SIV, keyed from ``SECRET_KEY``) with the request's path and
the account as associated data: it reveals nothing, cannot be forged or edited, and is refused (400
``invalid_cursor``) on another list, for another child or another account. AES-SIV is deterministic,
so the same page always carries the same cursor and its ``ETag`` stays stable.

Two ways to page:

* ``Pager.queryset(rows)`` adds the keyset condition, the order and ``LIMIT limit + 1`` to a queryset
  (a selector takes the pager as ``page=`` and applies it where it would have sliced);
  ``Pager.page(items, present)`` then makes the answer from what the selector loaded.
* ``Pager.page_of(items, present)`` pages a list a selector computed in full (a child's medicines
  with their next dose, the care team's schedule): the same cursor contract over the list sorted by
  the pager's keys, for lists bounded by a single child or account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from ninja import Schema
from pydantic import Field

from portal.errors import ApiError, Invalid
from portal.schemas import In

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CURSOR_MAX_LENGTH = 600
_VERSION = 1

T = TypeVar("T")
M = TypeVar("M", bound=Model)


class InvalidCursor(ApiError):
    status = 400
    code = "invalid_cursor"
    message = "The cursor is not valid for this list: start again without it."


class PageIn(In):
    """The paging parameters of every list."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT} items.")
    cursor: str | None = Field(
        None,
        max_length=CURSOR_MAX_LENGTH,
        description="The previous page's `next`, unchanged; leave out for the first page.",
    )


class Page(Schema, Generic[T]):
    items: list[T]
    next: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


def _key() -> bytes:
    # A key of its own, derived from SECRET_KEY: a cursor never doubles as any other signed value.
    return hmac.new(settings.SECRET_KEY.encode(), b"portal.api.cursor", hashlib.sha512).digest()


def _tag(value: Any) -> list[Any]:
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", value.hex]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, str):
        return ["s", value]
    raise TypeError(f"cannot page by a {type(value).__name__}")


def _untag(item: list[Any]) -> Any:
    kind, value = item
    readers: dict[str, Callable[[Any], Any]] = {
        "t": datetime.fromisoformat,
        "d": date.fromisoformat,
        "u": uuid.UUID,
        "b": bool,
        "i": int,
        "s": str,
    }
    return readers[kind](value)


def _associated(request: HttpRequest) -> bytes:
    user_id = getattr(getattr(request, "user", None), "pk", None)
    return f"{request.path}\n{user_id}".encode()


def encode_cursor(request: HttpRequest, values: tuple[Any, ...]) -> str:
    plain = json.dumps([_VERSION, [_tag(value) for value in values]], separators=(",", ":")).encode()
    sealed = AESSIV(_key()).encrypt(plain, [_associated(request)])
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def decode_cursor(request: HttpRequest, cursor: str, width: int) -> tuple[Any, ...]:
    try:
        sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain = AESSIV(_key()).decrypt(sealed, [_associated(request)])
        version, tagged = json.loads(plain)
        values = tuple(_untag(item) for item in tagged)
    except (binascii.Error, ValueError, InvalidTag, TypeError, KeyError) as exc:
        raise InvalidCursor() from exc
    if version != _VERSION or len(values) != width:
        raise InvalidCursor()
    return values


def _name(field: str) -> str:
    return field.removeprefix("-")


def _after_q(order: tuple[str, ...], values: tuple[Any, ...]) -> Q:
    """Rows strictly after ``values`` in ``order``: (a > A) or (a = A and b > B) or ... per direction."""
    condition = Q()
    for index, field in enumerate(order):
        step = Q(**{f"{_name(field)}__{'lt' if field.startswith('-') else 'gt'}": values[index]})
        for earlier, value in zip(order[:index], values[:index], strict=True):
            step &= Q(**{_name(earlier): value})
        condition |= step
    return condition


def _is_after(order: tuple[str, ...], key: tuple[Any, ...], values: tuple[Any, ...]) -> bool:
    for field, mine, theirs in zip(order, key, values, strict=True):
        if mine != theirs:
            return bool(mine < theirs) if field.startswith("-") else bool(mine > theirs)
    return False


def _attribute(row: Any, field: str) -> Any:
    value = row
    for part in _name(field).split("__"):
        value = value.pk if part in {"id", "pk"} and isinstance(value, Model) else getattr(value, part)
    return value


def _known_parameters(request: HttpRequest, query: PageIn) -> None:
    """An unknown query parameter is an error, as an unknown body field is (ninja would drop it): a
    client still sending ``offset`` learns it is ignored instead of reading page one again and again."""
    unknown = sorted(set(request.GET) - set(type(query).model_fields))
    if unknown:
        details = [
            {"loc": ["query", name[:40]], "type": "extra_forbidden", "msg": "Unknown parameter"} for name in unknown
        ]
        raise Invalid("The request is not valid; see errors.", details=details)


def _sort_key(row: Callable[[T], Any], field: str) -> Callable[[T], Any]:
    return lambda item: _attribute(row(item), field)


class Pager:
    """One page request of one list: its order (last key: the id), where it starts, its size."""

    def __init__(self, request: HttpRequest, query: PageIn, order: tuple[str, ...]) -> None:
        if not _name(order[-1]).endswith(("id", "pk")):
            raise ValueError("the last key of a page order is the id")
        _known_parameters(request, query)
        self.request = request
        self.order = order
        self.limit = query.limit
        self.after = decode_cursor(request, query.cursor, len(order)) if query.cursor else None

    def queryset(self, rows: QuerySet[M]) -> QuerySet[M]:
        """``rows`` after the cursor, in order, one more than the page holds (to know if more follow)."""
        if self.after is not None:
            rows = rows.filter(_after_q(self.order, self.after))
        return rows.order_by(*self.order)[: self.limit + 1]

    def key(self, row: Any) -> tuple[Any, ...]:
        return tuple(_attribute(row, field) for field in self.order)

    def page(
        self, items: Sequence[T], present: Callable[[T], Any], row: Callable[[T], Any] = lambda item: item
    ) -> dict[str, Any]:
        """The answer for what ``queryset`` loaded (``row`` finds the model row inside an item)."""
        shown = list(items[: self.limit])
        more = len(items) > self.limit
        return {
            "items": [present(item) for item in shown],
            "next": encode_cursor(self.request, self.key(row(shown[-1]))) if more and shown else None,
        }

    def page_of(
        self, items: Sequence[T], present: Callable[[T], Any], row: Callable[[T], Any] = lambda item: item
    ) -> dict[str, Any]:
        """Pages a list computed in full: sorted by the pager's keys, then the same cursor contract."""
        ordered = list(items)
        for field in reversed(self.order):  # stable sorts, last key first
            ordered.sort(key=_sort_key(row, field), reverse=field.startswith("-"))
        if self.after is not None:
            after = self.after
            ordered = [item for item in ordered if _is_after(self.order, self.key(row(item)), after)]
        return self.page(ordered[: self.limit + 1], present, row)


def pager(request: HttpRequest, query: PageIn, *order: str) -> Pager:
    return Pager(request, query, tuple(order))
