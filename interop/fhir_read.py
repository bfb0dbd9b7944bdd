"""Read and search of the portal's FHIR R4 resources, for the hospital's integration engine.

``search`` answers a ``searchset`` Bundle one page at a time, in the order (``meta.lastUpdated``,
``id``), paged by keyset: ``_cursor`` is the signed last (lastUpdated, id) of the previous page and
the filter it belongs to, so every page costs the same (an index range scan from the cursor, never an
OFFSET) and rows written while a client pages are not skipped or repeated. ``total`` is omitted. Each
page takes a fixed number of queries: one per source of rows, plus what rendering the page needs.

Parameters: ``_lastUpdated`` (prefixes eq, gt, ge, lt, le; repeated = all must hold), ``patient``
(a Patient id or ``Patient/<id>``, comma-separated = any), ``_count`` (default 100, at most 1000)
and ``_cursor``. Anything else, or a bad value, raises ``SearchError`` (an OperationOutcome 400).
These reads are the hospital's: no family access rules apply (the HTTP layer authenticates and
audits the system client).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.db.models import Q, QuerySet

from interop.outbound import READ_SOURCES, SOURCES, Source, served

DEFAULT_COUNT = 100
MAX_COUNT = 1000
COMMON_PARAMS = frozenset({"_lastUpdated", "_count", "_cursor"})
_NO_PATIENT = frozenset({"Patient", "Practitioner"})

# Every type this module can render; ``searchable()`` is what is served now (optional types only when on).
SEARCHABLE: dict[str, frozenset[str]] = {
    kind: COMMON_PARAMS | (frozenset() if kind in _NO_PATIENT else frozenset({"patient"})) for kind in SOURCES
}


def searchable() -> dict[str, frozenset[str]]:
    """The types read and search serve now, with their parameters."""
    return {kind: params for kind, params in SEARCHABLE.items() if served(kind)}


_CURSOR_SALT = "interop.fhir_read.cursor"
_PREFIXES = ("eq", "gt", "ge", "lt", "le")
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$"
)


class SearchError(Exception):
    """A search the portal cannot answer: ``code`` is machine-readable, ``message`` for people (it
    never repeats the value sent)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Range:
    """A half-open range of instants [start, end): what a FHIR date of some precision means."""

    start: datetime
    end: datetime


def _months_later(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    return moment.replace(year=moment.year + total // 12, month=total % 12 + 1)


def _parse_date(text: str) -> _Range:
    """A FHIR dateTime at its precision. Without a time it is a UTC day, month or year."""
    match = _DATE.match(text)
    if match is None:
        raise SearchError("invalid_date", "_lastUpdated must be a FHIR date or dateTime with a time zone.")
    year, month, day_, hour, minute, second, fraction, zone = match.groups()
    try:
        if hour is None:
            start = datetime(int(year), int(month or 1), int(day_ or 1), tzinfo=UTC)
            if day_:
                return _Range(start, start + timedelta(days=1))
            return _Range(start, _months_later(start, 1 if month else 12))
        moment = datetime.fromisoformat(
            f"{year}-{month}-{day_}T{hour}:{minute}:{second or '00'}{fraction or ''}{zone.replace('Z', '+00:00')}"
        )
    except ValueError:
        raise SearchError("invalid_date", "_lastUpdated names a date that does not exist.") from None
    if fraction:
        step = timedelta(microseconds=10 ** (6 - (len(fraction) - 1)))
    else:
        step = timedelta(seconds=1) if second else timedelta(minutes=1)
    return _Range(moment, moment + step)


def _last_updated_q(values: Sequence[str], column: str) -> Q:
    """Every value must hold (a repeated parameter is an AND, as FHIR has it)."""
    condition = Q()
    for raw in values:
        value = raw.strip()
        if "," in value:
            raise SearchError("invalid_param", "_lastUpdated takes one value per parameter; repeat it to combine.")
        prefixed = value[:2].isalpha() and value[2:3].isdigit()
        prefix, text = (value[:2], value[2:]) if prefixed else ("eq", value)
        if prefix not in _PREFIXES:
            raise SearchError("unsupported_prefix", "_lastUpdated takes the prefixes eq, gt, ge, lt and le.")
        span = _parse_date(text)
        condition &= {
            "eq": Q(**{f"{column}__gte": span.start, f"{column}__lt": span.end}),
            "gt": Q(**{f"{column}__gte": span.end}),
            "ge": Q(**{f"{column}__gte": span.start}),
            "lt": Q(**{f"{column}__lt": span.start}),
            "le": Q(**{f"{column}__lt": span.end}),
        }[prefix]
    return condition


def _patient_ids(values: Sequence[str]) -> list[uuid.UUID]:
    if len(values) != 1:
        raise SearchError("invalid_param", "patient may be given once (separate several ids with commas).")
    ids = []
    for value in values[0].split(","):
        text = value.strip()
        text = text.removeprefix("Patient/")
        try:
            ids.append(uuid.UUID(text))
        except ValueError:
            raise SearchError("invalid_reference", "patient must be a Patient id or Patient/<id>.") from None
    if not ids or len(ids) > 100:
        raise SearchError("invalid_param", "patient takes between 1 and 100 ids.")
    return ids


def _count(values: Sequence[str] | None) -> int:
    if not values:
        return DEFAULT_COUNT
    if len(values) != 1 or not values[0].isdigit():
        raise SearchError("invalid_count", f"_count must be a whole number from 1 to {MAX_COUNT}.")
    count = int(values[0])
    if not 1 <= count <= MAX_COUNT:
        raise SearchError("invalid_count", f"_count must be a whole number from 1 to {MAX_COUNT}.")
    return count


def _filter_key(resource_type: str, params: Mapping[str, list[str]]) -> str:
    """What a cursor belongs to: the type and its filters (not ``_count``, which may change between
    pages)."""
    kept = {name: list(values) for name, values in sorted(params.items()) if name not in ("_count", "_cursor")}
    return hashlib.sha256(json.dumps([resource_type, kept]).encode()).hexdigest()[:32]


def _encode_cursor(key: str, updated: datetime, ident: str) -> str:
    return signing.dumps([key, updated.astimezone(UTC).isoformat(), ident], salt=_CURSOR_SALT, compress=True)


def _decode_cursor(values: Sequence[str], key: str) -> tuple[datetime, str]:
    if len(values) != 1:
        raise SearchError("invalid_cursor", "_cursor may be given once.")
    try:
        found_key, updated, ident = signing.loads(values[0], salt=_CURSOR_SALT)
        moment = datetime.fromisoformat(updated)
        uuid.UUID(str(ident))
    except (signing.BadSignature, ValueError, TypeError):
        raise SearchError("invalid_cursor", "_cursor is not a cursor this server gave out.") from None
    if found_key != key:
        raise SearchError("invalid_cursor", "_cursor belongs to another search; keep the other parameters unchanged.")
    return moment, str(ident)


def _page(source: Source, condition: Q, after: tuple[datetime, str] | None, count: int) -> list[Any]:
    column, ident = source.updated, source.id_field
    rows: QuerySet[Any] = source.rows().filter(condition)
    if after is not None:
        moment, last = after
        # (column, id) > (moment, last), written so that the first condition is an index range.
        rows = rows.filter(
            Q(**{f"{column}__gte": moment}) & (Q(**{f"{column}__gt": moment}) | Q(**{f"{ident}__gt": last}))
        )
    return list(rows.order_by(column, ident)[: count + 1])


def _key(source: Source, row: Any) -> tuple[datetime, uuid.UUID]:
    ident = getattr(row, source.id_field)
    return getattr(row, source.updated), ident if isinstance(ident, uuid.UUID) else uuid.UUID(str(ident))


def _link(base_url: str, resource_type: str, params: Mapping[str, list[str]]) -> str:
    query = urlencode([(name, value) for name, values in params.items() for value in values])
    return f"{base_url.rstrip('/')}/{resource_type}" + (f"?{query}" if query else "")


def read(resource_type: str, resource_id: str) -> dict[str, Any] | None:
    """One resource by its id, or None (unknown type or id, or a type not served)."""
    sources = READ_SOURCES.get(resource_type) if served(resource_type) else None
    try:
        ident = uuid.UUID(resource_id)
    except (ValueError, TypeError, AttributeError):
        return None
    for source in sources or ():
        row = source.rows().filter(**{source.id_field: ident}).first()
        if row is not None:
            return source.render([row])[0]
    return None


def search(resource_type: str, params: Mapping[str, list[str]], *, base_url: str) -> dict[str, Any]:
    """One page of a search as a ``searchset`` Bundle with ``self`` and (when there is more) ``next``."""
    sources = SOURCES.get(resource_type) if served(resource_type) else None
    if sources is None:
        raise SearchError("unsupported_type", "This resource type is not searchable here.")
    allowed = SEARCHABLE[resource_type]
    unknown = sorted(name for name in params if name not in allowed)
    if unknown:
        # The parameter's name only if it is short and plain (it is the client's text).
        name = unknown[0] if re.fullmatch(r"[A-Za-z_:.-]{1,40}", unknown[0]) else "?"
        raise SearchError("unsupported_param", f"Search parameter {name} is not supported for {resource_type}.")
    count = _count(params.get("_count"))
    key = _filter_key(resource_type, params)
    after = _decode_cursor(params["_cursor"], key) if "_cursor" in params else None
    patients = _patient_ids(params["patient"]) if "patient" in params else None

    pages: list[tuple[tuple[datetime, uuid.UUID], Source, Any]] = []
    for source in sources:
        condition = _last_updated_q(params.get("_lastUpdated", []), source.updated)
        if patients is not None and source.patient is not None:
            condition &= Q(**{f"{source.patient}__in": patients})
        pages.extend((_key(source, row), source, row) for row in _page(source, condition, after, count))
    pages.sort(key=lambda item: item[0])
    more = len(pages) > count
    pages = pages[:count]

    resources: dict[int, dict[str, Any]] = {}
    for source in sources:
        mine = [(index, row) for index, (_, owner, row) in enumerate(pages) if owner is source]
        if mine:
            for (index, _), resource in zip(mine, source.render([row for _, row in mine]), strict=True):
                resources[index] = resource
    base = base_url.rstrip("/")
    entries = [
        {
            "fullUrl": f"{base}/{resources[i]['resourceType']}/{resources[i]['id']}",
            "resource": resources[i],
            "search": {"mode": "match"},
        }
        for i in range(len(pages))
    ]
    links = [{"relation": "self", "url": _link(base, resource_type, params)}]
    if more and pages:
        (moment, ident), _, _ = pages[-1]
        following = {name: list(values) for name, values in params.items() if name != "_cursor"}
        following["_cursor"] = [_encode_cursor(key, moment, str(ident))]
        links.append({"relation": "next", "url": _link(base, resource_type, following)})
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
