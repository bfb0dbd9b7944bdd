"""One row of every kind the FHIR output renders, for the personas' children."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from care.models import (
    Appointment,
    Coverage,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    ResultComment,
    TestResult,
    VisitSummary,
)
from care.services import results
from interop.models import SourceRecord
from messaging.models import Attachment, Message, Thread
from portal import audit
from portal.vocabulary import Resource
from tests import care_data
from tests.care import results_data
from tests.conftest import World


@dataclass
class Rows:
    appointment: Appointment
    change_request: Appointment
    plan: MedicationPlan
    as_needed: MedicationPlan
    dose: DoseLog
    refill: RefillRequest
    coverage: Coverage
    draft_coverage: Coverage
    result: TestResult
    summary: VisitSummary
    thread: Thread | None = None
    messages: list[Message] = field(default_factory=list)
    attachment: Attachment | None = None


FAMILY_BODY = "Ada has had a rash since Tuesday"
REPLY_BODY = "Please send a photo of the rash"
ATTACHMENT_BYTES = b"%PDF-1.4\n%%EOF\n"


def conversation(world: World, *, confidential: bool = False, body: str = FAMILY_BODY) -> tuple[Thread, list[Message]]:
    """An urgent thread about Ada held by the clinician: the guardian's question (with a PDF), the
    clinician's answer and an automatic reply."""
    now = timezone.now()
    thread = Thread.objects.create(
        child=world.ada,
        subject="Rash question",
        topic="medical",
        priority="urgent",
        confidential=confidential,
        created_by=world.guardian,
        pool=world.department,
        assignee=world.clinician,
        message_count=3,
    )
    family = Message.objects.create(
        thread=thread, author=world.guardian, kind="family", body=body, position=1, created_at=now
    )
    answer = Message.objects.create(
        thread=thread,
        author=world.clinician,
        kind="care_team",
        body=REPLY_BODY,
        position=2,
        created_at=now + timedelta(seconds=1),
    )
    automatic = Message.objects.create(
        thread=thread,
        author=None,
        kind="automatic",
        automatic_reason="after_hours",
        body="We answer within one business day.",
        position=3,
        created_at=now + timedelta(seconds=2),
    )
    return thread, [family, answer, automatic]


def attach(world: World, message: Message) -> Attachment:
    attachment = Attachment(
        child=world.ada,
        message=message,
        uploaded_by=world.guardian,
        content_type="application/pdf",
        size=len(ATTACHMENT_BYTES),
        sha256="0" * 64,
        filename="rash-notes.pdf",
    )
    attachment.content = base64.b64encode(ATTACHMENT_BYTES).decode()
    attachment.save(force_insert=True)
    return attachment


def build(world: World) -> Rows:
    now = timezone.now()
    appointment = care_data.appointment(world.ada, world.clinician, department=world.department)
    change_request = care_data.appointment(
        world.ada,
        world.clinician,
        hours_from_now=96,
        change_request="reschedule",
        change_note="Mornings are better",
        change_requested_at=now,
        change_requested_by=world.guardian,
    )
    plan = care_data.plan(world.ada, world.clinician, instructions="With food")
    as_needed = care_data.plan(
        world.ada,
        world.clinician,
        medication="Ibuprofen",
        schedule_kind="as_needed",
        times_of_day=[],
        min_interval_minutes=360,
        max_per_day=4,
        dose_unit="mg",
    )
    dose = DoseLog.objects.create(
        plan=plan,
        client_id=uuid.uuid4(),
        occurred_at=now - timedelta(hours=1),
        status="given",
        recorded_by=world.guardian,
    )
    refill = care_data.refill(plan, world.guardian, note="Running low")
    coverage = care_data.coverage(world.ada, world.clinician, copays={"primary_care": "20.00", "specialist": "40.50"})
    draft = care_data.coverage(world.ada, world.guardian, status="pending", member_id="NEW-1")
    report, _ = results.report_record(
        actor=None,
        child=world.ada,
        source_id="http://lab.example.org/reports|R-1",
        name="Basic panel",
        conclusion="Fine",
    )
    result = results_data.result(world.ada, world.clinician, report=report)
    results_data.result(world.ada, value_quantity=None, value_text="negative", range_low=None, range_high=None)
    ResultComment.objects.create(result=result, author=world.clinician, body=results_data.COMMENT)
    summary = results_data.summary(world.ada, world.clinician)
    VisitSummary.objects.filter(pk=summary.pk).update(appointment=appointment)
    summary.refresh_from_db()
    audit.record(
        actor=world.guardian,
        action=audit.Action.READ,
        entity_type=Resource.PATIENT,
        entity_id=world.ada.pk,
        child_id=world.ada.pk,
    )
    audit.deny(actor=world.stranger, entity_type=Resource.PATIENT, entity_id=str(world.ada.pk), reason="no_view_access")
    SourceRecord.objects.create(
        resource_type="Condition",
        resource_id=f"cond-{uuid.uuid4()}",
        identifier=f"Condition|http://ehr.example.org/conditions|C-{uuid.uuid4()}",
        content_hash="0" * 64,
        target_type="portal.Child",
        targets=[str(world.ada.pk)],
        state={"code": "46635009", "present": True},
        child_id=world.ada.pk,
    )
    thread, messages = conversation(world)
    attachment = attach(world, messages[0])
    return Rows(
        appointment,
        change_request,
        plan,
        as_needed,
        dose,
        refill,
        coverage,
        draft,
        result,
        summary,
        thread,
        messages,
        attachment,
    )
