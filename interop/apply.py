"""One resource at a time through the import's mappings, and transaction/batch Bundles built on that.

``resource_apply`` and ``resource_remove`` do for one resource what the NDJSON import does for one
line and for one resource a full export no longer holds: the same ``SourceRecord`` keying, version
rule (an older version never overwrites a newer one), unchanged detection and mappings
(``interop.mapping``), so a Bundle pushed by the integration engine and an export file leave the
same rows behind.

A Bundle is checked whole before anything is written: every entry's method, URL, resource
(validated against the FHIR models) and the caller's scope for what it would do. A ``transaction``
with one bad entry is refused whole (``BundleError`` naming the entry's index and a machine reason)
and nothing is applied; a good one is applied in one database transaction, resources in the
import's dependency order (a CareTeam after its Patient and Practitioners), deletions after, in
reverse order. A mapping that refuses an entry then (an unresolved reference) rolls the whole
transaction back. In a ``batch`` each entry stands alone: a bad one gets its own error response and
the others are applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from django.db import IntegrityError, transaction
from django.utils import timezone

from interop import fhir
from interop.context import Context
from interop.errors import Unmappable
from interop.importer import LINE_ERRORS
from interop.mapping import MAPPINGS, ORDER
from interop.models import ImportRun, SourceRecord
from interop.records import note_unchanged, record_fill, record_for, record_save
from portal.models import User

METHODS = {"POST", "PUT", "DELETE"}
# The elements FHIR R4 defines on a Bundle, an entry and an entry's request: anything else is refused.
BUNDLE_FIELDS = frozenset(
    {"resourceType", "id", "meta", "implicitRules", "language", "identifier", "type", "timestamp", "total"}
    | {"link", "entry", "signature"}
)
ENTRY_FIELDS = frozenset(
    {"id", "extension", "modifierExtension", "link", "fullUrl", "resource", "search", "request", "response"}
)
REQUEST_FIELDS = frozenset(
    {"id", "extension", "modifierExtension", "method", "url", "ifNoneMatch", "ifModifiedSince", "ifMatch"}
    | {"ifNoneExist"}
)


class BundleError(Exception):
    """A Bundle refused whole. ``index`` is the entry at fault (None: the Bundle itself); ``reason`` a
    machine code naming no value from the resource; ``status`` the HTTP status to answer."""

    def __init__(self, index: int | None, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason[:200]
        self.status = status


# --- One resource ---------------------------------------------------------------------------------


def resource_apply(ctx: Context, resource: fhir.Resource) -> tuple[str, SourceRecord]:
    """Upsert one validated resource as the import does; returns the outcome (``created``,
    ``updated``, ``unchanged`` or ``older``) and its record. Raises ``Unmappable`` (or one of the
    import's ``LINE_ERRORS``) when the mapping cannot take it. Call inside a transaction."""
    existing = record_for(resource.identifier, lock=True)
    if existing is not None and not existing.deleted:
        if fhir.is_older(resource.version_id, resource.last_updated, existing.version_id, existing.last_updated):
            return "older", existing
        if existing.content_hash == resource.content_hash:
            changed = note_unchanged(existing, resource)
            if changed:
                existing.save(update_fields=changed)
            return "unchanged", existing
    created = existing is None or existing.deleted
    mapping = MAPPINGS[resource.type]
    mapped = mapping.apply(ctx, resource, existing)
    record = record_fill(ctx.run, existing, resource, mapped, mapping.target_type)
    record_save(record)
    ctx.remember(record)
    return ("created" if created else "updated"), record


def resource_remove(ctx: Context, record: SourceRecord) -> bool:
    """Remove one resource as a full export's absence does (its mapping ends links and hides items;
    rows and audit history stay). False when it was removed already. Call inside a transaction."""
    record = SourceRecord.objects.select_for_update().get(pk=record.pk)
    if record.deleted:
        return False
    MAPPINGS[record.resource_type].remove(ctx, record)
    record.deleted, record.deleted_at = True, timezone.now()
    record.save(update_fields=["deleted", "deleted_at"])
    return True


# --- Bundles --------------------------------------------------------------------------------------


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    resource: fhir.Resource | None = None
    record: SourceRecord | None = None  # the live record a write or deletion touches, if any
    error: BundleError | None = None


@dataclass
class Outcome:
    """What happened to one entry, for the response Bundle."""

    status: str
    resource_type: str = ""
    resource_id: str = ""
    version_id: str = ""
    last_modified: str = ""
    reason: str = ""


@dataclass
class Result:
    kind: str  # transaction or batch
    outcomes: list[Outcome] = field(default_factory=list)


# The permission a write needs of the caller (SMART: c, u, d).
Permits = Callable[[str, str], bool]


def _rank(kind: str) -> int:
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


def _delete_target(index: int, url: str) -> tuple[str, SourceRecord | None]:
    """``Type/id`` or ``Type?identifier=system|value`` → the type and its record (None: unknown)."""
    path, _, query = url.partition("?")
    kind, _, ident = path.strip("/").partition("/")
    if kind not in MAPPINGS:
        raise BundleError(index, "unsupported_type")
    if ident and not query:
        return kind, SourceRecord.objects.filter(resource_type=kind, resource_id=ident[:64]).first()
    values = parse_qs(query).get("identifier") or []
    if ident or len(values) != 1 or "|" not in values[0]:
        raise BundleError(index, "delete_url:expected Type/id or Type?identifier=system|value")
    return kind, record_for(f"{kind}|{values[0]}")


def _write_entry(index: int, method: str, entry: dict[str, Any], permits: Permits) -> Entry:
    data = entry.get("resource")
    if not isinstance(data, dict):
        raise BundleError(index, "no_resource")
    kind = data.get("resourceType")
    if not isinstance(kind, str) or kind not in MAPPINGS:
        raise BundleError(index, "unsupported_type")
    url = str((entry.get("request") or {}).get("url") or "")
    path = url.partition("?")[0].strip("/")
    if method == "PUT":
        url_kind, _, url_id = path.partition("/")
        if url_kind != kind or (url_id and url_id != str(data.get("id") or "")):
            raise BundleError(index, "url_mismatch:request.url must be the resource's Type/id")
    elif path != kind:
        raise BundleError(index, "url_mismatch:request.url must be the resource type")
    try:
        resource = fhir.read(json.dumps(data))
    except Unmappable as error:
        raise BundleError(index, error.reason) from None
    if not resource.id:
        raise BundleError(index, "no_id:give the resource an id, or a urn:uuid fullUrl")
    existing = record_for(resource.identifier)
    live = existing if existing is not None and not existing.deleted else None
    if not permits(kind, "u" if live is not None else "c"):
        raise BundleError(index, f"scope:{kind}.{'u' if live is not None else 'c'}", status=403)
    return Entry(index=index, method=method, resource_type=kind, resource=resource, record=live)


def _entry(index: int, entry: Any, permits: Permits) -> Entry:
    if not isinstance(entry, dict):
        raise BundleError(index, "entry_not_object")
    request = entry.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        raise BundleError(index, "no_request_method")
    if set(entry) - ENTRY_FIELDS:
        raise BundleError(index, "unknown_field:entry")
    if set(request) - REQUEST_FIELDS:
        raise BundleError(index, "unknown_field:entry.request")
    method = request["method"].upper()
    if method not in METHODS:
        raise BundleError(index, "method_not_supported:POST, PUT or DELETE")
    if method == "DELETE":
        kind, record = _delete_target(index, str(request.get("url") or ""))
        if not permits(kind, "d"):
            raise BundleError(index, f"scope:{kind}.d", status=403)
        if record is None:
            raise BundleError(index, "not_found", status=404)
        return Entry(index=index, method=method, resource_type=kind, record=record)
    return _write_entry(index, method, entry, permits)


def _local_references(entries: list[Any]) -> list[Any]:
    """Entries whose resources refer to each other by ``fullUrl`` (``urn:uuid:...``, as engines write
    transactions) refer by ``Type/id`` instead, which is what the mappings resolve. A resource sent
    without an id under a ``urn:uuid`` fullUrl takes that uuid as its id. The request's own dicts are
    left as they were."""
    aliases: dict[str, str] = {}
    rewritten: list[Any] = []
    for item in entries:
        resource = item.get("resource") if isinstance(item, dict) else None
        full_url = item.get("fullUrl") if isinstance(item, dict) else None
        if not isinstance(resource, dict) or not isinstance(full_url, str) or not full_url:
            rewritten.append(item)
            continue
        resource = dict(resource)
        if not resource.get("id") and full_url.startswith("urn:uuid:"):
            resource["id"] = full_url.removeprefix("urn:uuid:")
        if isinstance(resource.get("resourceType"), str) and resource.get("id"):
            aliases[full_url] = f"{resource['resourceType']}/{resource['id']}"
        rewritten.append({**item, "resource": resource})
    if not aliases:
        return entries
    return [
        {**item, "resource": _rewrite(item["resource"], aliases)}
        if isinstance(item, dict) and isinstance(item.get("resource"), dict)
        else item
        for item in rewritten
    ]


def _rewrite(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: aliases.get(item, item) if key == "reference" and isinstance(item, str) else _rewrite(item, aliases)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(item, aliases) for item in value]
    return value


def check(bundle: Any, *, max_entries: int, permits: Permits) -> tuple[str, list[Entry]]:
    """Read a Bundle's entries: a transaction raises ``BundleError`` at its first bad entry; a
    batch keeps each entry's error beside it."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleError(None, "not_a_bundle")
    if set(bundle) - BUNDLE_FIELDS:
        raise BundleError(None, "unknown_field:Bundle")
    kind = bundle.get("type")
    if kind not in {"transaction", "batch"}:
        raise BundleError(None, "bundle_type:transaction or batch")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BundleError(None, "entry_not_list")
    if len(entries) > max_entries:
        raise BundleError(None, f"too_many_entries:at most {max_entries}", status=413)
    entries = _local_references(entries)
    checked: list[Entry] = []
    for index, item in enumerate(entries):
        try:
            checked.append(_entry(index, item, permits))
        except BundleError as error:
            if kind == "transaction":
                raise
            checked.append(Entry(index=index, method="", resource_type="", error=error))
    return kind, checked


def _run(digest: str) -> ImportRun:
    now = timezone.now()
    return ImportRun.objects.create(fileset=digest, status=ImportRun.Status.FINISHED, started_at=now, finished_at=now)


def _apply(ctx: Context, entry: Entry) -> Outcome:
    if entry.method == "DELETE":
        assert entry.record is not None
        removed = resource_remove(ctx, entry.record)
        return Outcome(
            status="204 No Content" if removed else "200 OK",
            resource_type=entry.resource_type,
            resource_id=entry.record.resource_id,
        )
    assert entry.resource is not None
    outcome, record = resource_apply(ctx, entry.resource)
    return Outcome(
        status="201 Created" if outcome == "created" else "200 OK",
        resource_type=entry.resource_type,
        resource_id=record.resource_id,
        version_id=record.version_id,
        last_modified=record.last_updated.isoformat() if record.last_updated else "",
        reason=outcome,
    )


def _order(entries: list[Entry]) -> list[Entry]:
    """Writes in the import's dependency order, then deletions in reverse (dependents first)."""
    writes = sorted((e for e in entries if e.method != "DELETE"), key=lambda e: (_rank(e.resource_type), e.index))
    deletes = sorted((e for e in entries if e.method == "DELETE"), key=lambda e: (-_rank(e.resource_type), e.index))
    return writes + deletes


def _failure(error: Exception) -> str:
    return error.reason if isinstance(error, Unmappable) else f"mapping_error:{type(error).__name__}"


def bundle_apply(*, actor: User, body: bytes, bundle: Any, max_entries: int, permits: Permits) -> Result:
    """Check and apply a transaction or batch Bundle as ``actor`` (module docstring); raises
    ``BundleError`` for a transaction refused whole."""
    kind, entries = check(bundle, max_entries=max_entries, permits=permits)
    digest = hashlib.sha256(body).hexdigest()
    outcomes: dict[int, Outcome] = {}
    if kind == "transaction":
        try:
            with transaction.atomic():
                ctx = Context(actor=actor, run=_run(digest))
                for entry in _order(entries):
                    try:
                        outcomes[entry.index] = _apply(ctx, entry)
                    except LINE_ERRORS as error:
                        raise BundleError(entry.index, _failure(error)) from None
        except IntegrityError:
            raise BundleError(None, "conflict:a concurrent write touched the same resources; retry", 409) from None
        return Result(kind, [outcomes[e.index] for e in entries])
    ctx = Context(actor=actor, run=_run(digest))
    for entry in _order(entries):
        if entry.error is not None:
            outcomes[entry.index] = _error_outcome(entry.error)
            continue
        ctx.forget()
        try:
            with transaction.atomic():
                outcomes[entry.index] = _apply(ctx, entry)
        except (*LINE_ERRORS, IntegrityError) as error:
            outcomes[entry.index] = Outcome(status="400 Bad Request", reason=_failure(error))
    return Result(kind, [outcomes[e.index] for e in entries])


def _error_outcome(error: BundleError) -> Outcome:
    text = {400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found", 413: "413 Payload Too Large"}
    return Outcome(status=text.get(error.status, f"{error.status}"), reason=error.reason)
