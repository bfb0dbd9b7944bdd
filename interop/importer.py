"""The FHIR Bulk Data import: NDJSON files (one resource per line, one file per type) into the portal.

Idempotent: each resource is keyed by its business identifier (``SourceRecord``); a resource whose
content has not changed writes no domain row, no audit row and no event; an older version
(``meta.lastUpdated``, else a numeric ``meta.versionId``) never overwrites a newer one.

Resumable: a run records each file's sha256 and the last line committed; lines are committed in
chunks, one transaction each with its checkpoint, and a run over the same files after an
interruption continues from there. A chunk is read and validated whole; what its lines will look up
(their records, the records, children and clinicians their references point to, what a mapping
reads for all of them) is read once for the chunk; its records and audit rows are written at its end
in one statement each; each line is applied in its own savepoint.

A line that is not JSON or cannot be validated or mapped is reported (file, line, a machine reason)
and rejected; the other lines go on, since an export's lines are independent and large
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
from interop.records import BOOKKEEPING_FIELDS, identifier_index, note_unchanged, record_fill, record_save, records_for
from portal import audit

logger = logging.getLogger(__name__)

OUTCOMES = ("created", "updated", "unchanged", "older", "deleted", "rejected", "not_imported", "unsupported")
# What a bad value in one resource raises while it is mapped; anything else (a lost database
# connection, an interruption) stops the run, to be continued by the next one.
LINE_ERRORS = (Unmappable, DjangoValidationError, ValueError, KeyError, TypeError, ArithmeticError)
DEFAULT_BATCH = 1000
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
class _Chunk:
    """What a chunk of lines did, written with its checkpoint: counts, rejected lines, the records
    seen (a full export keeps them), the records to write, and the types with unidentifiable lines."""

    counts: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    seen: set[Any] = field(default_factory=set)
    issues: list[ImportIssue] = field(default_factory=list)
    unidentified: set[str] = field(default_factory=set)
    # The chunk's records by blind index (read in one query), and those to write at its end.
    records: dict[str, SourceRecord] = field(default_factory=dict)
    dirty: dict[str, SourceRecord] = field(default_factory=dict)
    # Unchanged content whose version bookkeeping moved (``note_unchanged``).
    bookkeeping: dict[str, SourceRecord] = field(default_factory=dict)


@dataclass
class _Line:
    """One line read: its resource, or why it was rejected (``index``: its identifier's blind index,
    when it could be identified)."""

    number: int
    kind: str
    index: str | None = None
    resource: fhir.Resource | None = None
    reason: str = ""
    counted: str = ""  # "not_imported" or "unsupported": counted, never applied


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


def _reason(error: Exception) -> str:
    return error.reason if isinstance(error, Unmappable) else f"mapping_error:{type(error).__name__}"


def _read(chunk: _Chunk, number: int, text: str | None, kind: str) -> _Line:
    """Parse, identify and validate one line (None: one too long to read). Writes nothing."""
    line = _Line(number=number, kind=kind)
    try:
        if text is None:
            chunk.unidentified.add(kind)
            raise Unmappable("line_too_large")
        data = fhir.parse_line(text)
        line.kind = data["resourceType"]
        if line.kind not in MAPPINGS:
            line.counted = "not_imported" if line.kind in NOT_IMPORTED_YET else "unsupported"
            return line
        try:
            identifier, _ = fhir.business_identifier(data)
        except (Unmappable, *LINE_ERRORS):
            chunk.unidentified.add(line.kind)
            raise
        line.index = identifier_index(identifier)
        line.resource = fhir.resource_of(data)
    except LINE_ERRORS as error:
        line.reason = _reason(error)
    return line


def _references(value: Any, found: set[tuple[str, str]]) -> None:
    """Every relative reference ``Type/id`` in a resource's JSON."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                kind, _, ident = item.partition("/")
                if kind in MAPPINGS and ident and "/" not in ident:
                    found.add((kind, ident[:64]))
            elif isinstance(item, dict | list):
                _references(item, found)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _references(item, found)


def _prefetch(ctx: Context, chunk: _Chunk, lines: list[_Line]) -> None:
    """What the chunk's lines will read, at once: their own records by identifier, the records (and
    children, clinicians, memberships) their references point to, and each mapping's own reads."""
    chunk.records = records_for(sorted({line.index for line in lines if line.index}))
    references: set[tuple[str, str]] = set()
    by_kind: defaultdict[str, list[fhir.Resource]] = defaultdict(list)
    for line in lines:
        if line.resource is not None:
            _references(line.resource.data, references)
            by_kind[line.kind].append(line.resource)
    ctx.prefetch(references)
    for kind, resources in by_kind.items():
        prefetch = MAPPINGS[kind].prefetch
        if prefetch is not None:
            prefetch(ctx, resources)


def _reject(ctx: Context, chunk: _Chunk, file: ImportFile, line: _Line, reason: str) -> None:
    existing = chunk.records.get(line.index) if line.index else None
    if existing is not None and not existing._state.adding:
        chunk.seen.add(existing.pk)
    chunk.counts[line.kind]["rejected"] += 1
    chunk.issues.append(ImportIssue(file_name=file.name, line=line.number, resource_type=line.kind[:64], reason=reason))
    logger.warning("fhir import: line rejected", extra={"file": file.name, "line": line.number, "reason": reason})


def _apply(ctx: Context, chunk: _Chunk, file: ImportFile, line: _Line, audit_rows: audit.Held) -> None:
    """Apply one line read; a bad one is counted and reported, and leaves nothing behind (its own
    savepoint, and its audit rows, held for the chunk, dropped)."""
    if line.counted:
        chunk.counts[line.kind][line.counted] += 1
        return
    if line.resource is None or line.index is None:
        _reject(ctx, chunk, file, line, line.reason)
        return
    resource, kind = line.resource, line.kind
    existing = chunk.records.get(line.index)
    if existing is not None and not existing.deleted:
        if fhir.is_older(resource.version_id, resource.last_updated, existing.version_id, existing.last_updated):
            chunk.counts[kind]["older"] += 1
            _seen(chunk, existing)
            return
        if existing.content_hash == resource.content_hash:
            if note_unchanged(existing, resource) and not existing._state.adding:
                chunk.bookkeeping[line.index] = existing
            chunk.counts[kind]["unchanged"] += 1
            _seen(chunk, existing)
            return
    mapping = MAPPINGS[kind]
    mark = audit_rows.mark()
    try:
        with transaction.atomic():
            mapped = mapping.apply(ctx, resource, existing)
            record = record_fill(ctx.run, existing, resource, mapped, mapping.target_type)
            if mapping.reads_own_type:
                record_save(record)
    except LINE_ERRORS as error:
        audit_rows.discard(mark)
        ctx.forget_rows()  # what the line read may have changed in memory before it was rolled back
        _reject(ctx, chunk, file, line, _reason(error))
        return
    if not mapping.reads_own_type:
        chunk.dirty[line.index] = record
    chunk.records[line.index] = record
    ctx.remember(record)
    chunk.counts[kind]["created" if existing is None or existing.deleted else "updated"] += 1


def _seen(chunk: _Chunk, record: SourceRecord) -> None:
    """A record the run saw unchanged (or older): a full export keeps it."""
    if not record._state.adding:  # a new one is written at the chunk's end, seen by this run
        chunk.seen.add(record.pk)


def _flush(ctx: Context, chunk: _Chunk) -> None:
    """Write the chunk's records: new ones in one INSERT, version bookkeeping in one UPDATE, and each
    updated one on its own (its encrypted ``state`` cannot go through a bulk ``CASE`` update; updates
    are the exception in an export)."""
    new = [record for record in chunk.dirty.values() if record._state.adding]
    if new:
        SourceRecord.objects.bulk_create(new)
    inserted = {id(record) for record in new}
    for index, record in chunk.dirty.items():
        chunk.bookkeeping.pop(index, None)
        if id(record) not in inserted:
            record_save(record)
            chunk.seen.discard(record.pk)
    if chunk.bookkeeping:
        SourceRecord.objects.bulk_update(list(chunk.bookkeeping.values()), BOOKKEEPING_FIELDS)


def _commit(file: ImportFile, batch: _Chunk, last_line: int, completed: bool) -> None:
    """Called inside the chunk's transaction: the file's progress and counts move with the chunk."""
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
        SourceRecord.objects.filter(pk__in=sorted(batch.seen, key=str)).update(last_seen_run=file.run)
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
    """Chunks of at most ``batch_size`` lines and about ``BATCH_MAX_CHARS`` characters (a chunk of
    PDF-carrying lines stays small), one transaction each, its checkpoint committed with it. A chunk
    is read and validated whole, what its lines will look up is read at once (``_prefetch``), each
    line is applied in its own savepoint, and its records are written at its end (``_flush``)."""
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
        with transaction.atomic(), audit.held() as audit_rows:
            chunk = _Chunk()
            read = [_read(chunk, number, text, file.resource_type) for number, text in pending]
            _prefetch(ctx, chunk, read)
            for line in read:
                _apply(ctx, chunk, file, line, audit_rows)
            _flush(ctx, chunk)
            _commit(file, chunk, last or file.lines_committed, completed=exhausted)


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
