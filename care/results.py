"""Typed results the care selectors hand to the edge (which shapes them as JSON): a record together
with what was worked out about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from care import dosing, scheduling
from care.models import Coverage, MedicationPlan
from portal.models import CareTeamMembership


@dataclass(frozen=True)
class ClinicianSchedule:
    """A care-team member's next two weeks: clinic hours, the next open slots, on call or in clinic now."""

    member: CareTeamMembership
    on_call_now: bool
    in_clinic_now: bool
    clinic_hours: list[scheduling.Block]
    next_open_slots: list[scheduling.Slot]


@dataclass(frozen=True)
class PlanStatus:
    """A plan with what is due: the next scheduled dose, the doses missed in the last 24 hours, when an
    as-needed dose is next allowed, and adherence over 7 and 30 days."""

    plan: MedicationPlan
    next_due: datetime | None
    overdue: list[datetime]
    next_allowed_at: datetime | None
    adherence: list[dosing.Adherence]


@dataclass(frozen=True)
class CoverageAsOf:
    """A coverage row with its status as of the child's today (see ``coverage_statuses``)."""

    coverage: Coverage
    status: str
