"""Querysets compiled to SQL once, then run again with new values: for the hot reads.

Building a queryset and compiling it to SQL costs far more CPU than PostgreSQL spends answering a
small indexed query (``tests/benchmarks/profile_requests.py``: most of ``/me/today``'s CPU went there).
A ``Prepared`` query is written as an ordinary queryset over named parameters; the first run on a
database compiles it with stand-in values, notes where each stand-in landed among the SQL parameters
and which converters the columns need, and every later run binds the real values into that SQL. A
list parameter is compiled once per length (``IN (%s, %s, %s)``), up to ``MAX_LIST_LENGTH``; longer
lists build the queryset afresh.

Parameters are ``uuid.UUID`` or aware ``datetime`` values, or lists of UUIDs. Rows come back as
tuples, converted as Django converts ``values_list`` rows (encrypted columns arrive ``Sealed``:
build model instances with ``Model.from_db`` so that they decrypt lazily, as usual).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import QuerySet

MAX_LIST_LENGTH = 32
_EPOCH = datetime(1901, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Slot:
    name: str
    index: int | None  # the item of a list parameter
    adapt: Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]  # the constant parameters; slots overwrite the others
    slots: dict[int, _Slot]
    converters: list[tuple[int, list[Callable[..., Any]], Any]]


class Prepared:
    """``build(**values)`` returns the queryset (a ``values_list``); ``rows(**values)`` runs it."""

    def __init__(self, build: Callable[..., QuerySet[Any]]) -> None:
        self.build = build
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        self._lock = threading.Lock()

    def rows(self, *, using: str = "default", **values: Any) -> list[tuple[Any, ...]]:
        lengths = sorted((name, len(v) if isinstance(v, list) else -1) for name, v in values.items())
        shape = (using, *lengths)
        if any(length > MAX_LIST_LENGTH for _, length in lengths):
            return list(self.build(**values).using(using))
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = self._compile(using, values)
            with self._lock:
                self._compiled[shape] = compiled
        params = list(compiled.params)
        for position, slot in compiled.slots.items():
            value = values[slot.name] if slot.index is None else values[slot.name][slot.index]
            params[position] = slot.adapt(value)
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if not compiled.converters:
            return rows
        converted = []
        for row in rows:
            values_out = list(row)
            for position, functions, expression in compiled.converters:
                value = values_out[position]
                for function in functions:
                    value = function(value, expression, connection)
                values_out[position] = value
            converted.append(tuple(values_out))
        return converted

    def _compile(self, using: str, values: dict[str, Any]) -> _Compiled:
        stand_ins: dict[str, Any] = {}
        for offset, (name, value) in enumerate(sorted(values.items())):
            stand_ins[name] = _stand_in(value, offset)
        queryset = self.build(**stand_ins)
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        connection = connections[using]
        slots: dict[int, _Slot] = {}
        for name, stand_in in stand_ins.items():
            items = stand_in if isinstance(stand_in, list) else [stand_in]
            for index, item in enumerate(items):
                for position, adapt in _find(params, item, connection):
                    slots[position] = _Slot(name, index if isinstance(stand_in, list) else None, adapt)
        missing = {name for name in stand_ins if name not in {slot.name for slot in slots.values()}}
        if missing:
            raise ValueError(f"Prepared query does not use the parameters {sorted(missing)}.")
        selected = [column for column, _, _ in compiler.select[: compiler.col_count]]
        converters = [
            (position, functions, expression)
            for position, (functions, expression) in compiler.get_converters(selected).items()
        ]
        return _Compiled(sql=sql, params=tuple(params), slots=slots, converters=converters)


def _stand_in(value: Any, offset: int) -> Any:
    if isinstance(value, list):
        return [uuid.uuid4() for _ in value]
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    if isinstance(value, datetime):
        return _EPOCH + timedelta(days=offset, microseconds=offset + 1)
    raise TypeError(f"Prepared queries take UUIDs, aware datetimes and lists of UUIDs, not {type(value).__name__}.")


def _find(params: Sequence[Any], stand_in: Any, connection: Any) -> list[tuple[int, Callable[[Any], Any]]]:
    """Where the stand-in landed among the compiled parameters, and how the database saw it."""
    adapters: list[Callable[[Any], Any]]
    if isinstance(stand_in, uuid.UUID):
        adapters = [lambda v: v, lambda v: v.hex, str]
    else:
        adapters = [lambda v: v, connection.ops.adapt_datetimefield_value]
    found = []
    for position, param in enumerate(params):
        for adapt in adapters:
            if type(param) is type(adapt(stand_in)) and param == adapt(stand_in):
                found.append((position, adapt))
                break
    return found
