"""The one CSV writer for every export (audit trail, metrics reports, anything later).

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as
a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Following OWASP's CSV injection guidance,
such a cell is written with a leading single quote, which spreadsheets show as text. Only the
exported cell changes: values are stored as received, so the audit chain's hashes still verify
against the JSON export and the database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """The cell as a spreadsheet may safely open it. Numbers are left alone (``-3`` stays a number);
    any text that a spreadsheet would read as a formula gets a leading ``'``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class SafeDictWriter:
    """``csv.DictWriter`` whose every cell (header included) passes through :func:`neutralise`."""

    def __init__(self, stream: Any, fieldnames: Sequence[str], **kwargs: Any) -> None:
        self._writer = csv.DictWriter(stream, fieldnames=list(fieldnames), **kwargs)

    def writeheader(self) -> None:
        self._writer.writerow({name: neutralise(name) for name in self._writer.fieldnames})

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({key: neutralise(value) for key, value in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> str:
    """A whole (small) CSV document with a header row."""
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, fieldnames, **kwargs)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def csv_stream(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> Iterator[str]:
    """A CSV document line by line, for streaming responses over large exports."""
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, fieldnames, **kwargs)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
