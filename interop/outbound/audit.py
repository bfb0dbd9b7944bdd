"""AuditEvent: an audit row as FHIR, with nothing the row does not hold (entity types and ids, the
actor's account id, the outcome and a machine reason; never a value)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interop.outbound.common import drop_empty, instant, meta, ref, user_ref
from portal.models import Action, AuditEvent, Outcome
from portal.vocabulary import Resource

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
FHIR_TYPES = frozenset(
    {
        "Appointment", "AuditEvent", "Binary", "CareTeam", "Communication", "Condition", "Coverage",
        "DiagnosticReport", "DocumentReference", "Group", "MedicationAdministration", "MedicationRequest",
        "Observation", "Patient", "Person", "Practitioner", "PractitionerRole", "RelatedPerson", "Schedule", "Task",
    }
)  # fmt: skip
# FHIR AuditEvent.action: C R U D E (execute: everything that is not a create, read, update or delete).
ACTIONS = {Action.CREATE: "C", Action.READ: "R", Action.UPDATE: "U", Action.DELETE: "D", Action.EXPORT: "R"}
SUBTYPES = {
    Action.LOGIN: ("110122", "Login"),
    Action.LOGOUT: ("110123", "Logout"),
    Action.EXPORT: ("110106", "Export"),
}
DCM = "http://dicom.nema.org/resources/ontology/DCM"
# FHIR AuditEvent.outcome: 0 success, 4 minor failure (a refusal), 8 serious failure.
OUTCOMES = {Outcome.SUCCESS: "0", Outcome.DENIED: "4", Outcome.FAILURE: "8"}
OBSERVER = {"display": "family care portal"}


def _entities(row: AuditEvent) -> list[dict[str, Any]]:
    out = []
    if row.entity_id:
        what: dict[str, Any]
        if row.entity_type in FHIR_TYPES:
            what = ref(row.entity_type, row.entity_id)
        else:
            what = {"identifier": {"value": row.entity_id}, "display": row.entity_type}
        out.append({"what": what, "type": {"code": row.entity_type}})
    elif row.entity_type:
        out.append({"type": {"code": row.entity_type}})
    if row.child_id and not (row.entity_type == Resource.PATIENT and row.entity_id == str(row.child_id)):
        out.append(
            {"what": ref("Patient", row.child_id), "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}
        )
    return out


def audit_events(rows: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        agent = drop_empty(
            {
                "who": user_ref(row.actor_id) if row.actor_id else {"display": "anonymous"},
                "requestor": True,
                "network": {"address": row.client_address, "type": "2"} if row.client_address else None,
            }
        )
        agents = [agent]
        if row.on_behalf_of_id:
            agents.append({"who": user_ref(row.on_behalf_of_id), "requestor": False})
        subtype = SUBTYPES.get(Action(row.action)) if row.action in Action.values else None
        out.append(
            drop_empty(
                {
                    "resourceType": "AuditEvent",
                    "id": str(row.id),
                    "meta": meta(row.recorded_at),
                    "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
                    "subtype": [{"system": DCM, "code": subtype[0], "display": subtype[1]}] if subtype else [],
                    "action": ACTIONS.get(Action(row.action), "E") if row.action in Action.values else "E",
                    "recorded": instant(row.recorded_at),
                    "outcome": OUTCOMES.get(Outcome(row.outcome), "8") if row.outcome in Outcome.values else "8",
                    "outcomeDesc": row.reason,
                    "agent": agents,
                    "source": {"observer": OBSERVER},
                    "entity": _entities(row),
                }
            )
        )
    return out
