"""The shape of a mapping: ``apply`` makes or updates the portal rows for a resource (``record`` is
None the first time), ``remove`` ends them when the resource leaves a full export. Both audit their
writes as the import actor and publish the domain events the care team's own writes would.

``prefetch`` (optional) reads at once, before a chunk of resources of its type is applied, what
``apply`` would otherwise read for each of them (kept in ``Context.memo``). A mapping whose ``apply``
queries the records of its own type (``reads_own_type``) has each record saved as soon as it is
applied; the others' records are written once per chunk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from interop.context import Context
from interop.fhir import Resource
from interop.models import SourceRecord
from portal.fields import BlindIndexField


@dataclass
class Mapped:
    """The rows a resource became (ids as strings) and what undoing it needs to remember."""

    targets: list[str]
    state: dict[str, Any] = field(default_factory=dict)
    # The child the resource is about, if any (kept on the record to find a child's records).
    child_id: UUID | None = None


@dataclass(frozen=True)
class Mapping:
    target_type: str
    apply: Callable[[Context, Resource, SourceRecord | None], Mapped]
    remove: Callable[[Context, SourceRecord], None]
    prefetch: Callable[[Context, Sequence[Resource]], None] | None = None
    reads_own_type: bool = False


def source_key(resource: Resource) -> str:
    """The key a portal row made from ``resource`` is recorded under in care's ``source_id``: the
    blind index of its business identifier (stable, and no identifier in the clear)."""
    index_field = SourceRecord._meta.get_field("identifier_index")
    assert isinstance(index_field, BlindIndexField)
    return f"ehr:{index_field.index_of(resource.identifier)}"
