"""The FHIR Bulk Data import: NDJSON files (one resource per line, one file per type) into the portal.

Idempotent: each resource is keyed by its business identifier (``SourceRecord``); a resource whose
content has not changed writes no domain row, no audit row and no event; an older version
(``meta.lastUpdated``, else a numeric ``meta.versionId``) never overwrites a newer one.

Resumable: a run records each file's sha256 and the last line committed; lines are committed in
batches, one transaction each, and a run over the same files after an interruption continues from
there. A line that is not JSON or cannot be validated or mapped is reported (file, line, a machine
reason) and rejected; the other lines go on, since an export's lines are independent and large
exports should not stop at one bad record (what refers to a rejected resource is then reported as an
unresolved reference).

With ``full_export``, resources of an exported type that the export no longer holds are removed:
their mappings end links and hide items (``Mapping.remove``), and the portal rows and audit history
stay. A type any of whose lines could not even be identified is left alone (a record the import could
not read is not a deleted one).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from interop import fhir
from interop.context import Context, import_actor
from interop.errors import Unmappable
from interop.mapping import MAPPINGS, NOT_IMPORTED_YET, ORDER
from interop.models import ImportFile, ImportIssue, ImportRun, SourceRecord
from portal.fields import BlindIndexField

logger = logging.getLogger(__name__)

OUTCOMES = ("created", "updated", "unchanged", "older", "deleted", "rejected", "not_imported", "unsupported")
# What a bad value in one resource raises while it is mapped; anything else (a lost database
# connection, an interruption) stops the run, to be continued by the next one.
LINE_ERRORS = (Unmappable, DjangoValidationError, ValueError, KeyError, TypeError, ArithmeticError)
DEFAULT_BATCH = 200
# A line longer than this is rejected unread (``line_too_large``): the largest resource the portal
# takes is a visit summary with a 10 MB PDF, 13.4 million characters of base64.
MAX_LINE_CHARS = 16 * 1024 * 1024
BATCH_MAX_CHARS = 32 * 1024 * 1024


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    resource_type: str
    reason: str


@dataclass
class Summary:
    run_id: str
    resumed: bool
    counts: dict[str, dict[str, int]]
    issues: list[Issue]
    skipped_deletions: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(c.get("rejected", 0) for c in self.counts.values())


@dataclass
class _Batch:
    counts: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    seen: list[Any] = field(default_factory=list)
    issues: list[ImportIssue] = field(default_factory=list)
    unidentified: set[str] = field(default_factory=set)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_type(path: Path) -> str:
    """``Patient.ndjson`` or ``Patient.002.ndjson`` (as exports split large types) → ``Patient``."""
    return path.name.split(".", 1)[0]


def _rank(kind: str) -> int:
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


def _index(identifier: str) -> str:
    field = SourceRecord._meta.get_field("identifier_index")
    assert isinstance(field, BlindIndexField)
    return field.index_of(identifier)


def _start_run(files: list[tuple[Path, str]], full_export: bool) -> tuple[ImportRun, bool]:
    fileset = hashlib.sha256(
        ("full" if full_export else "part").encode() + "".join(sorted(d for _, d in files)).encode()
    )
    with transaction.atomic():
        run = (
            ImportRun.objects.select_for_update()
            .filter(fileset=fileset.hexdigest(), status=ImportRun.Status.RUNNING)
            .first()
        )
        if run is not None:
            return run, True
        ImportRun.objects.filter(status=ImportRun.Status.RUNNING).update(status=ImportRun.Status.ABANDONED)
        run = ImportRun.objects.create(fileset=fileset.hexdigest(), full_export=full_export)
        for path, digest in files:
            ImportFile.objects.get_or_create(
                run=run, sha256=digest, defaults={"name": path.name, "resource_type": file_type(path)}
            )
    return run, False


def _line(ctx: Context, batch: _Batch, file: ImportFile, number: int, text: str | None) -> None:
    """Import one line (None: one too long to read); a bad one is counted and reported, and leaves
    nothing behind."""
    kind, existing = file.resource_type, None
    try:
        if text is None:
            batch.unidentified.add(kind)
            raise Unmappable("line_too_large")
        data = fhir.parse_line(text)
        kind = data["resourceType"]
        if kind not in MAPPINGS:
            batch.counts[kind]["not_imported" if kind in NOT_IMPORTED_YET else "unsupported"] += 1
            return
        try:
            identifier, _ = fhir.business_identifier(data)
        except (Unmappable, *LINE_ERRORS):
            batch.unidentified.add(kind)
            raise
        existing = SourceRecord.objects.filter(identifier_index=_index(identifier)).first()
        resource = fhir.read(text)
        if existing is not None and not existing.deleted:
            if fhir.is_older(resource.version_id, resource.last_updated, existing.version_id, existing.last_updated):
                batch.counts[kind]["older"] += 1
                batch.seen.append(existing.pk)
                return
            if existing.content_hash == resource.content_hash:
                _note_unchanged(existing, resource)
                batch.counts[kind]["unchanged"] += 1
                batch.seen.append(existing.pk)
                return
        with transaction.atomic():
            mapped = MAPPINGS[kind].apply(ctx, resource, existing)
            _save_record(ctx, existing, resource, mapped)
        batch.counts[kind]["created" if existing is None or existing.deleted else "updated"] += 1
    except LINE_ERRORS as error:
        reason = error.reason if isinstance(error, Unmappable) else f"mapping_error:{type(error).__name__}"
        if existing is not None:
            batch.seen.append(existing.pk)
        batch.counts[kind]["rejected"] += 1
        batch.issues.append(ImportIssue(file_name=file.name, line=number, resource_type=kind[:64], reason=reason))
        logger.warning("fhir import: line rejected", extra={"file": file.name, "line": number, "reason": reason})


def _note_unchanged(record: SourceRecord, resource: fhir.Resource) -> None:
    """Same content: only the bookkeeping moves (a newer version number, a re-keyed logical id)."""
    changes = {
        "version_id": resource.version_id,
        "last_updated": resource.last_updated,
        "resource_id": resource.id[:64],
    }
    changed = {name: value for name, value in changes.items() if getattr(record, name) != value}
    if changed:
        SourceRecord.objects.filter(pk=record.pk).update(**changed)


def _save_record(ctx: Context, record: SourceRecord | None, resource: fhir.Resource, mapped: Any) -> None:
    record = record or SourceRecord(resource_type=resource.type, identifier=resource.identifier)
    record.resource_id = resource.id[:64]
    record.identifier_is_logical_id = resource.identifier_is_logical_id
    record.version_id = resource.version_id[:64]
    record.last_updated = resource.last_updated
    record.content_hash = resource.content_hash
    record.target_type = MAPPINGS[resource.type].target_type
    record.targets = mapped.targets
    record.state = mapped.state
    record.child_id = mapped.child_id or _child_of(resource.type, mapped.targets)
    record.deleted = False
    record.deleted_at = None
    record.last_seen_run = ctx.run
    record.updated_at = timezone.now()
    record.save()


def _child_of(kind: str, targets: list[str]) -> Any:
    return targets[0] if kind == "Patient" and targets else None


def _commit(file: ImportFile, batch: _Batch, last_line: int, completed: bool) -> None:
    """Called inside the batch's transaction: the file's progress and counts move with the batch."""
    counts = {kind: dict(values) for kind, values in file.counts.items()}
    for kind, values in batch.counts.items():
        merged = Counter(counts.get(kind, {}))
        merged.update(values)
        counts[kind] = dict(merged)
    unidentified = set(file.counts.get("_unidentified", {}).get("types", [])) | batch.unidentified
    file.counts = counts | ({"_unidentified": {"types": sorted(unidentified)}} if unidentified else {})
    file.lines_committed = last_line
    file.completed = completed
    file.save(update_fields=["counts", "lines_committed", "completed"])
    if batch.seen:
        SourceRecord.objects.filter(pk__in=batch.seen).update(last_seen_run=file.run)
    for issue in batch.issues:
        issue.run_id = file.run_id
    ImportIssue.objects.bulk_create(batch.issues, ignore_conflicts=True)


def _lines(path: Path, after: int) -> Iterator[tuple[int, str | None]]:
    """The file's non-blank lines after line ``after``; a line longer than ``MAX_LINE_CHARS`` comes as
    None, its rest read and dropped in pieces (never held whole)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        number = 0
        while text := handle.readline(MAX_LINE_CHARS + 1):
            number += 1
            if len(text) > MAX_LINE_CHARS:
                while not text.endswith("\n") and (text := handle.readline(1 << 20)):
                    pass
                if number > after:
                    yield number, None
            elif number > after and text.strip():
                yield number, text


def _import_file(ctx: Context, file: ImportFile, path: Path, batch_size: int) -> None:
    """Batches of at most ``batch_size`` lines and about ``BATCH_MAX_CHARS`` characters (a batch of
    PDF-carrying lines stays small), one transaction each."""
    lines = _lines(path, file.lines_committed)
    exhausted = False
    while not exhausted:
        pending: list[tuple[int, str | None]] = []
        size = 0
        for item in lines:
            pending.append(item)
            size += len(item[1] or "")
            if len(pending) >= batch_size or size >= BATCH_MAX_CHARS:
                break
        else:
            exhausted = True
        last = pending[-1][0] if pending else None
        ctx.forget()
        with transaction.atomic():
            batch = _Batch()
            for number, text in pending:
                _line(ctx, batch, file, number, text)
            _commit(file, batch, last or file.lines_committed, completed=exhausted)


def _delete_missing(ctx: Context, run: ImportRun, batch_size: int) -> list[str]:
    """Full export: remove what the export no longer holds, dependents first. Returns the types left
    alone because some of their lines could not be identified."""
    files = list(run.files.all())
    exported = {f.resource_type for f in files}
    unidentified = {kind for f in files for kind in f.counts.get("_unidentified", {}).get("types", [])}
    for kind in reversed(ORDER):
        if kind not in exported or kind in unidentified:
            continue
        while True:
            with transaction.atomic():
                stale = list(
                    SourceRecord.objects.select_for_update()
                    .filter(resource_type=kind, deleted=False)
                    .exclude(last_seen_run=run)[:batch_size]
                )
                for record in stale:
                    MAPPINGS[kind].remove(ctx, record)
                    record.deleted, record.deleted_at = True, timezone.now()
                    record.save(update_fields=["deleted", "deleted_at"])
                if stale:
                    run.deletions[kind] = run.deletions.get(kind, 0) + len(stale)
                    run.save(update_fields=["deletions"])
            if len(stale) < batch_size:
                break
    return sorted(unidentified & exported)


def summary_of(run: ImportRun, resumed: bool, skipped: Iterable[str] = ()) -> Summary:
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for file in run.files.all():
        for kind, values in file.counts.items():
            if not kind.startswith("_"):
                counts[kind].update(values)
    for kind, deleted in run.deletions.items():
        counts[kind]["deleted"] += deleted
    issues = [Issue(i.file_name, i.line, i.resource_type, i.reason) for i in run.issues.order_by("file_name", "line")]
    return Summary(
        run_id=str(run.pk),
        resumed=resumed,
        counts={
            kind: {o: values.get(o, 0) for o in OUTCOMES}
            for kind, values in sorted(counts.items(), key=lambda kv: (_rank(kv[0]), kv[0]))
        },
        issues=issues,
        skipped_deletions=list(skipped),
    )


def import_files(paths: list[Path], *, full_export: bool = False, batch_size: int = DEFAULT_BATCH) -> Summary:
    """Import NDJSON files (a Bulk Data export's output), or continue the interrupted run over them."""
    files = sorted(
        ((path, file_digest(path)) for path in paths), key=lambda item: (_rank(file_type(item[0])), item[0].name)
    )
    run, resumed = _start_run(files, full_export)
    ctx = Context(actor=import_actor(), run=run)
    records = {f.sha256: f for f in run.files.all()}
    for path, digest in files:
        file = records[digest]
        if not file.completed:
            _import_file(ctx, file, path, batch_size)
    skipped = _delete_missing(ctx, run, batch_size) if full_export else []
    run.status, run.finished_at = ImportRun.Status.FINISHED, timezone.now()
    run.save(update_fields=["status", "finished_at"])
    return summary_of(run, resumed, skipped)
