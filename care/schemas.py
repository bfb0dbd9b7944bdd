"""Care API schemas. Inputs forbid unknown fields (``portal.schemas.In``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field, field_validator

from care.models import Appointment, Coverage, DoseLog, MedicationPlan, RefillRequest, TestResult, VisitSummary
from portal.limits import DAY, YEAR, window
from portal.pagination import PageIn
from portal.schemas import CareRole, In, OneOf, Out, Scope

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"

# The window of each date field (see portal/limits.py and the README's input limits).
AppointmentTime = Annotated[datetime, window(past=YEAR, future=5 * YEAR)]
PlanStart = Annotated[datetime, window(past=5 * YEAR, future=2 * YEAR)]
PlanEnd = Annotated[datetime, window(past=5 * YEAR, future=10 * YEAR)]
DoseTime = Annotated[datetime, window(past=90 * DAY, future=DAY)]
CoverageStart = Annotated[date, window(past=10 * YEAR, future=2 * YEAR)]
CoverageEnd = Annotated[date, window(past=10 * YEAR, future=10 * YEAR)]


class SlotOut(Out):
    location: str
    start: datetime
    end: datetime


class ClinicianScheduleOut(Schema):
    clinician_id: uuid.UUID
    clinician_name: str
    role: CareRole
    department: str | None
    on_call_now: bool
    in_clinic_now: bool
    clinic_hours: list[SlotOut]
    next_open_slots: list[SlotOut]


class AppointmentOut(Out):
    id: uuid.UUID
    child_id: uuid.UUID
    clinician_id: uuid.UUID
    clinician_name: str
    department: str | None
    location: str
    start: datetime
    end: datetime
    status: Annotated[str, OneOf(Appointment.Status)]
    visit_type: str
    preparation: str
    guardian_confirmed_at: datetime | None
    change_request: Annotated[str, OneOf(Appointment.ChangeRequest)] | None
    change_note: str | None
    limited_view: bool = Field(
        False,
        description="True for a limited-scope guardian: a neutral place and label, no visit type, department "
        "or preparation notes (they could reveal the diagnosis).",
    )


class AppointmentIn(In):
    clinician_id: uuid.UUID
    start: AppointmentTime
    end: AppointmentTime
    location: str = Field(min_length=1, max_length=120)
    visit_type: str = Field(min_length=1, max_length=80)
    department_id: uuid.UUID | None = None
    preparation: str = Field("", max_length=4000)
    status: Literal["proposed", "booked"] = "booked"
    confidential: bool = False


class AppointmentUpdateIn(In):
    status: Literal["booked", "arrived", "fulfilled", "cancelled", "noshow"] | None = None
    start: AppointmentTime | None = None
    end: AppointmentTime | None = None
    location: str | None = Field(None, min_length=1, max_length=120)
    preparation: str | None = Field(None, max_length=4000)
    clear_change_request: bool = False


class ChangeRequestIn(In):
    action: Literal["cancel", "reschedule"]
    note: str = Field("", max_length=1000, description="For a new time: when would suit you.")


class PlanIn(In):
    medication: str = Field(min_length=1, max_length=200)
    strength: str = Field("", max_length=40)
    form: str = Field("", max_length=40)
    dose_quantity: Decimal = Field(gt=0, max_digits=8, decimal_places=3)
    dose_unit: str = Field(min_length=1, max_length=20)
    route: str = Field("oral", max_length=40)
    schedule_kind: Literal["fixed_times", "every_n_hours", "weekdays", "as_needed"]
    times_of_day: list[str] = Field(default_factory=list, max_length=12)
    weekdays: list[int] = Field(default_factory=list, max_length=7)
    interval_hours: int | None = Field(None, ge=1, le=72)
    min_interval_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    max_per_day: int | None = Field(None, ge=1, le=48)
    start: PlanStart
    end: PlanEnd | None = None
    instructions: str = Field("", max_length=4000)
    refills_allowed: int = Field(0, ge=0, le=12)
    pharmacy: str = Field("", max_length=120)
    confidential: bool = False

    @field_validator("times_of_day")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        import re

        for item in value:
            if not re.match(HHMM, item):
                raise ValueError("times are HH:MM, 24-hour")
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day < 0 or day > 6 for day in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return value


class AdherenceOut(Schema):
    days: int
    scheduled: int
    given: int
    skipped: int
    missed: int
    percent: float | None


class PlanOut(Schema):
    id: uuid.UUID
    medication: str
    strength: str
    form: str
    dose: str
    route: str
    schedule_kind: Annotated[str, OneOf(MedicationPlan.ScheduleKind)]
    times_of_day: list[str]
    weekdays: list[int]
    interval_hours: int | None
    min_interval_minutes: int | None
    max_per_day: int | None
    start: datetime
    end: datetime | None
    instructions: str
    prescriber_name: str
    refills_allowed: int
    refills_remaining: int
    pharmacy: str
    status: Annotated[str, OneOf(MedicationPlan.Status)]
    next_due: datetime | None
    overdue: list[datetime]
    next_allowed_at: datetime | None = Field(None, description="As-needed plans: the earliest next dose.")
    adherence: list[AdherenceOut]


class DoseIn(In):
    client_id: uuid.UUID = Field(description="Chosen by the client; a retry with the same id records nothing new.")
    status: Literal["given", "skipped"]
    occurred_at: DoseTime | None = None
    scheduled_for: DoseTime | None = Field(None, description="The scheduled dose this answers (not for as-needed).")
    note: str = Field("", max_length=1000)


class DoseOut(Schema):
    id: uuid.UUID
    plan_id: uuid.UUID
    client_id: uuid.UUID
    status: Annotated[str, OneOf(DoseLog.Status)]
    occurred_at: datetime
    scheduled_for: datetime | None
    note: str
    recorded_by_name: str


class RefillIn(In):
    pharmacy: str = Field("", max_length=120)
    note: str = Field("", max_length=1000)


class RefillTransitionIn(In):
    to: Literal["approved", "denied", "sent_to_pharmacy", "ready", "picked_up", "cancelled"]
    reason: str = Field("", max_length=500)


class RefillOut(Out):
    id: uuid.UUID
    plan_id: uuid.UUID
    child_id: uuid.UUID
    status: Annotated[str, OneOf(RefillRequest.Status)]
    pharmacy: str
    note: str
    denial_reason: str | None
    requested_at: datetime
    updated_at: datetime


class RefillQueueOut(RefillOut):
    child_name: str
    medication: str
    refills_remaining: int


class CoverageIn(In):
    payer: str = Field(min_length=1, max_length=120)
    plan_name: str = Field("", max_length=120)
    member_id: str = Field(min_length=1, max_length=60)
    group_number: str = Field("", max_length=60)
    subscriber_name: str = Field("", max_length=150)
    subscriber_relationship: Literal["parent", "self", "spouse", "other"] = "parent"
    period_start: CoverageStart | None = None
    period_end: CoverageEnd | None = None
    copays: dict[str, Decimal] = Field(default_factory=dict, max_length=10)


class CoverageVerifyIn(In):
    accept: bool
    reason: str = Field("", max_length=200)


class CoverageOut(Schema):
    id: uuid.UUID
    status: Annotated[str, OneOf(Coverage.Status)]
    payer: str
    plan_name: str
    member_id: str
    group_number: str
    subscriber_name: str
    subscriber_relationship: str = Field(
        description="FHIR subscriber-relationship code (parent, self, spouse, child, common, injured, other)."
    )
    period_start: date | None
    period_end: date | None
    copays: dict[str, Any]
    submitted_at: datetime
    verified_at: datetime | None
    rejection_reason: str | None


class TodayChildOut(Out):
    id: uuid.UUID
    name: str
    scope: Scope


class TodayDoseOut(Out):
    plan_id: uuid.UUID
    medication: str
    dose: str
    at: datetime
    overdue: bool
    as_needed: bool


class TodayNewItemOut(Out):
    kind: Literal["result", "visit_summary"]
    id: uuid.UUID
    name: str = Field(description="The result's plain-language name, or the visit summary's title.")
    date: datetime = Field(description="When the sample or study was taken, or the visit's date.")
    released_at: datetime = Field(description="When it was released to the family.")
    interpretation: Annotated[str, OneOf(TestResult.Interpretation)] | None = Field(
        description="A result's flag; null for a visit summary or a result without one."
    )


class TodayNewResultsOut(Out):
    results: int = Field(description="Results released in the last 30 days that this guardian has not seen.")
    visit_summaries: int = Field(description="Visit summaries, likewise.")
    items: list[TodayNewItemOut] = Field(description="The newest five of them, by release.")


class TodayEntryOut(Out):
    child: TodayChildOut
    appointments: list[AppointmentOut]
    doses: list[TodayDoseOut] | None = Field(
        description="Doses due in the next 24 hours and overdue ones; null for limited scope."
    )
    open_refills: list[RefillOut] | None
    new_results: TodayNewResultsOut | None = Field(
        description="Results and visit summaries released since this guardian last listed or opened them; "
        "null for limited scope."
    )
    unread_messages: int


class TodayOut(Out):
    generated_at: datetime
    children: list[TodayEntryOut]


class FeedIn(In):
    include_doses: bool = False


class FeedOut(Schema):
    url: str = Field(description="Secret: anyone with it sees the appointments. Shown once.")
    include_doses: bool
    created_at: datetime


class FeedStatusOut(Schema):
    active: bool
    include_doses: bool | None
    created_at: datetime | None


# -- results and visit summaries ----------------------------------------------------------------


class ReferenceRangeOut(Schema):
    low: str | None
    high: str | None
    text: str | None


class ResultOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    report_id: uuid.UUID | None
    report_name: str | None
    name: str = Field(description="The plain-language name of the test.")
    code: str
    code_system: str
    category: str
    status: Annotated[str, OneOf(TestResult.Status)]
    value: str = Field(description="The value as reported: a decimal number when value_is_numeric, else text.")
    value_is_numeric: bool
    unit: str
    reference_range: ReferenceRangeOut
    interpretation: Literal["normal", "low", "high", "critical", "abnormal"] | None
    effective_at: datetime
    issued_at: datetime | None
    ordering_clinician_name: str | None
    released: bool = Field(description="Families see it (always true for a guardian).")
    hold_until: datetime | None = Field(description="Care team: when a held item is released on its own.")


class ResultReportOut(Schema):
    id: uuid.UUID
    name: str
    category: str
    status: str = Field(description="FHIR DiagnosticReport.status (registered, partial, preliminary, final, ...).")
    conclusion: str
    effective_at: datetime | None
    issued_at: datetime | None
    ordering_clinician_name: str | None


class CommentOut(Schema):
    id: uuid.UUID
    result_id: uuid.UUID
    author_name: str
    body: str
    created_at: datetime


class ResultDetailOut(ResultOut):
    report: ResultReportOut | None
    comments: list[CommentOut]


class ResultsQuery(PageIn):
    category: str | None = Field(None, max_length=40, description="laboratory, imaging, genetic...")


class RefillQueueQuery(PageIn):
    status: Literal["requested", "approved", "sent_to_pharmacy", "ready"] | None = Field(
        None, description="One open status; leave out for all of them."
    )


class CommentIn(In):
    body: str = Field(min_length=1, max_length=4000)


class VisitSummaryOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    title: str
    date: datetime
    category: str
    status: Annotated[str, OneOf(VisitSummary.Status)]
    author_name: str | None
    appointment_id: uuid.UUID | None
    has_pdf: bool
    pdf_size: int | None
    released: bool = Field(description="Families see it (always true for a guardian).")
    hold_until: datetime | None


class VisitSummaryDetailOut(VisitSummaryOut):
    text: str
