"""One mapping per FHIR resource type the portal imports, in the order an import reads them (a
resource's references point to types read before it)."""

from __future__ import annotations

from interop.mapping import (
    appointments,
    care_teams,
    conditions,
    coverage,
    documents,
    medicines,
    patients,
    practitioners,
    related_persons,
    results,
    schedules,
)
from interop.mapping.base import Mapped, Mapping

MAPPINGS: dict[str, Mapping] = {
    "Patient": patients.MAPPING,
    "Practitioner": practitioners.PRACTITIONER,
    "PractitionerRole": practitioners.PRACTITIONER_ROLE,
    "Schedule": schedules.SCHEDULE,
    "Slot": schedules.SLOT,
    "RelatedPerson": related_persons.MAPPING,
    "CareTeam": care_teams.MAPPING,
    "Appointment": appointments.MAPPING,
    "MedicationRequest": medicines.MAPPING,
    "Coverage": coverage.MAPPING,
    "Condition": conditions.MAPPING,
    # A report before its results: an Observation joins the report that lists it (and its hold).
    "DiagnosticReport": results.DIAGNOSTIC_REPORT,
    "Observation": results.OBSERVATION,
    "DocumentReference": documents.MAPPING,
}
ORDER = tuple(MAPPINGS)

# Modelled elsewhere and imported later: counted, never rejected (none at present). Any other type
# the portal has no model for is counted ``unsupported``.
NOT_IMPORTED_YET: frozenset[str] = frozenset()

__all__ = ["MAPPINGS", "NOT_IMPORTED_YET", "ORDER", "Mapped", "Mapping"]
