"""Self-service events (and message response times) derived from the audit trail, incrementally.

The audit trail is read in ledger order (``LedgerLeaf.index``, see ``portal.ledger``) after a
watermark, the number of leaves already read; each batch commits with its watermark. Only sealed
rows are read (the job seals first): ``AuditEvent.seq`` follows insert order, not commit order, so
a cursor on it could pass a row that commits late, while a leaf is never added behind the tail.
Rows about enrolment (``POPULATION_ENTITY_TYPES``: links are audited as ``RelatedPerson``)
re-sync their child's metrics patient. A guardian's message counts under its thread's topic.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal import audit, ledger
from portal.metrics.common import WRITE_BATCH, days_between, mark_dirty
from portal.metrics.models import MessageResponse, MetricsPatient, PendingMessage, SelfServiceEvent, Watermark
from portal.metrics.population import patients_sync
from portal.metrics.topics import (
    MESSAGE_ENTITY_TYPE,
    POPULATION_ENTITY_TYPES,
    SELF_SERVICE_ACTIONS,
    guardian_hash,
    metrics_topic_of_thread,
    phone_hash,
)
from portal.models import GuardianLink, LedgerLeaf, User

CALLBACK_WINDOW = timedelta(days=7)
AUDIT_WATERMARK = "audit_events"


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
    ledger.seal()
    read = 0
    with_messages = messaging_available()
    interesting = {entity for entity, _ in SELF_SERVICE_ACTIONS} | POPULATION_ENTITY_TYPES
    while limit is None or read < limit:
        with transaction.atomic():
            mark, _ = Watermark.objects.select_for_update().get_or_create(name=AUDIT_WATERMARK)
            rows = list(
                LedgerLeaf.objects.filter(index__gte=mark.value)
                .order_by("index")
                .values(
                    "index",
                    seq=F("event__seq"),
                    recorded_at=F("event__recorded_at"),
                    actor_id=F("event__actor_id"),
                    action=F("event__action"),
                    entity_type=F("event__entity_type"),
                    entity_id=F("event__entity_id"),
                    child_id=F("event__child_id"),
                    outcome=F("event__outcome"),
                )[:batch_size]
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
            mark.value = rows[-1]["index"] + 1
            mark.updated_at = timezone.now()
            mark.save(update_fields=["value", "updated_at"])
        read += len(rows)
    return read


def _guardian_spans(
    actor_ids: set[uuid.UUID], child_ids: set[uuid.UUID]
) -> dict[tuple[uuid.UUID, uuid.UUID], list[tuple[datetime, datetime | None]]]:
    spans: dict[tuple[uuid.UUID, uuid.UUID], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for guardian_id, child_id, valid_from, valid_until, revoked_at in (
        GuardianLink.objects.filter(guardian_id__in=actor_ids, child_id__in=child_ids)
        .exclude(status=GuardianLink.Status.INVITED)
        .values_list("guardian_id", "child_id", "valid_from", "valid_until", "revoked_at")
    ):
        ends = [moment for moment in (valid_until, revoked_at) if moment is not None]
        spans[(guardian_id, child_id)].append((valid_from, min(ends) if ends else None))
    return spans


def _message_topics(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Audit entity id (a message or a thread) → the metrics topic of its thread."""
    if not messaging_available():
        return {}
    ids = {str(row["entity_id"]) for row in rows if row["entity_type"] == MESSAGE_ENTITY_TYPE and row["entity_id"]}
    valid = []
    for value in ids:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue
    message = apps.get_model("messaging", "Message")
    thread = apps.get_model("messaging", "Thread")
    topics = {str(pk): topic for pk, topic in message.objects.filter(id__in=valid).values_list("id", "thread__topic")}
    topics.update({str(pk): topic for pk, topic in thread.objects.filter(id__in=valid).values_list("id", "topic")})
    return {key: metrics_topic_of_thread(topic) for key, topic in topics.items()}


class _Batch:
    """The state of deriving one batch of audit rows."""

    def __init__(self, rows: list[dict[str, Any]], with_messages: bool) -> None:
        self.with_messages = with_messages
        child_ids = {row["child_id"] for row in rows}
        self.patients = dict(MetricsPatient.objects.filter(child_id__in=child_ids).values_list("child_id", "id"))
        actor_ids = {row["actor_id"] for row in rows if row["actor_id"]}
        self.spans = _guardian_spans(actor_ids, child_ids)
        self.phones = {
            uid: phone_hash(phone) if phone else ""
            for uid, phone in User.objects.filter(id__in=actor_ids).values_list("id", "phone")
        }
        self.topics = _message_topics(rows)
        self.events: list[SelfServiceEvent] = []
        self.responses: list[MessageResponse] = []
        self.pending = {
            row.patient_id: row for row in PendingMessage.objects.filter(patient_id__in=self.patients.values())
        }
        self.dirty: set[date] = set()

    def is_guardian(self, row: dict[str, Any]) -> bool:
        actor_id = row["actor_id"]
        spans = self.spans.get((actor_id, row["child_id"]), [])
        return actor_id is not None and _is_guardian(spans, row["recorded_at"])

    def self_service(self, row: dict[str, Any]) -> None:
        at: datetime = row["recorded_at"]
        topic, kind = SELF_SERVICE_ACTIONS[(row["entity_type"], row["action"])]
        if row["entity_type"] == MESSAGE_ENTITY_TYPE:
            topic = self.topics.get(str(row["entity_id"]), topic)
        self.events.append(
            SelfServiceEvent(
                occurred_at=at,
                day=at.astimezone(UTC).date(),
                topic=topic,
                kind=kind,
                family_hash=self.phones.get(row["actor_id"], ""),
                guardian_hash=guardian_hash(row["actor_id"]),
                patient_id=self.patients.get(row["child_id"]),
                audit_seq=row["seq"],
            )
        )
        # A call in the next 7 days may now count as a call-back.
        self.dirty.update(days_between(at.date(), at.date() + CALLBACK_WINDOW))

    def message(self, row: dict[str, Any], guardian: bool) -> None:
        patient_id = self.patients.get(row["child_id"])
        at: datetime = row["recorded_at"]
        if patient_id is None:
            return
        if guardian:
            if patient_id not in self.pending:
                self.pending[patient_id] = PendingMessage(patient_id=patient_id, since=at)
        elif row["actor_id"] is not None and patient_id in self.pending:
            opened = self.pending.pop(patient_id)
            seconds = max(0, int((at - opened.since).total_seconds()))
            self.responses.append(
                MessageResponse(day=at.date(), patient_id=patient_id, seconds=seconds, audit_seq=row["seq"])
            )
            self.dirty.add(at.date())

    def save(self) -> None:
        SelfServiceEvent.objects.bulk_create(self.events, batch_size=WRITE_BATCH, ignore_conflicts=True)
        if self.with_messages:
            MessageResponse.objects.bulk_create(self.responses, ignore_conflicts=True)
            PendingMessage.objects.filter(patient_id__in=self.patients.values()).exclude(
                patient_id__in=self.pending
            ).delete()
            PendingMessage.objects.bulk_create(
                [row for row in self.pending.values() if row._state.adding], ignore_conflicts=True
            )
        mark_dirty(self.dirty)


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
    batch = _Batch(actions, with_messages)
    for row in actions:
        guardian = batch.is_guardian(row)
        if guardian and (row["entity_type"], row["action"]) in SELF_SERVICE_ACTIONS:
            batch.self_service(row)
        if with_messages and row["entity_type"] == MESSAGE_ENTITY_TYPE:
            batch.message(row, guardian)
    batch.save()
