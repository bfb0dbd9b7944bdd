"""Writes of the metrics: call imports (CSV and webhook), the self-service events derived from the
audit trail, the population sync, and the incremental rollup refresh.

Imports are all-or-nothing: every line is validated first and a file with any bad line is refused
whole with a report of each bad line. Derivation and refresh are incremental: the audit trail is
read after a watermark on ``AuditEvent.seq``, and only days marked dirty are recomputed.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portal import audit
from portal.access import current_membership_q, live_link_q
from portal.errors import ApiError, Invalid
from portal.metrics.models import (
    NEVER,
    CallImportBatch,
    CallRecord,
    Cohort,
    CohortSize,
    DailyCohortRollup,
    DailyPopulation,
    DailyResponseRollup,
    DailyTopicRollup,
    DirtyDay,
    MessageResponse,
    MetricsConfig,
    MetricsPatient,
    MonthlyGuardians,
    PendingMessage,
    SelfServiceEvent,
    Watermark,
    WebhookReceipt,
)
from portal.metrics.topics import (
    MESSAGE_ENTITY_TYPE,
    POPULATION_ENTITY_TYPES,
    SELF_SERVICE_ACTIONS,
    guardian_hash,
    phone_hash,
    topic_for_reason,
)
from portal.models import AuditEvent, CareTeamMembership, Child, GuardianLink, User

CALLBACK_WINDOW = timedelta(days=7)
AUDIT_WATERMARK = "audit_events"
ALL_DEPARTMENTS = "*"  # the hospital-wide row of MonthlyGuardians
CSV_COLUMNS = (
    "call_id",
    "started_at",
    "duration_seconds",
    "direction",
    "queue",
    "reason",
    "caller_phone",
    "mrn",
    "outcome",
)
REQUIRED_COLUMNS = frozenset({"call_id", "started_at", "duration_seconds", "direction", "reason", "outcome"})
MAX_REPORTED_ERRORS = 1000
WRITE_BATCH = 5000


# --- Configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    baseline_start: date | None
    baseline_end: date | None
    go_live: date | None


def _parse_period(spec: str) -> tuple[date | None, date | None]:
    if ".." not in spec:
        return None, None
    first, _, last = spec.partition("..")
    return date.fromisoformat(first.strip()), date.fromisoformat(last.strip())


def metrics_settings() -> Settings:
    """The baseline period and go-live date: the admin's ``MetricsConfig``, else the settings."""
    start, end = _parse_period(settings.PORTAL_METRICS_BASELINE)
    go_live_spec: str = settings.PORTAL_METRICS_GO_LIVE
    go_live = date.fromisoformat(go_live_spec) if go_live_spec else None
    row = MetricsConfig.objects.filter(pk=1).first()
    if row is not None:
        start = row.baseline_start or start
        end = row.baseline_end or end
        go_live = row.go_live or go_live
    return Settings(baseline_start=start, baseline_end=end, go_live=go_live)


def config_set(*, actor: Any, baseline_start: date, baseline_end: date, go_live: date | None) -> MetricsConfig:
    """Set the baseline period (inclusive) and the go-live date."""
    if baseline_end < baseline_start:
        raise Invalid("The baseline must end after it starts.", code="invalid_period")
    with transaction.atomic():
        row, _ = MetricsConfig.objects.update_or_create(
            pk=1, defaults={"baseline_start": baseline_start, "baseline_end": baseline_end, "go_live": go_live}
        )
        audit.record(actor=actor, action=audit.Action.UPDATE, entity_type="MetricsConfig", entity_id="1")
    return row


# --- Call import -------------------------------------------------------------------------------


@dataclass
class LineError:
    line: int
    column: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


class ImportRejected(ApiError):
    status = 422
    code = "import_rejected"
    message = "The file was rejected: nothing was imported. See errors for each bad line."

    def __init__(self, errors: list[LineError], total: int | None = None) -> None:
        self.line_errors = errors
        shown = [error.as_dict() for error in errors[:MAX_REPORTED_ERRORS]]
        count = total if total is not None else len(errors)
        super().__init__(f"{count} bad line(s): nothing was imported.", details=shown)


class TooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    message = "The upload is too large."


# One wording for every way calls arrive (command, admin upload, webhook), each naming its limit.
def too_many_bytes(limit: int) -> TooLarge:
    return TooLarge(f"The file is larger than the limit of {limit} bytes; split it into smaller files.")


def too_many_rows(limit: int) -> TooLarge:
    return TooLarge(f"The file has more than the limit of {limit} rows; split it into smaller files.")


class _CountingReader(io.RawIOBase):
    """A binary stream that raises ``TooLarge`` as soon as more than ``limit`` bytes were read."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source = source
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.source.read(min(len(buffer), 64 * 1024))
        self.count += len(chunk)
        if self.count > self.limit:
            raise too_many_bytes(self.limit)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@dataclass(slots=True)
class ParsedCall:
    call_id: str
    started_at: datetime
    duration_seconds: int
    direction: str
    queue: str
    topic: str
    caller_hash: str
    mrn_index: str
    outcome: str


def _parse_row(row: dict[str, str], line: int, errors: list[LineError]) -> ParsedCall | None:
    before = len(errors)

    def bad(column: str, reason: str) -> None:
        errors.append(LineError(line, column, reason))

    call_id = row.get("call_id", "").strip()
    if not call_id:
        bad("call_id", "required")
    elif len(call_id) > 100:
        bad("call_id", "longer than 100 characters")
    started_at: datetime | None = None
    raw_start = row.get("started_at", "").strip()
    try:
        started_at = datetime.fromisoformat(raw_start.replace("Z", "+00:00"))
        if started_at.tzinfo is None:
            bad("started_at", "needs a UTC offset (e.g. 2025-03-01T09:30:00+00:00)")
    except ValueError:
        bad("started_at", "not an ISO 8601 date-time")
    duration = 0
    try:
        duration = int(row.get("duration_seconds", "").strip())
        if not 0 <= duration <= 86_400:
            bad("duration_seconds", "must be between 0 and 86400")
    except ValueError:
        bad("duration_seconds", "not a whole number")
    direction = row.get("direction", "").strip().lower()
    if direction not in CallRecord.Direction.values:
        bad("direction", "must be inbound or outbound")
    queue = row.get("queue", "").strip()
    if len(queue) > 60:
        bad("queue", "longer than 60 characters")
    reason = row.get("reason", "").strip()
    if not reason:
        bad("reason", "required")
    elif len(reason) > 60:
        bad("reason", "longer than 60 characters")
    phone = row.get("caller_phone", "").strip()
    caller = phone_hash(phone) if phone else ""
    if phone and not caller:
        bad("caller_phone", "not a phone number")
    mrn = row.get("mrn", "").strip()
    if len(mrn) > 64:
        bad("mrn", "longer than 64 characters")
    outcome = row.get("outcome", "").strip().lower()
    if outcome not in CallRecord.Outcome.values:
        bad("outcome", "must be one of " + ", ".join(CallRecord.Outcome.values))
    if len(errors) > before or started_at is None:
        return None
    mrn_index = Child._meta.get_field("mrn_index").index_of(mrn) if mrn else ""
    return ParsedCall(
        call_id=call_id,
        started_at=started_at.astimezone(UTC),
        duration_seconds=duration,
        direction=direction,
        queue=queue,
        topic=topic_for_reason(reason),
        caller_hash=caller,
        mrn_index=mrn_index,
        outcome=outcome,
    )


MAX_KEPT_ERRORS = 10_000


def _text(stream: IO[bytes], max_bytes: int) -> io.TextIOWrapper:
    counted = io.BufferedReader(_CountingReader(stream, max_bytes), buffer_size=64 * 1024)
    return io.TextIOWrapper(counted, encoding="utf-8-sig", newline="")


def _count_rows(text: io.TextIOWrapper, max_rows: int) -> None:
    """Raise ``TooLarge`` past the row or byte limit; a file that is not CSV is left to the parser."""
    try:
        for index, _ in enumerate(csv.reader(text)):
            if index > max_rows:  # the header is not a row
                raise too_many_rows(max_rows)
    except (UnicodeDecodeError, csv.Error):
        return


def parse_csv(data: bytes | IO[bytes]) -> list[ParsedCall]:
    """Validate a CSV file as it is read; raise ``ImportRejected`` naming every bad line, else return
    its calls. ``TooLarge`` is raised as soon as the byte or row limit is passed, without reading on.

    Line numbers are the file's (the header is line 1).
    """
    max_bytes: int = settings.PORTAL_METRICS_MAX_UPLOAD_BYTES
    max_rows: int = settings.PORTAL_METRICS_MAX_ROWS
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    if stream.seekable():
        # A file that can be read twice is first only counted (about a second per 500,000 rows), so
        # one over a limit is refused before any row is parsed, hashed or kept.
        start = stream.tell()
        _count_rows(_text(stream, max_bytes), max_rows)
        stream.seek(start)
    reader = csv.DictReader(_text(stream, max_bytes))
    errors: list[LineError] = []
    total_errors = 0
    try:
        header = [name.strip() for name in (reader.fieldnames or [])]
        for name in header:
            if name not in CSV_COLUMNS:
                errors.append(LineError(1, name[:60], "unknown column"))
        for name in sorted(REQUIRED_COLUMNS - set(header)):
            errors.append(LineError(1, name, "missing column"))
        if errors:
            raise ImportRejected(errors)
        reader.fieldnames = header
        calls: list[ParsedCall] = []
        first_line: dict[str, int] = {}
        for index, row in enumerate(reader):
            line = reader.line_num
            if index >= max_rows:
                raise too_many_rows(max_rows)
            row_errors: list[LineError] = []
            if None in row or any(value is None for value in row.values()):
                row_errors.append(LineError(line, "", "wrong number of fields"))
                parsed = None
            else:
                parsed = _parse_row(row, line, row_errors)
            if parsed is not None and parsed.call_id in first_line:
                row_errors.append(
                    LineError(line, "call_id", f"repeats the call id of line {first_line[parsed.call_id]}")
                )
            elif parsed is not None:
                first_line[parsed.call_id] = line
                calls.append(parsed)
            total_errors += len(row_errors)
            errors.extend(row_errors[: max(0, MAX_KEPT_ERRORS - len(errors))])
    except UnicodeDecodeError:
        raise ImportRejected([LineError(0, "", "the file is not UTF-8 text")]) from None
    except csv.Error as exc:
        raise ImportRejected([LineError(reader.line_num, "", f"not readable as CSV ({exc})"[:200])]) from None
    if errors:
        raise ImportRejected(errors, total=total_errors)
    return calls


class CallIn(BaseModel):
    """One call in a webhook delivery (same fields as a CSV line)."""

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=100)
    started_at: str = Field(max_length=40)
    duration_seconds: int
    direction: str = Field(max_length=10)
    queue: str = Field("", max_length=60)
    reason: str = Field(max_length=60)
    caller_phone: str = Field("", max_length=32)
    mrn: str = Field("", max_length=64)
    outcome: str = Field(max_length=12)


class CallBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: list[CallIn] = Field(min_length=1)


def _patients_for(calls: Sequence[ParsedCall]) -> tuple[dict[str, int], dict[str, int]]:
    """Metrics patients of the calls: by MRN (blind index → child), else by the family's phone hash."""
    indexes = sorted({call.mrn_index for call in calls if call.mrn_index})
    by_index: dict[str, int] = {}
    if indexes:
        children = dict(Child.objects.filter(mrn_index__in=indexes).values_list("mrn_index", "id"))
        if children:
            patients_sync(child_ids=list(children.values()))
            patient_of_child = dict(
                MetricsPatient.objects.filter(child_id__in=list(children.values())).values_list("child_id", "id")
            )
            by_index = {idx: patient_of_child[cid] for idx, cid in children.items() if cid in patient_of_child}
    hashes = sorted({call.caller_hash for call in calls if call.caller_hash})
    by_family: dict[str, int] = {}
    for family, pid in (
        MetricsPatient.objects.filter(family_hash__in=hashes).order_by("-id").values_list("family_hash", "id")
    ):
        by_family[family] = pid  # the lowest id wins (ordered descending)
    return by_index, by_family


def _store_calls(*, actor: Any, source: str, calls: Sequence[ParsedCall], via: str) -> CallImportBatch:
    """Insert the calls not already known for ``source``; call inside a transaction."""
    by_index, by_family = _patients_for(calls)
    existing: set[str] = set()
    ids = [call.call_id for call in calls]
    for start in range(0, len(ids), 1000):
        existing.update(
            CallRecord.objects.filter(source=source, call_id__in=ids[start : start + 1000]).values_list(
                "call_id", flat=True
            )
        )
    batch = CallImportBatch.objects.create(
        source=source,
        via=via,
        rows=len(calls),
        actor_id=actor.pk if getattr(actor, "is_authenticated", False) else None,
    )
    new = [call for call in calls if call.call_id not in existing]
    records = [
        CallRecord(
            source=source,
            call_id=call.call_id,
            started_at=call.started_at,
            day=call.started_at.date(),
            duration_seconds=call.duration_seconds,
            direction=call.direction,
            queue=call.queue,
            topic=call.topic,
            caller_hash=call.caller_hash,
            patient_id=by_index.get(call.mrn_index) or by_family.get(call.caller_hash),
            outcome=call.outcome,
            batch=batch,
        )
        for call in new
    ]
    # ignore_conflicts: a concurrent import of the same call ids loses the race quietly.
    CallRecord.objects.bulk_create(records, batch_size=WRITE_BATCH, ignore_conflicts=True)
    added = CallRecord.objects.filter(batch=batch).count()
    batch.added = added
    batch.duplicates = len(calls) - added
    batch.save(update_fields=["added", "duplicates"])
    _mark_dirty({record.day for record in records})
    audit.record(
        actor=actor,
        action=audit.Action.CREATE,
        entity_type="CallImport",
        entity_id=batch.pk,
        reason=f"{via}:{source[:30]}:{added}/{len(calls)}",
    )
    return batch


def _check_source(source: str) -> str:
    cleaned = source.strip()
    if not cleaned or len(cleaned) > 40 or not all(ch.isalnum() or ch in "-_." for ch in cleaned):
        raise Invalid("source must be 1-40 letters, digits, '-', '_' or '.'.", code="invalid_source")
    return cleaned


def calls_import(
    *, actor: Any, source: str, data: bytes | IO[bytes], via: str = CallImportBatch.Via.COMMAND
) -> CallImportBatch:
    """Import a phone-system CSV (bytes or a binary stream, read once): every line valid or nothing
    imported; known call ids are skipped. ``TooLarge`` past the byte or row limit."""
    source = _check_source(source)
    calls = parse_csv(data)
    with transaction.atomic():
        return _store_calls(actor=actor, source=source, calls=calls, via=via)


def webhook_secrets() -> dict[str, str]:
    spec: str = settings.PORTAL_METRICS_WEBHOOK_SECRETS
    pairs = {}
    for item in spec.split(","):
        name, sep, secret = item.strip().partition(":")
        if sep and name and secret:
            pairs[name] = secret
    return pairs


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body`` (what the phone system sends)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookRefused(ApiError):
    status = 401
    code = "invalid_signature"
    message = "The request signature is not valid."


def _refuse(source: str, reason: str, error: ApiError) -> ApiError:
    audit.deny(actor=None, entity_type="CallWebhook", entity_id=source[:40] or None, reason=reason)
    return error


def calls_webhook_receive(
    *, source: str, timestamp: str, signature: str, body: bytes, now: datetime | None = None
) -> CallImportBatch:
    """Accept a signed delivery of calls from ``source``.

    Refused: an unknown source or a bad signature (401 ``invalid_signature``), a timestamp outside
    the window (401 ``stale_timestamp``), a signature already accepted (409 ``replayed``).
    """
    secret = webhook_secrets().get(source)
    if secret is None or not signature:
        raise _refuse(source, "bad_signature", WebhookRefused())
    try:
        sent = int(timestamp)
    except ValueError:
        raise _refuse(source, "bad_timestamp", WebhookRefused("Bad timestamp.", code="stale_timestamp")) from None
    moment = (now or timezone.now()).timestamp()
    if abs(moment - sent) > settings.PORTAL_METRICS_WEBHOOK_WINDOW_SECONDS:
        raise _refuse(
            source, "stale_timestamp", WebhookRefused("The timestamp is outside the window.", code="stale_timestamp")
        )
    expected = webhook_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise _refuse(source, "bad_signature", WebhookRefused())
    try:
        batch_in = CallBatchIn.model_validate_json(body)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in e["loc"]], "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
        raise Invalid("The body is not valid; see errors.", details=details) from None
    if len(batch_in.calls) > settings.PORTAL_METRICS_WEBHOOK_MAX_CALLS:
        raise too_many_rows(settings.PORTAL_METRICS_WEBHOOK_MAX_CALLS)
    errors: list[LineError] = []
    parsed: list[ParsedCall] = []
    seen: set[str] = set()
    for number, call in enumerate(batch_in.calls, start=1):
        row = {key: str(value) for key, value in call.model_dump().items()}
        one = _parse_row(row, number, errors)
        if one is not None:
            if one.call_id in seen:
                errors.append(LineError(number, "call_id", "repeats an earlier call id"))
                continue
            seen.add(one.call_id)
            parsed.append(one)
    if errors:
        raise ImportRejected(errors)
    try:
        with transaction.atomic():
            WebhookReceipt.objects.create(
                source=source, signature_hash=hashlib.sha256(signature.strip().encode()).hexdigest()
            )
            return _store_calls(actor=None, source=source, calls=parsed, via=CallImportBatch.Via.WEBHOOK)
    except IntegrityError:
        raise _refuse(
            source, "replayed", ApiError("This delivery was already accepted.", code="replayed", status=409)
        ) from None


# --- Population ----------------------------------------------------------------------------------


def _mark_dirty(days: Iterable[date]) -> None:
    rows = [DirtyDay(day=day) for day in set(days)]
    if rows:
        DirtyDay.objects.bulk_create(rows, batch_size=WRITE_BATCH, ignore_conflicts=True)


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def patients_sync(*, child_ids: Iterable[uuid.UUID] | None = None, now: datetime | None = None) -> int:
    """Bring the metrics population up to date with the portal's children (all of them, or some).

    Enrolment is an active guardian link (``live_link_q``); the family is the earliest live link's
    guardian phone (as a keyed hash); the department is the earliest current care-team membership
    with one. Returns how many patients changed; their days are marked dirty.
    """
    moment = now or timezone.now()
    today = moment.date()
    if child_ids is None:
        ids = list(Child.objects.order_by("id").values_list("id", flat=True))
    else:
        ids = sorted(set(child_ids))
    changed_total = 0
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        links: dict[uuid.UUID, list[tuple[datetime, str]]] = defaultdict(list)
        for child_id, valid_from, phone in (
            GuardianLink.objects.filter(live_link_q(moment), child_id__in=chunk)
            .order_by("valid_from")
            .values_list("child_id", "valid_from", "guardian__phone")
        ):
            links[child_id].append((valid_from, phone or ""))
        departments: dict[uuid.UUID, str] = {}
        for child_id, code in (
            CareTeamMembership.objects.filter(
                current_membership_q(moment), child_id__in=chunk, department__isnull=False
            )
            .order_by("-start")
            .values_list("child_id", "department__code")
        ):
            departments[child_id] = code  # the earliest start wins (ordered descending)
        existing = {row.child_id: row for row in MetricsPatient.objects.filter(child_id__in=chunk)}
        creates: list[MetricsPatient] = []
        updates: list[MetricsPatient] = []
        dirty: set[date] = set()
        for child_id in chunk:
            live = links.get(child_id, [])
            row = existing.get(child_id)
            family = next((h for h in (phone_hash(p) for _, p in live if p) if h), "")
            if row is None:
                row = MetricsPatient(ref=f"c:{child_id}", child_id=child_id, source=MetricsPatient.Source.PORTAL)
                before: tuple[Any, ...] | None = None
            else:
                before = (row.department, row.family_hash, row.enrolled_on, row.unenrolled_on)
            if live:
                first = min(valid_from for valid_from, _ in live).date()
                if row.enrolled_on is None or row.unenrolled_on is not None:
                    row.enrolled_on = first if row.enrolled_on is None else min(row.enrolled_on, first)
                row.unenrolled_on = None
            elif row.enrolled_on is not None and row.unenrolled_on is None:
                row.unenrolled_on = today
            row.family_hash = family or row.family_hash
            row.department = departments.get(child_id, row.department)
            row.cohort_month = row.enrolled_on.replace(day=1) if row.enrolled_on else NEVER
            after = (row.department, row.family_hash, row.enrolled_on, row.unenrolled_on)
            if before is None:
                creates.append(row)
            elif before != after:
                row.updated_at = moment
                updates.append(row)
            else:
                continue
            # Population counts change from the earliest affected day on.
            marks = [d for d in (before or (None, None, None, None))[2:] + after[2:] if d is not None]
            first_day = min(marks) if marks else today
            dirty.update(_days(max(first_day, today - timedelta(days=800)), today))
        MetricsPatient.objects.bulk_create(creates, batch_size=WRITE_BATCH)
        if updates:
            MetricsPatient.objects.bulk_update(
                updates,
                ["department", "family_hash", "enrolled_on", "unenrolled_on", "cohort_month", "updated_at"],
                batch_size=WRITE_BATCH,
            )
            # Their past calls and actions move between cohorts and departments.
            changed_ids = [row.pk for row in updates]
            dirty.update(CallRecord.objects.filter(patient_id__in=changed_ids).values_list("day", flat=True))
            dirty.update(SelfServiceEvent.objects.filter(patient_id__in=changed_ids).values_list("day", flat=True))
        _mark_dirty(dirty)
        changed_total += len(creates) + len(updates)
    if changed_total:
        _flag(COHORTS_STALE)
    return changed_total


COHORTS_STALE = "cohort_sizes_stale"


def _flag(name: str) -> None:
    Watermark.objects.update_or_create(name=name, defaults={"value": 1, "updated_at": timezone.now()})


def cohort_sizes_refresh() -> None:
    """Patients per enrolment month (the exposure of the difference-in-differences)."""
    with transaction.atomic():
        CohortSize.objects.all().delete()
        CohortSize.objects.bulk_create(
            CohortSize(cohort_month=row["cohort_month"], patients=row["n"])
            for row in MetricsPatient.objects.values("cohort_month").annotate(n=Count("id"))
        )
        Watermark.objects.filter(name=COHORTS_STALE).delete()


# --- Self-service events from the audit trail --------------------------------------------------


def messaging_available() -> bool:
    """Message response times need the messaging app; without it they are simply not measured."""
    return apps.is_installed("messaging")


def _is_guardian(spans: list[tuple[datetime, datetime | None]], at: datetime) -> bool:
    return any(start <= at and (end is None or end > at) for start, end in spans)


def events_derive(*, batch_size: int = 5000, limit: int | None = None) -> int:
    """Derive self-service events (and message response times) from audit rows after the watermark.

    Each batch commits with its watermark, so a crash repeats at most one batch, and ``audit_seq``
    is unique, so a repeat inserts nothing twice. Returns the number of audit rows read.
    """
    read = 0
    with_messages = messaging_available()
    interesting = {entity for entity, _ in SELF_SERVICE_ACTIONS} | POPULATION_ENTITY_TYPES
    while limit is None or read < limit:
        with transaction.atomic():
            mark, _ = Watermark.objects.select_for_update().get_or_create(name=AUDIT_WATERMARK)
            rows = list(
                AuditEvent.objects.filter(seq__gt=mark.value)
                .order_by("seq")
                .values("seq", "recorded_at", "actor_id", "action", "entity_type", "child_id", "outcome")[:batch_size]
            )
            if not rows:
                return read
            useful = [
                row
                for row in rows
                if row["outcome"] == audit.Outcome.SUCCESS
                and row["child_id"] is not None
                and row["entity_type"] in interesting
            ]
            _derive_batch([dict(row) for row in useful], with_messages)
            mark.value = rows[-1]["seq"]
            mark.updated_at = timezone.now()
            mark.save(update_fields=["value", "updated_at"])
        read += len(rows)
    return read


def _derive_batch(rows: list[dict[str, Any]], with_messages: bool) -> None:
    if not rows:
        return
    population = {row["child_id"] for row in rows if row["entity_type"] in POPULATION_ENTITY_TYPES}
    actions = [
        row
        for row in rows
        if (row["entity_type"], row["action"]) in SELF_SERVICE_ACTIONS
        or (with_messages and row["entity_type"] == MESSAGE_ENTITY_TYPE and row["action"] == audit.Action.CREATE)
    ]
    child_ids = {row["child_id"] for row in actions}
    missing = child_ids - set(MetricsPatient.objects.filter(child_id__in=child_ids).values_list("child_id", flat=True))
    if population | missing:
        patients_sync(child_ids=population | missing)
    if not actions:
        return
    patients = dict(MetricsPatient.objects.filter(child_id__in=child_ids).values_list("child_id", "id"))
    actor_ids = {row["actor_id"] for row in actions if row["actor_id"]}
    spans: dict[tuple[uuid.UUID, uuid.UUID], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for guardian_id, child_id, valid_from, valid_until, revoked_at in (
        GuardianLink.objects.filter(guardian_id__in=actor_ids, child_id__in=child_ids)
        .exclude(status=GuardianLink.Status.INVITED)
        .values_list("guardian_id", "child_id", "valid_from", "valid_until", "revoked_at")
    ):
        ends = [moment for moment in (valid_until, revoked_at) if moment is not None]
        spans[(guardian_id, child_id)].append((valid_from, min(ends) if ends else None))
    phones = {
        uid: phone_hash(phone) if phone else ""
        for uid, phone in User.objects.filter(id__in=actor_ids).values_list("id", "phone")
    }
    events: list[SelfServiceEvent] = []
    responses: list[MessageResponse] = []
    pending = {row.patient_id: row for row in PendingMessage.objects.filter(patient_id__in=patients.values())}
    dirty: set[date] = set()
    for row in actions:
        at: datetime = row["recorded_at"]
        actor_id = row["actor_id"]
        patient_id = patients.get(row["child_id"])
        guardian = actor_id is not None and _is_guardian(spans.get((actor_id, row["child_id"]), []), at)
        key = (row["entity_type"], row["action"])
        if guardian and key in SELF_SERVICE_ACTIONS:
            topic, kind = SELF_SERVICE_ACTIONS[key]
            events.append(
                SelfServiceEvent(
                    occurred_at=at,
                    day=at.astimezone(UTC).date(),
                    topic=topic,
                    kind=kind,
                    family_hash=phones.get(actor_id, ""),
                    guardian_hash=guardian_hash(actor_id),
                    patient_id=patient_id,
                    audit_seq=row["seq"],
                )
            )
            # A call in the next 7 days may now count as a call-back.
            dirty.update(_days(at.date(), at.date() + CALLBACK_WINDOW))
        if with_messages and row["entity_type"] == MESSAGE_ENTITY_TYPE and patient_id is not None:
            if guardian:
                if patient_id not in pending:
                    pending[patient_id] = PendingMessage(patient_id=patient_id, since=at)
            elif actor_id is not None and patient_id in pending:
                opened = pending.pop(patient_id)
                responses.append(
                    MessageResponse(
                        day=at.date(),
                        patient_id=patient_id,
                        seconds=max(0, int((at - opened.since).total_seconds())),
                        audit_seq=row["seq"],
                    )
                )
                dirty.add(at.date())
    SelfServiceEvent.objects.bulk_create(events, batch_size=WRITE_BATCH, ignore_conflicts=True)
    if with_messages:
        MessageResponse.objects.bulk_create(responses, ignore_conflicts=True)
        PendingMessage.objects.filter(patient_id__in=patients.values()).exclude(patient_id__in=pending).delete()
        PendingMessage.objects.bulk_create(
            [row for row in pending.values() if row._state.adding], ignore_conflicts=True
        )
    _mark_dirty(dirty)


# --- Rollups -------------------------------------------------------------------------------------


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def month_of(day: date) -> date:
    return day.replace(day=1)


def _enrolled_q(prefix: str, day_field: str) -> Q:
    p = prefix
    return Q(**{f"{p}enrolled_on__lte": F(day_field)}) & (
        Q(**{f"{p}unenrolled_on__isnull": True}) | Q(**{f"{p}unenrolled_on__gt": F(day_field)})
    )


def _cohort_case(prefix: str = "patient__") -> Case:
    return Case(
        When(**{f"{prefix}isnull": True}, then=Value(Cohort.UNATTRIBUTED)),
        When(_enrolled_q(prefix, "day"), then=Value(Cohort.ENROLLED)),
        default=Value(Cohort.NOT_ENROLLED),
        output_field=IntegerField(),
    )


def _refresh_range(first: date, last: date) -> None:
    """Recompute every rollup row of the days ``first``..``last`` (inclusive) from the raw tables."""
    DailyTopicRollup.objects.filter(day__range=(first, last)).delete()
    DailyPopulation.objects.filter(day__range=(first, last)).delete()
    DailyCohortRollup.objects.filter(day__range=(first, last)).delete()
    DailyResponseRollup.objects.filter(day__range=(first, last)).delete()

    window_start = ExpressionWrapper(OuterRef("started_at") - Value(CALLBACK_WINDOW), output_field=DateTimeField())
    by_family = SelfServiceEvent.objects.filter(
        family_hash=OuterRef("caller_hash"),
        topic=OuterRef("topic"),
        occurred_at__lt=OuterRef("started_at"),
        occurred_at__gte=window_start,
    )
    by_patient = SelfServiceEvent.objects.filter(
        patient_id=OuterRef("patient_id"),
        topic=OuterRef("topic"),
        occurred_at__lt=OuterRef("started_at"),
        occurred_at__gte=window_start,
    )
    calls = (
        CallRecord.objects.filter(day__range=(first, last), direction=CallRecord.Direction.INBOUND)
        .annotate(
            dept=Coalesce(F("patient__department"), Value("")),
            cohort=_cohort_case(),
            after_portal=Case(
                When(Q(caller_hash__gt="") & Exists(by_family), then=Value(1)),
                When(Q(patient__isnull=False) & Exists(by_patient), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
            who=Coalesce(Cast("patient_id", CharField()), F("caller_hash")),
        )
        .values("day", "dept", "topic", "cohort")
        .annotate(
            n=Count("id"),
            cb=Count("id", filter=Q(after_portal=1)),
            people=Count("who", distinct=True),
        )
    )
    cells: dict[tuple[date, str, str, int], DailyTopicRollup] = {}

    def cell(day: date, dept: str, topic: str, cohort: int) -> DailyTopicRollup:
        key = (day, dept, topic, cohort)
        if key not in cells:
            cells[key] = DailyTopicRollup(
                day=day, week=week_of(day), month=month_of(day), department=dept, topic=topic, cohort=cohort
            )
        return cells[key]

    for row in calls:
        item = cell(row["day"], row["dept"], row["topic"], row["cohort"])
        item.calls, item.callbacks, item.patients = row["n"], row["cb"], row["people"]
    actions = (
        SelfServiceEvent.objects.filter(day__range=(first, last))
        .annotate(dept=Coalesce(F("patient__department"), Value("")), cohort=_cohort_case())
        .values("day", "dept", "topic", "cohort")
        .annotate(n=Count("id"), people=Count("guardian_hash", distinct=True))
    )
    for row in actions:
        item = cell(row["day"], row["dept"], row["topic"], row["cohort"])
        item.actions = row["n"]
        # A lower bound of the distinct people in the cell (suppression never under-counts them).
        item.patients = max(item.patients, row["people"])
    DailyTopicRollup.objects.bulk_create(cells.values(), batch_size=WRITE_BATCH)

    cohorts = (
        CallRecord.objects.filter(
            day__range=(first, last), direction=CallRecord.Direction.INBOUND, patient__isnull=False
        )
        .values("day", "topic", "patient__cohort_month")
        .annotate(n=Count("id"))
    )
    DailyCohortRollup.objects.bulk_create(
        (
            DailyCohortRollup(
                day=row["day"],
                month=month_of(row["day"]),
                topic=row["topic"],
                cohort_month=row["patient__cohort_month"],
                calls=row["n"],
            )
            for row in cohorts
        ),
        batch_size=WRITE_BATCH,
    )
    _population(first, last)
    responses = (
        MessageResponse.objects.filter(day__range=(first, last))
        .annotate(dept=Coalesce(F("patient__department"), Value("")))
        .values("day", "dept")
        .annotate(
            n=Count("id"),
            total=Coalesce(Sum("seconds"), Value(0)),
            h1=Count("id", filter=Q(seconds__lte=3600)),
            h4=Count("id", filter=Q(seconds__lte=4 * 3600)),
            h24=Count("id", filter=Q(seconds__lte=24 * 3600)),
        )
    )
    DailyResponseRollup.objects.bulk_create(
        DailyResponseRollup(
            day=row["day"],
            week=week_of(row["day"]),
            month=month_of(row["day"]),
            department=row["dept"],
            responses=row["n"],
            total_seconds=row["total"],
            within_1h=row["h1"],
            within_4h=row["h4"],
            within_24h=row["h24"],
        )
        for row in responses
    )


def _population(first: date, last: date) -> None:
    """Patients and enrolled patients per day and department, from the enrolment date histograms."""
    base: dict[str, int] = defaultdict(int)  # enrolled at the start of ``first``
    patients: dict[str, int] = {}
    for row in MetricsPatient.objects.values("department").annotate(
        n=Count("id"),
        before=Count(
            "id", filter=Q(enrolled_on__lt=first) & (Q(unenrolled_on__isnull=True) | Q(unenrolled_on__gt=first))
        ),
    ):
        patients[row["department"]] = row["n"]
        base[row["department"]] = row["before"]
    starts: dict[tuple[str, date], int] = defaultdict(int)
    for row in (
        MetricsPatient.objects.filter(enrolled_on__range=(first, last))
        .values("department", "enrolled_on")
        .annotate(n=Count("id"))
    ):
        starts[(row["department"], row["enrolled_on"])] += row["n"]
    ends: dict[tuple[str, date], int] = defaultdict(int)
    for row in (
        MetricsPatient.objects.filter(unenrolled_on__range=(first + timedelta(days=1), last), enrolled_on__lt=first)
        .values("department", "unenrolled_on")
        .annotate(n=Count("id"))
    ):
        ends[(row["department"], row["unenrolled_on"])] += row["n"]
    # Patients who enrolled and left inside the range.
    for row in (
        MetricsPatient.objects.filter(enrolled_on__range=(first, last), unenrolled_on__lte=last)
        .values("department", "unenrolled_on")
        .annotate(n=Count("id"))
    ):
        ends[(row["department"], row["unenrolled_on"])] += row["n"]
    rows = []
    for dept, total in patients.items():
        enrolled = base[dept]
        for day in _days(first, last):
            enrolled += starts.get((dept, day), 0) - ends.get((dept, day), 0)
            rows.append(
                DailyPopulation(
                    day=day,
                    week=week_of(day),
                    month=month_of(day),
                    department=dept,
                    patients=total,
                    enrolled=max(0, enrolled),
                )
            )
    DailyPopulation.objects.bulk_create(rows, batch_size=WRITE_BATCH)


def _monthly_guardians(months: Iterable[date]) -> None:
    for month in sorted(set(months)):
        following = (month + timedelta(days=32)).replace(day=1)
        events = SelfServiceEvent.objects.filter(day__gte=month, day__lt=following)
        rows = [
            MonthlyGuardians(month=month, department=row["dept"], guardians=row["n"])
            for row in events.annotate(dept=Coalesce(F("patient__department"), Value("")))
            .values("dept")
            .annotate(n=Count("guardian_hash", distinct=True))
        ]
        total = events.aggregate(n=Count("guardian_hash", distinct=True))["n"]
        rows.append(MonthlyGuardians(month=month, department=ALL_DEPARTMENTS, guardians=total))
        MonthlyGuardians.objects.filter(month=month).delete()
        MonthlyGuardians.objects.bulk_create(rows)


def _ranges(days: Iterable[date], max_span: int = 31) -> list[tuple[date, date]]:
    """Contiguous runs of days, each at most ``max_span`` long."""
    ordered = sorted(set(days))
    runs: list[tuple[date, date]] = []
    for day in ordered:
        if runs and runs[-1][1] + timedelta(days=1) == day and (day - runs[-1][0]).days < max_span:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def rollups_refresh(*, days: Iterable[date] | None = None) -> int:
    """Recompute the rollups of the given days, or of every day marked dirty. Returns days refreshed."""
    explicit = days is not None
    todo = (
        sorted(set(days)) if days is not None else list(DirtyDay.objects.order_by("day").values_list("day", flat=True))
    )
    for first, last in _ranges(todo):
        with transaction.atomic():
            _refresh_range(first, last)
            if not explicit:
                DirtyDay.objects.filter(day__range=(first, last)).delete()
    if todo:
        _monthly_guardians(month_of(day) for day in todo)
    if Watermark.objects.filter(name=COHORTS_STALE).exists():
        cohort_sizes_refresh()
    return len(todo)


@dataclass
class RefreshResult:
    audit_rows: int = 0
    patients_changed: int = 0
    days: int = 0
    notes: list[str] = field(default_factory=list)


def metrics_refresh(*, full: bool = False) -> RefreshResult:
    """The scheduled job: derive new events from the audit trail, sync new children, refresh dirty days."""
    result = RefreshResult()
    result.audit_rows = events_derive()
    if full:
        result.patients_changed = patients_sync()
    else:
        new_children = Child.objects.exclude(
            id__in=MetricsPatient.objects.filter(child_id__isnull=False).values("child_id")
        ).values_list("id", flat=True)
        result.patients_changed = patients_sync(child_ids=list(new_children))
    result.days = rollups_refresh()
    cutoff = timezone.now() - timedelta(seconds=4 * settings.PORTAL_METRICS_WEBHOOK_WINDOW_SECONDS)
    WebhookReceipt.objects.filter(received_at__lt=cutoff).delete()
    return result


def export_record(*, actor: Any, what: str, period: str) -> None:
    """Audit an export of aggregated metrics (no PHI leaves, but exports are always recorded)."""
    audit.record(actor=actor, action=audit.Action.EXPORT, entity_type="MetricsReport", reason=f"{what}:{period}"[:60])


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
