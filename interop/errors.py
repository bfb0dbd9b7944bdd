"""The one error a mapping raises for a resource it cannot take."""

from __future__ import annotations


class Unmappable(Exception):
    """This resource cannot become portal data. ``reason`` is a machine code (no value from the record):
    the line is reported and rejected, and the import goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:200]


def named(value: object, known: frozenset[str] | set[str] | dict[str, object]) -> str:
    """A coded value for a reason: itself when it is one of the codes the specification defines,
    else ``other`` (a reason never repeats free text from the record)."""
    return str(value) if isinstance(value, str) and value in known else "other"
