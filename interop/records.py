"""The bookkeeping of imported resources (``SourceRecord``), shared by the NDJSON import and by
transaction/batch Bundles: lookup by business identifier, the version rule's bookkeeping for an
unchanged resource, and the record a mapped resource leaves behind.

Nothing here saves: the NDJSON import writes a chunk's records in one statement each for new and
changed ones, a Bundle saves each as it goes (``record_save``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from interop import fhir
from interop.models import ImportRun, SourceRecord
from portal.fields import BlindIndexField

if TYPE_CHECKING:
    from interop.mapping.base import Mapped

# What ``record_fill`` sets on a record (and a chunk's bulk update writes).
FILLED_FIELDS = (
    "resource_id",
    "identifier_is_logical_id",
    "version_id",
    "last_updated",
    "content_hash",
    "target_type",
    "targets",
    "state",
    "child_id",
    "deleted",
    "deleted_at",
    "last_seen_run",
    "updated_at",
)


# What ``note_unchanged`` may move.
BOOKKEEPING_FIELDS = ("version_id", "last_updated", "resource_id")


def identifier_index(identifier: str) -> str:
    """The blind index a business identifier is looked up by (the identifier itself is encrypted)."""
    field = SourceRecord._meta.get_field("identifier_index")
    assert isinstance(field, BlindIndexField)
    return field.index_of(identifier)


def record_for(identifier: str, *, lock: bool = False) -> SourceRecord | None:
    """The record of a business identifier (deleted or not), or None."""
    rows = SourceRecord.objects.select_for_update() if lock else SourceRecord.objects.all()
    return rows.filter(identifier_index=identifier_index(identifier)).first()


def records_for(indexes: list[str]) -> dict[str, SourceRecord]:
    """The records of many blind indexes at once, by index (one query)."""
    if not indexes:
        return {}
    return {record.identifier_index: record for record in SourceRecord.objects.filter(identifier_index__in=indexes)}


def note_unchanged(record: SourceRecord, resource: fhir.Resource) -> list[str]:
    """Same content: only the bookkeeping moves (a newer version number, a re-keyed logical id). Sets
    the fields on ``record`` and returns the names of those that changed (for ``update_fields``)."""
    changes = {
        "version_id": resource.version_id[:64],
        "last_updated": resource.last_updated,
        "resource_id": resource.id[:64],
    }
    changed = [name for name, value in changes.items() if getattr(record, name) != value]
    for name in changed:
        setattr(record, name, changes[name])
    return changed


def record_fill(
    run: ImportRun, record: SourceRecord | None, resource: fhir.Resource, mapped: Mapped, target_type: str
) -> SourceRecord:
    """The record of a resource just mapped: ``record`` updated in place (or a new one, unsaved)."""
    record = record or SourceRecord(resource_type=resource.type, identifier=resource.identifier)
    if record._state.adding and not record.identifier_index:
        record.identifier_index = identifier_index(resource.identifier)
    record.resource_id = resource.id[:64]
    record.identifier_is_logical_id = resource.identifier_is_logical_id
    record.version_id = resource.version_id[:64]
    record.last_updated = resource.last_updated
    record.content_hash = resource.content_hash
    record.target_type = target_type
    record.targets = mapped.targets
    record.state = mapped.state
    record.child_id = mapped.child_id or (mapped.targets[0] if resource.type == "Patient" and mapped.targets else None)
    record.deleted = False
    record.deleted_at = None
    record.last_seen_run = run
    record.updated_at = timezone.now()
    return record


def record_save(record: SourceRecord) -> None:
    """Save one filled record now (a Bundle's entries are applied one by one)."""
    if record._state.adding:
        record.save(force_insert=True)
    else:
        record.save(update_fields=FILLED_FIELDS)
