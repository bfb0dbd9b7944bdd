"""The child's record as families see it, named after FHIR R4 where it fits.

Free text that can carry clinical detail (medication names, instructions, notes, member ids) is
encrypted at rest. Items an adolescent keeps confidential carry ``confidential`` and reach the care
team only.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.fields import EncryptedJSONField, EncryptedTextField
from portal.models import Child, Department, User, validate_time_zone


class WorkingHours(models.Model):
    """A clinician's regular clinic hours at one location (FHIR Schedule + availableTime)."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinician = models.ForeignKey(User, on_delete=models.CASCADE, related_name="working_hours")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    location = models.CharField(max_length=120)
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start = models.TimeField()
    end = models.TimeField()
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    slot_minutes = models.PositiveSmallIntegerField(default=20, validators=[MinValueValidator(5)])
    valid_from = models.DateField(default=timezone.localdate)
    valid_until = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="hours_end_after_start")]
        indexes = [models.Index(fields=["clinician", "weekday"])]

    def __str__(self) -> str:
        return f"Working hours {self.pk}"


class ScheduleException(models.Model):
    """Time off (no clinic, no slots) or on-call duty for a clinician."""

    class Kind(models.TextChoices):
        TIME_OFF = "time_off", "Time off"
        ON_CALL = "on_call", "On call"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinician = models.ForeignKey(User, on_delete=models.CASCADE, related_name="schedule_exceptions")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="exception_end_after_start")]
        indexes = [models.Index(fields=["clinician", "kind", "start"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"


class DepartmentHours(models.Model):
    """A department's own business hours, where it keeps hours other than the hospital's
    (``PORTAL_BUSINESS_HOURS`` in ``PORTAL_HOSPITAL_TIME_ZONE``). Its holidays add to the hospital's."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    department = models.OneToOneField(Department, on_delete=models.CASCADE, related_name="business_hours")
    # Empty: the hospital's time zone.
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone])
    weekdays = models.JSONField(default=list, help_text="Open weekdays, 0 = Monday.")
    opens = models.TimeField()
    closes = models.TimeField()
    holidays = models.JSONField(default=list, blank=True, help_text="ISO dates closed all day (beside the hospital's).")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(closes__gt=models.F("opens")), name="department_closes_after_opens")
        ]
        verbose_name_plural = "department hours"

    def __str__(self) -> str:
        return f"Hours of {self.department_id}"


class Appointment(models.Model):
    """FHIR Appointment: proposed → booked → arrived → fulfilled | cancelled | noshow."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        BOOKED = "booked", "Booked"
        ARRIVED = "arrived", "Arrived"
        FULFILLED = "fulfilled", "Fulfilled"
        CANCELLED = "cancelled", "Cancelled"
        NOSHOW = "noshow", "No-show"

    class ChangeRequest(models.TextChoices):
        NONE = "", "None"
        CANCEL = "cancel", "Cancellation requested"
        RESCHEDULE = "reschedule", "New time requested"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="appointments")
    clinician = models.ForeignKey(User, on_delete=models.PROTECT, related_name="appointments")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    location = models.CharField(max_length=120)
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    visit_type = models.CharField(max_length=80)
    preparation = EncryptedTextField(blank=True, default="")
    confidential = models.BooleanField(default=False)
    guardian_confirmed_at = models.DateTimeField(null=True, blank=True)
    change_request = models.CharField(max_length=12, choices=ChangeRequest.choices, blank=True, default="")
    change_note = EncryptedTextField(blank=True, default="")
    change_requested_at = models.DateTimeField(null=True, blank=True)
    change_requested_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="appointment_end_after_start")
        ]
        indexes = [models.Index(fields=["child", "start"]), models.Index(fields=["clinician", "start"])]

    def __str__(self) -> str:
        return f"Appointment {self.pk} ({self.status})"


class MedicationPlan(models.Model):
    """FHIR MedicationRequest with its dosage timing and dispense request."""

    class ScheduleKind(models.TextChoices):
        FIXED_TIMES = "fixed_times", "At fixed times every day"
        EVERY_N_HOURS = "every_n_hours", "Every N hours"
        WEEKDAYS = "weekdays", "At fixed times on chosen weekdays"
        AS_NEEDED = "as_needed", "As needed"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ON_HOLD = "on_hold", "On hold"
        COMPLETED = "completed", "Completed"
        STOPPED = "stopped", "Stopped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="medication_plans")
    medication = EncryptedTextField()
    strength = models.CharField(max_length=40, blank=True)
    form = models.CharField(max_length=40, blank=True)
    dose_quantity = models.DecimalField(max_digits=8, decimal_places=3, validators=[MinValueValidator(Decimal(0))])
    dose_unit = models.CharField(max_length=20)
    route = models.CharField(max_length=40, default="oral")
    schedule_kind = models.CharField(max_length=15, choices=ScheduleKind.choices)
    # Local "HH:MM" times for fixed_times and weekdays; weekdays 0 = Monday.
    times_of_day = models.JSONField(default=list, blank=True)
    weekdays = models.JSONField(default=list, blank=True)
    interval_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    min_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    max_per_day = models.PositiveSmallIntegerField(null=True, blank=True)
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)
    instructions = EncryptedTextField(blank=True, default="")
    prescriber = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    refills_allowed = models.PositiveSmallIntegerField(default=0)
    refills_remaining = models.PositiveSmallIntegerField(default=0)
    pharmacy = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    confidential = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The change time (FHIR meta.lastUpdated); a save with update_fields or an update() must name it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(refills_remaining__lte=models.F("refills_allowed")), name="refills_remaining_within_allowed"
            ),
        ]
        indexes = [models.Index(fields=["child", "status"])]

    def __str__(self) -> str:
        return f"Medication plan {self.pk}"


class DoseLog(models.Model):
    """FHIR MedicationAdministration: a dose given or skipped, recorded by a guardian or clinician."""

    class Status(models.TextChoices):
        GIVEN = "given", "Given"
        SKIPPED = "skipped", "Skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(MedicationPlan, on_delete=models.CASCADE, related_name="doses")
    # Chosen by the client, so a retry of the same recording is recognized (idempotent).
    client_id = models.UUIDField()
    scheduled_for = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices)
    note = EncryptedTextField(blank=True, default="")
    recorded_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)
    # The change time (FHIR meta.lastUpdated); a save with update_fields or an update() must name it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "client_id"], name="unique_dose_client_id")]
        indexes = [models.Index(fields=["plan", "occurred_at"]), models.Index(fields=["plan", "scheduled_for"])]

    def __str__(self) -> str:
        return f"Dose {self.pk} ({self.status})"


OPEN_REFILL_STATUSES = ("requested", "approved", "sent_to_pharmacy", "ready")


class RefillRequest(models.Model):
    """FHIR Task whose focus is the MedicationRequest."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPROVED = "approved", "Approved"
        SENT_TO_PHARMACY = "sent_to_pharmacy", "Sent to pharmacy"
        READY = "ready", "Ready for pick-up"
        PICKED_UP = "picked_up", "Picked up"
        DENIED = "denied", "Denied"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(MedicationPlan, on_delete=models.CASCADE, related_name="refills")
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="refill_requests")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    pharmacy = models.CharField(max_length=120)
    note = EncryptedTextField(blank=True, default="")
    denial_reason = EncryptedTextField(blank=True, default="")
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    decided_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plan"], condition=Q(status__in=OPEN_REFILL_STATUSES), name="one_open_refill_per_plan"
            ),
        ]
        indexes = [models.Index(fields=["child", "status"]), models.Index(fields=["status", "requested_at"])]

    def __str__(self) -> str:
        return f"Refill request {self.pk} ({self.status})"


class RefillTransition(models.Model):
    """The history of a refill request, one row per state change."""

    id = models.BigAutoField(primary_key=True)
    refill = models.ForeignKey(RefillRequest, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


class Coverage(models.Model):
    """FHIR Coverage. A guardian's change is a new row ``pending`` until staff verify it; verified
    coverage whose period starts later is ``pending_start`` (the current one stays active until then)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PENDING = "pending", "Pending verification"
        PENDING_START = "pending_start", "Verified, starts later"
        SUPERSEDED = "superseded", "Superseded"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="coverages")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payer = models.CharField(max_length=120)
    plan_name = models.CharField(max_length=120, blank=True)
    member_id = EncryptedTextField()
    group_number = models.CharField(max_length=60, blank=True)
    subscriber_name = EncryptedTextField(blank=True, default="")
    subscriber_relationship = models.CharField(max_length=20, default="parent")
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    # {"primary_care": "20.00", "specialist": "40.00", "emergency": "150.00"}
    copays = EncryptedJSONField(default=dict)
    submitted_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="+")
    submitted_at = models.DateTimeField(default=timezone.now)
    verified_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.CharField(max_length=200, blank=True)
    # The change time (FHIR meta.lastUpdated); a save with update_fields or an update() must name it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["child", "status"])]

    def __str__(self) -> str:
        return f"Coverage {self.pk} ({self.status})"


class CalendarFeed(models.Model):
    """A guardian's secret iCalendar URL. Only an HMAC of the token is stored; re-issuing revokes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    guardian = models.ForeignKey(User, on_delete=models.CASCADE, related_name="calendar_feeds")
    token_hash = models.CharField(max_length=64, unique=True)
    include_doses = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["guardian"], condition=Q(revoked_at__isnull=True), name="one_live_calendar_feed"
            ),
        ]

    def __str__(self) -> str:
        return f"Calendar feed {self.pk}"


# -- results and visit summaries ----------------------------------------------------------------
#
# Families see a result or a visit summary once it is released: at once, or after the hold of its
# category (``PORTAL_RESULT_HOLD``) unless a care-team clinician releases it sooner. ``source_id`` is
# the caller's own key (the EHR's business identifier), so recording the same item again updates it.


class ReleaseState(models.Model):
    """When families may see an item: ``released_at`` once released (at once when nothing held it);
    while held, ``hold_until`` says when the hold ends on its own."""

    hold_until = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    # Who released it early; None when nothing held it or the hold ran out.
    released_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    confidential = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ResultReport(models.Model):
    """FHIR DiagnosticReport: a group of results (a blood count, a panel) with the clinician's conclusion."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="result_reports")
    source_id = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, default="final")
    category = models.CharField(max_length=40, default="laboratory")
    code = EncryptedTextField(blank=True, default="")
    code_system = models.CharField(max_length=200, blank=True)
    name = EncryptedTextField()
    conclusion = EncryptedTextField(blank=True, default="")
    effective_at = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    ordering_clinician = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The orderer's name as the sender gave it, for orderers without a portal account.
    ordering_clinician_name = models.CharField(max_length=150, blank=True)
    confidential = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Result report {self.pk}"


class TestResult(ReleaseState):
    """FHIR Observation: one result with its value, reference range and interpretation flag."""

    __test__ = False  # not a pytest test class, whatever its name

    class Interpretation(models.TextChoices):
        NORMAL = "normal", "Normal"
        LOW = "low", "Low"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"
        ABNORMAL = "abnormal", "Abnormal"

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        PRELIMINARY = "preliminary", "Preliminary"
        FINAL = "final", "Final"
        AMENDED = "amended", "Amended"
        CORRECTED = "corrected", "Corrected"
        CANCELLED = "cancelled", "Cancelled"
        ENTERED_IN_ERROR = "entered-in-error", "Entered in error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="test_results")
    report = models.ForeignKey(ResultReport, on_delete=models.SET_NULL, null=True, blank=True, related_name="results")
    source_id = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.FINAL)
    category = models.CharField(max_length=40, default="laboratory")
    # The code (LOINC, SNOMED CT...) names the test, so it is encrypted like the name.
    code = EncryptedTextField(blank=True, default="")
    code_system = models.CharField(max_length=200, blank=True)
    name = EncryptedTextField(help_text="The plain-language name families read.")
    # The value as sent: a number (``value_is_numeric``) or text, encrypted either way.
    value = EncryptedTextField(blank=True, default="")
    value_is_numeric = models.BooleanField(default=False)
    unit = models.CharField(max_length=40, blank=True)
    range_low = EncryptedTextField(blank=True, default="")
    range_high = EncryptedTextField(blank=True, default="")
    range_text = EncryptedTextField(blank=True, default="")
    interpretation = models.CharField(max_length=10, choices=Interpretation.choices, blank=True)
    effective_at = models.DateTimeField()
    issued_at = models.DateTimeField(null=True, blank=True)
    ordering_clinician = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    ordering_clinician_name = models.CharField(max_length=150, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["child", "effective_at"]),
            models.Index(fields=["released_at", "hold_until"], name="result_hold_due"),
        ]

    def __str__(self) -> str:
        return f"Result {self.pk} ({self.status})"


class ResultComment(models.Model):
    """A care-team clinician's note to the family about one result."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    result = models.ForeignKey(TestResult, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    body = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["result", "created_at"])]

    def __str__(self) -> str:
        return f"Comment {self.pk}"


class VisitSummary(ReleaseState):
    """FHIR DocumentReference: the after-visit summary, as text and/or a PDF (encrypted, base64)."""

    class Status(models.TextChoices):
        CURRENT = "current", "Current"
        SUPERSEDED = "superseded", "Superseded"
        ENTERED_IN_ERROR = "entered-in-error", "Entered in error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="visit_summaries")
    source_id = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CURRENT)
    category = models.CharField(max_length=40, default="visit-summary")
    title = EncryptedTextField()
    date = models.DateTimeField()
    author = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    author_name = models.CharField(max_length=150, blank=True)
    appointment = models.ForeignKey(Appointment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    text = EncryptedTextField(blank=True, default="")
    pdf = EncryptedTextField(blank=True, default="")
    pdf_size = models.PositiveIntegerField(default=0)
    pdf_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["child", "date"]),
            models.Index(fields=["released_at", "hold_until"], name="summary_hold_due"),
        ]
        verbose_name_plural = "visit summaries"

    def __str__(self) -> str:
        return f"Visit summary {self.pk}"


class ResultsSeen(models.Model):
    """How far a guardian has looked at a child's results and visit summaries: what was released to
    the family after ``results_seen_at`` (``summaries_seen_at``) is new to them (``/me/today``)."""

    id = models.BigAutoField(primary_key=True)
    guardian = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="+")
    results_seen_at = models.DateTimeField(null=True, blank=True)
    summaries_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["guardian", "child"], name="one_results_seen_per_guardian")]
        verbose_name_plural = "results seen"

    def __str__(self) -> str:
        return f"Results seen {self.pk}"
