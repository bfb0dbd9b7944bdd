"""Appointment, MedicationRequest, MedicationAdministration (a dose), Coverage, Condition and Task
(a refill request, an appointment change request)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings

from care.models import Appointment, Coverage, DoseLog, MedicationPlan, RefillRequest
from interop.models import SourceRecord
from interop.outbound.common import (
    SNOMED,
    business_identifiers,
    day,
    drop_empty,
    identifier_list,
    instant,
    meta,
    ref,
    split_identifier,
    user_ref,
)
from interop.outbound.timing import dosage
from portal.models import Child

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COVERAGE_COPAY = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
# A Condition the care team entered (not imported) has no row of its own: its id is derived from the
# child and the code, so it stays the same across reads.
CONDITION_NAMESPACE = uuid.UUID("8f4c2d0e-3b7a-5c61-9e2f-4a1d6b0c7e53")

MEDICATION_STATUSES = {
    MedicationPlan.Status.ACTIVE: "active",
    MedicationPlan.Status.ON_HOLD: "on-hold",
    MedicationPlan.Status.COMPLETED: "completed",
    MedicationPlan.Status.STOPPED: "stopped",
}
# Submitted by a family and not yet verified: draft (what the hospital has yet to accept).
COVERAGE_STATUSES = {
    Coverage.Status.ACTIVE: "active",
    Coverage.Status.PENDING: "draft",
    Coverage.Status.PENDING_START: "active",
    Coverage.Status.SUPERSEDED: "cancelled",
    Coverage.Status.REJECTED: "cancelled",
}
COPAY_CODES = {"primary_care": "gpvisit", "specialist": "spvisit", "emergency": "emergency"}
REFILL_STATUSES = {
    RefillRequest.Status.REQUESTED: "requested",
    RefillRequest.Status.APPROVED: "accepted",
    RefillRequest.Status.SENT_TO_PHARMACY: "in-progress",
    RefillRequest.Status.READY: "in-progress",
    RefillRequest.Status.PICKED_UP: "completed",
    RefillRequest.Status.DENIED: "rejected",
    RefillRequest.Status.CANCELLED: "cancelled",
}


def appointments(rows: Sequence[Appointment], *, limited: bool = False) -> list[dict[str, Any]]:
    """Needs ``department`` loaded. ``limited`` (a limited-scope guardian's export): when and with whom
    only, with the neutral place and label; never the visit type, department or preparation."""
    ehr = business_identifiers("Appointment", [row.pk for row in rows])
    out = []
    for row in rows:
        location = settings.PORTAL_NEUTRAL_LOCATION if limited else row.location
        visit_type = settings.PORTAL_NEUTRAL_VISIT_LABEL if limited else row.visit_type
        department = None if limited or row.department is None else row.department.name
        participants = [
            {"actor": ref("Patient", row.child_id), "status": "accepted"},
            {"actor": ref("Practitioner", row.clinician_id), "status": "accepted"},
            {"actor": {"display": location}, "status": "accepted"},
        ]
        out.append(
            drop_empty(
                {
                    "resourceType": "Appointment",
                    "id": str(row.pk),
                    "meta": meta(row.updated_at, confidential=row.confidential),
                    "identifier": identifier_list(ehr.get(str(row.pk))),
                    "status": row.status,
                    "serviceType": [{"text": visit_type}],
                    "specialty": [{"text": department}] if department else [],
                    "start": instant(row.start),
                    "end": instant(row.end),
                    "patientInstruction": "" if limited else row.preparation,
                    "participant": participants,
                }
            )
        )
    return out


def medication_requests(rows: Sequence[MedicationPlan]) -> list[dict[str, Any]]:
    ehr = business_identifiers("MedicationRequest", [row.pk for row in rows])
    return [
        drop_empty(
            {
                "resourceType": "MedicationRequest",
                "id": str(plan.pk),
                "meta": meta(plan.updated_at, confidential=plan.confidential),
                "identifier": identifier_list(ehr.get(str(plan.pk))),
                "status": MEDICATION_STATUSES[MedicationPlan.Status(plan.status)],
                "intent": "order",
                "medicationCodeableConcept": {"text": plan.medication},
                "subject": ref("Patient", plan.child_id),
                "authoredOn": instant(plan.created_at),
                "requester": ref("Practitioner", plan.prescriber_id),
                "dosageInstruction": [dosage(plan)],
                "dispenseRequest": drop_empty(
                    {
                        "numberOfRepeatsAllowed": plan.refills_allowed,
                        "performer": {"display": plan.pharmacy} if plan.pharmacy else None,
                    }
                ),
            }
        )
        for plan in rows
    ]


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def medication_administrations(rows: Sequence[DoseLog]) -> list[dict[str, Any]]:
    """Needs ``plan`` loaded. Doses are the portal's own records: no EHR identifier."""
    return [
        drop_empty(
            {
                "resourceType": "MedicationAdministration",
                "id": str(dose.pk),
                "meta": meta(dose.updated_at, confidential=dose.plan.confidential),
                "status": "completed" if dose.status == DoseLog.Status.GIVEN else "not-done",
                "medicationCodeableConcept": {"text": dose.plan.medication},
                "subject": ref("Patient", dose.plan.child_id),
                "effectiveDateTime": instant(dose.occurred_at),
                "performer": [{"actor": user_ref(dose.recorded_by_id)}],
                "request": ref("MedicationRequest", dose.plan_id),
                "note": [{"text": dose.note}] if dose.note else [],
                "dosage": {
                    "dose": drop_empty({"value": _number(dose.plan.dose_quantity), "unit": dose.plan.dose_unit})
                },
            }
        )
        for dose in rows
    ]


def coverages(rows: Sequence[Coverage]) -> list[dict[str, Any]]:
    ehr = business_identifiers("Coverage", [row.pk for row in rows])
    out = []
    for row in rows:
        classes = []
        if row.plan_name:
            classes.append(
                {
                    "type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]},
                    "value": row.plan_name,
                    "name": row.plan_name,
                }
            )
        if row.group_number:
            classes.append(
                {"type": {"coding": [{"system": COVERAGE_CLASS, "code": "group"}]}, "value": row.group_number}
            )
        copays = [
            {
                "type": {"coding": [{"system": COVERAGE_COPAY, "code": COPAY_CODES[name]}]},
                "valueMoney": {"value": _number(Decimal(amount))},
            }
            for name, amount in sorted((row.copays or {}).items())
            if name in COPAY_CODES
        ]
        out.append(
            drop_empty(
                {
                    "resourceType": "Coverage",
                    "id": str(row.pk),
                    "meta": meta(row.updated_at),
                    "identifier": identifier_list(ehr.get(str(row.pk))),
                    "status": COVERAGE_STATUSES[Coverage.Status(row.status)],
                    "subscriber": {"display": row.subscriber_name} if row.subscriber_name else None,
                    "subscriberId": row.member_id,
                    "beneficiary": ref("Patient", row.child_id),
                    "relationship": {
                        "coding": [{"system": SUBSCRIBER_RELATIONSHIP, "code": row.subscriber_relationship}]
                    },
                    "period": drop_empty(
                        {
                            "start": day(row.period_start) if row.period_start else None,
                            "end": day(row.period_end) if row.period_end else None,
                        }
                    ),
                    "payor": [{"display": row.payer}],
                    "class": classes,
                    "costToBeneficiary": copays,
                }
            )
        )
    return out


def _condition(ident: str, child_id: Any, code: str, present: bool, updated: Any) -> dict[str, Any]:
    status = "active" if present else "resolved"
    return {
        "resourceType": "Condition",
        "id": ident,
        "meta": meta(updated),
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": status}]},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": ref("Patient", child_id),
    }


def conditions(rows: Sequence[SourceRecord]) -> list[dict[str, Any]]:
    """Imported Conditions, from their records (the code and whether it is present are kept there;
    the child's row keeps the codes alone)."""
    out = []
    for record in rows:
        item = _condition(
            str(record.pk),
            record.child_id,
            str(record.state.get("code") or ""),
            bool(record.state.get("present")),
            record.updated_at,
        )
        pair = None if record.identifier_is_logical_id else split_identifier(record.identifier)
        if pair is not None:
            item["identifier"] = identifier_list(pair)
        out.append(item)
    return out


def entered_conditions(child: Child, imported: Sequence[SourceRecord]) -> list[dict[str, Any]]:
    """The child's codes that no imported Condition carries (entered in the portal), each a Condition."""
    held = {str(record.state.get("code")) for record in imported if record.state.get("present")}
    return [
        _condition(
            str(uuid.uuid5(CONDITION_NAMESPACE, f"{child.pk}|{code}")), child.pk, str(code), True, child.updated_at
        )
        for code in child.conditions or []
        if str(code) not in held
    ]


def refill_tasks(rows: Sequence[RefillRequest]) -> list[dict[str, Any]]:
    """Needs ``plan`` loaded. A refill request is a Task to fulfil its MedicationRequest."""
    return [
        drop_empty(
            {
                "resourceType": "Task",
                "id": str(row.pk),
                "meta": meta(row.updated_at, confidential=row.plan.confidential),
                "status": REFILL_STATUSES[RefillRequest.Status(row.status)],
                "businessStatus": {"text": row.status},
                "intent": "order",
                "code": {"coding": [{"system": TASK_CODE, "code": "fulfill"}], "text": "refill"},
                "focus": ref("MedicationRequest", row.plan_id),
                "for": ref("Patient", row.child_id),
                "authoredOn": instant(row.requested_at),
                "lastModified": instant(row.updated_at),
                "requester": user_ref(row.requested_by_id),
                "statusReason": {"text": row.denial_reason} if row.denial_reason else None,
                "note": [{"text": row.note}] if row.note else [],
                "restriction": {"recipient": [{"display": row.pharmacy}]} if row.pharmacy else None,
            }
        )
        for row in rows
    ]


def change_request_tasks(rows: Sequence[Appointment]) -> list[dict[str, Any]]:
    """A family's request to cancel or move a visit: a Task (abort or change) on the Appointment. Its
    id is the appointment's (an appointment holds one open request at a time)."""
    return [
        drop_empty(
            {
                "resourceType": "Task",
                "id": str(row.pk),
                "meta": meta(row.change_requested_at or row.updated_at, confidential=row.confidential),
                "status": "requested",
                "intent": "proposal",
                "code": {
                    "coding": [{"system": TASK_CODE, "code": "abort" if row.change_request == "cancel" else "change"}],
                    "text": row.change_request,
                },
                "focus": ref("Appointment", row.pk),
                "for": ref("Patient", row.child_id),
                "authoredOn": instant(row.change_requested_at) if row.change_requested_at else None,
                "requester": user_ref(row.change_requested_by_id) if row.change_requested_by_id else None,
                "note": [{"text": row.change_note}] if row.change_note else [],
            }
        )
        for row in rows
    ]
