"""Call imports: the phone system's CSV (command, admin upload) and its signed webhook.

Imports are all-or-nothing: every line is validated first and a file with any bad line is refused
whole with a report of each bad line. A call keeps only keyed hashes of its caller's phone and of
the MRN given on it; which patient it belongs to is decided by ``attribution`` against every
identity known at refresh time, and decided again when identities change.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portal import audit, refusals
from portal.errors import ApiError, Invalid
from portal.metrics.attribution import resolve_calls
from portal.metrics.common import WRITE_BATCH, mark_dirty
from portal.metrics.models import CallImportBatch, CallRecord, WebhookReceipt
from portal.metrics.population import patients_sync
from portal.metrics.topics import phone_hash, topic_for_reason
from portal.models import Child
from portal.vocabulary import Resource

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


def _started_at(raw: str, bad: Callable[[str, str], None]) -> datetime | None:
    try:
        started_at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        bad("started_at", "not an ISO 8601 date-time")
        return None
    if started_at.tzinfo is None:
        bad("started_at", "needs a UTC offset (e.g. 2025-03-01T09:30:00+00:00)")
    return started_at


def _duration(raw: str, bad: Callable[[str, str], None]) -> int:
    try:
        duration = int(raw)
    except ValueError:
        bad("duration_seconds", "not a whole number")
        return 0
    if not 0 <= duration <= 86_400:
        bad("duration_seconds", "must be between 0 and 86400")
    return duration


def _parse_row(row: dict[str, str], line: int, errors: list[LineError]) -> ParsedCall | None:
    before = len(errors)

    def bad(column: str, reason: str) -> None:
        errors.append(LineError(line, column, reason))

    call_id = row.get("call_id", "").strip()
    if not call_id:
        bad("call_id", "required")
    elif len(call_id) > 100:
        bad("call_id", "longer than 100 characters")
    started_at = _started_at(row.get("started_at", "").strip(), bad)
    duration = _duration(row.get("duration_seconds", "").strip(), bad)
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


def _header_errors(header: list[str]) -> list[LineError]:
    errors = [LineError(1, name[:60], "unknown column") for name in header if name not in CSV_COLUMNS]
    errors += [LineError(1, name, "missing column") for name in sorted(REQUIRED_COLUMNS - set(header))]
    return errors


def _read_rows(reader: csv.DictReader[str], max_rows: int) -> tuple[list[ParsedCall], list[LineError], int]:
    """Every valid call of the file, the first ``MAX_KEPT_ERRORS`` bad lines, and how many there were."""
    calls: list[ParsedCall] = []
    errors: list[LineError] = []
    total_errors = 0
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
            row_errors.append(LineError(line, "call_id", f"repeats the call id of line {first_line[parsed.call_id]}"))
        elif parsed is not None:
            first_line[parsed.call_id] = line
            calls.append(parsed)
        total_errors += len(row_errors)
        errors.extend(row_errors[: max(0, MAX_KEPT_ERRORS - len(errors))])
    return calls, errors, total_errors


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
    try:
        header = [name.strip() for name in (reader.fieldnames or [])]
        header_errors = _header_errors(header)
        if header_errors:
            raise ImportRejected(header_errors)
        reader.fieldnames = header
        calls, errors, total_errors = _read_rows(reader, max_rows)
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


def _sync_children_named_by(calls: Sequence[ParsedCall]) -> None:
    """Children named by an MRN on a call join the population (with their identities) at once."""
    indexes = sorted({call.mrn_index for call in calls if call.mrn_index})
    if indexes:
        children = list(Child.objects.filter(mrn_index__in=indexes).values_list("id", flat=True))
        if children:
            patients_sync(child_ids=children)


def _store_calls(*, actor: Any, source: str, calls: Sequence[ParsedCall], via: str) -> CallImportBatch:
    """Insert the calls not already known for ``source``; call inside a transaction."""
    _sync_children_named_by(calls)
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
            mrn_hash=call.mrn_index,
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
    mark_dirty({record.day for record in records})
    # Attributed now against the identities known now; every refresh attributes again what changed.
    resolve_calls(CallRecord.objects.filter(batch=batch))
    audit.record(
        actor=actor,
        action=audit.Action.CREATE,
        entity_type=Resource.CALL_IMPORT,
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
    refusals.refuse(entity_type=Resource.CALL_WEBHOOK, entity_id=source[:40] or None, reason=reason)
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
