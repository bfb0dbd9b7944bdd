"""Portal rows → FHIR R4 resources (plain dicts that validate with ``fhir.resources``' R4B models).

Each resource type reads from one or more ``Source``s: the rows (a queryset with what rendering needs
loaded), the column that is the resource's ``meta.lastUpdated`` and the first key of its paging
order (the second is ``id``), the path to the child's id (for ``patient=``), and the function that
renders a page of rows with a fixed number of queries. Some types are served only when the hospital
turns them on (``OPTIONAL``: Communication, by ``PORTAL_FHIR_COMMUNICATION``); ``served`` says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from care.models import (
    Appointment,
    Coverage,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    ResultReport,
    TestResult,
    VisitSummary,
)
from interop.models import SourceRecord
from interop.outbound import audit, care, messages, people, results
from messaging import selectors as messaging
from portal.models import AuditEvent, CareTeamMembership, Child, DepartmentMembership, GuardianLink, User

Render = Callable[[Sequence[Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Source:
    rows: Callable[[], QuerySet[Any]]
    updated: str
    render: Render
    patient: str | None = None
    # The column a resource's ``id`` is (AuditEvent's primary key is its sequence number).
    id_field: str = "pk"


def _practitioners() -> QuerySet[User]:
    """Accounts that work in a department or have sat on a care team: the clinicians."""
    return User.objects.filter(
        Q(Exists(DepartmentMembership.objects.filter(clinician=OuterRef("pk"))))
        | Q(Exists(CareTeamMembership.objects.filter(clinician=OuterRef("pk"))))
    )


def _care_teams() -> QuerySet[Child]:
    return Child.objects.filter(Exists(CareTeamMembership.objects.filter(child=OuterRef("pk"))))


def _change_requests() -> QuerySet[Appointment]:
    return Appointment.objects.exclude(change_request="").filter(change_requested_at__isnull=False)


def _summaries_without_pdf(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return results.document_references(rows, with_pdf=False)


def _communications_with_data(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return messages.communications(rows, with_data=True)


SOURCES: dict[str, tuple[Source, ...]] = {
    "Patient": (Source(lambda: Child.objects.all(), "updated_at", people.patients, patient="pk"),),
    "RelatedPerson": (
        Source(
            lambda: GuardianLink.objects.select_related("guardian", "invitation"),
            "updated_at",
            people.related_persons,
            patient="child_id",
        ),
    ),
    "Practitioner": (Source(_practitioners, "date_joined", people.practitioners),),
    "CareTeam": (Source(_care_teams, "created_at", people.care_teams, patient="pk"),),
    "Appointment": (
        Source(
            lambda: Appointment.objects.select_related("department"),
            "updated_at",
            care.appointments,
            patient="child_id",
        ),
    ),
    "MedicationRequest": (
        Source(lambda: MedicationPlan.objects.all(), "updated_at", care.medication_requests, patient="child_id"),
    ),
    "MedicationAdministration": (
        Source(
            lambda: DoseLog.objects.select_related("plan"),
            "updated_at",
            care.medication_administrations,
            patient="plan__child_id",
        ),
    ),
    "Coverage": (Source(lambda: Coverage.objects.all(), "updated_at", care.coverages, patient="child_id"),),
    "Condition": (
        Source(
            lambda: SourceRecord.objects.filter(resource_type="Condition", deleted=False),
            "updated_at",
            care.conditions,
            patient="child_id",
        ),
    ),
    "Observation": (Source(lambda: TestResult.objects.all(), "updated_at", results.observations, patient="child_id"),),
    "DiagnosticReport": (
        Source(lambda: ResultReport.objects.all(), "updated_at", results.diagnostic_reports, patient="child_id"),
    ),
    "DocumentReference": (
        Source(lambda: VisitSummary.objects.defer("pdf"), "updated_at", _summaries_without_pdf, patient="child_id"),
    ),
    "Task": (
        Source(
            lambda: RefillRequest.objects.select_related("plan"), "updated_at", care.refill_tasks, patient="child_id"
        ),
        Source(_change_requests, "change_requested_at", care.change_request_tasks, patient="child_id"),
    ),
    "AuditEvent": (
        Source(lambda: AuditEvent.objects.all(), "recorded_at", audit.audit_events, patient="child_id", id_field="id"),
    ),
    # A message is never edited: its creation is its last change.
    "Communication": (
        Source(messaging.messages_with_thread, "created_at", messages.communications, patient="thread__child_id"),
    ),
}

# A read of one DocumentReference carries its PDF, of one Communication its attachments' bytes.
READ_SOURCES: dict[str, tuple[Source, ...]] = {
    **SOURCES,
    "DocumentReference": (
        Source(lambda: VisitSummary.objects.all(), "updated_at", results.document_references, patient="child_id"),
    ),
    "Communication": (
        Source(messaging.messages_with_thread, "created_at", _communications_with_data, patient="thread__child_id"),
    ),
}

# Types the hospital turns on, by the setting that does.
OPTIONAL: dict[str, str] = {"Communication": "PORTAL_FHIR_COMMUNICATION"}


def served(resource_type: str) -> bool:
    """Whether the type is rendered here now: every type of ``SOURCES`` but an optional one left off."""
    if resource_type not in SOURCES:
        return False
    setting = OPTIONAL.get(resource_type)
    return setting is None or bool(getattr(settings, setting, False))


__all__ = ["OPTIONAL", "READ_SOURCES", "SOURCES", "Source", "served"]
