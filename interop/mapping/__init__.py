"""One mapping per FHIR resource type the portal imports, in the order an import reads them (a
resource's references point to types read before it)."""

from __future__ import annotations

from interop.mapping import (
    appointments,
    care_teams,
    conditions,
    coverage,
    medicines,
    patients,
    practitioners,
    related_persons,
)
from interop.mapping.base import Mapped, Mapping

MAPPINGS: dict[str, Mapping] = {
    "Patient": patients.MAPPING,
    "Practitioner": practitioners.PRACTITIONER,
    "PractitionerRole": practitioners.PRACTITIONER_ROLE,
    "RelatedPerson": related_persons.MAPPING,
    "CareTeam": care_teams.MAPPING,
    "Appointment": appointments.MAPPING,
    "MedicationRequest": medicines.MAPPING,
    "Coverage": coverage.MAPPING,
    "Condition": conditions.MAPPING,
}
ORDER = tuple(MAPPINGS)

# Modelled elsewhere and imported later: counted, never rejected.
NOT_IMPORTED_YET = frozenset({"Observation", "DiagnosticReport", "DocumentReference"})
# No portal model to hold them: clinic hours are weekly patterns (``care.models.WorkingHours``) and
# open slots are derived from them, while a FHIR Schedule carries no hours and Slots are instances.
UNSUPPORTED = frozenset({"Schedule", "Slot"})

__all__ = ["MAPPINGS", "NOT_IMPORTED_YET", "ORDER", "UNSUPPORTED", "Mapped", "Mapping"]
