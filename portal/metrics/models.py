"""Call-deflection metrics: raw facts (calls, self-service events, the patient population) and the
daily rollups every report reads.

No PHI lives here: patients are opaque references (a child's UUID or a synthetic number), families
and guardians are keyed HMACs (``portal.crypto.keyring().blind_index``) of a phone number or a user
id, MRNs are used only to find the patient at import and never stored. Real children (synced from
``portal``) and synthetic patients (``seed_metrics``) feed the same tables, so the rollups and the
reports do not know which is which.
"""

from __future__ import annotations

import uuid
from datetime import date

from django.db import models
from django.utils import timezone


class Topic(models.TextChoices):
    """The questions families phone about, and that the portal answers."""

    SCHEDULING = "scheduling", "Scheduling"
    MEDICATION = "medication", "Medication"
    REFILL = "refill", "Refill"
    ADVICE = "advice", "Symptoms / advice"
    RESULTS = "results", "Results"
    BILLING = "billing", "Billing / insurance"
    OTHER = "other", "Other"


class Cohort(models.IntegerChoices):
    """Whether a call's patient was enrolled on the day of the call."""

    NOT_ENROLLED = 0, "Not enrolled"
    ENROLLED = 1, "Enrolled"
    UNATTRIBUTED = 2, "Unattributed"  # no MRN and no known family phone


# The enrolment month of a patient who has never enrolled: later than any real month, so "enrolled
# before X" and "not enrolled by X" are plain comparisons.
NEVER = date(9999, 12, 1)


class MetricsConfig(models.Model):
    """The singleton holding the configurable baseline period and the portal's go-live date."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    baseline_start = models.DateField(null=True, blank=True)
    baseline_end = models.DateField(null=True, blank=True, help_text="Inclusive.")
    go_live = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "metrics configuration"

    def __str__(self) -> str:
        return "Metrics configuration"


class MetricsPatient(models.Model):
    """One patient of the measured population, real or synthetic, without PHI."""

    class Source(models.TextChoices):
        PORTAL = "portal", "Portal child"
        SYNTHETIC = "synthetic", "Synthetic (seed_metrics)"

    id = models.BigAutoField(primary_key=True)
    ref = models.CharField(max_length=64, unique=True, help_text="c:<child uuid> or s:<seed>:<number>")
    child_id = models.UUIDField(null=True, blank=True, unique=True, help_text="The portal child, if real.")
    source = models.CharField(max_length=10, choices=Source.choices)
    department = models.CharField(max_length=40, blank=True, help_text="Department code of the care team.")
    family_hash = models.CharField(max_length=64, blank=True, db_index=True, help_text="HMAC of a guardian phone.")
    enrolled_on = models.DateField(null=True, blank=True, help_text="First day with an active guardian link.")
    unenrolled_on = models.DateField(null=True, blank=True, help_text="The day the last guardian link ended.")
    registered_on = models.DateField(
        null=True, blank=True, help_text="First day in the measured population (null: from the start)."
    )
    exited_on = models.DateField(null=True, blank=True, help_text="First day no longer in the population.")
    cohort_month = models.DateField(default=NEVER, help_text="First of the enrolment month, or 9999-12-01.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["department", "enrolled_on"])]

    def __str__(self) -> str:
        return f"Metrics patient {self.pk}"


class CallRecord(models.Model):
    """One call from the phone system (imported CSV or webhook), deduplicated by source and call id."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Answered"
        ABANDONED = "abandoned", "Abandoned"
        VOICEMAIL = "voicemail", "Voicemail"
        TRANSFERRED = "transferred", "Transferred"
        CALLBACK = "callback", "Call-back scheduled"

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=40)
    call_id = models.CharField(max_length=100)
    started_at = models.DateTimeField()
    day = models.DateField(help_text="UTC day of started_at (the rollup key).")
    duration_seconds = models.PositiveIntegerField()
    direction = models.CharField(max_length=10, choices=Direction.choices)
    queue = models.CharField(max_length=60, blank=True)
    topic = models.CharField(max_length=12, choices=Topic.choices)
    caller_hash = models.CharField(max_length=64, blank=True, help_text="HMAC of the caller's E.164 phone.")
    mrn_hash = models.CharField(
        max_length=64, blank=True, db_default="", help_text="Blind index of the MRN given on the call (never the MRN)."
    )
    patient = models.ForeignKey(MetricsPatient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    resolved = models.BooleanField(
        default=False, db_default=False, help_text="Attributed against the identities known at the last refresh."
    )
    phone_known = models.BooleanField(
        default=False, db_default=False, help_text="The caller's phone alone identifies a patient (match-rate check)."
    )
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    batch = models.ForeignKey("CallImportBatch", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "call_id"], name="metrics_unique_call")]
        indexes = [
            models.Index(fields=["day"]),
            models.Index(fields=["patient", "day"]),
            models.Index(fields=["caller_hash"]),
            models.Index(fields=["mrn_hash"]),
            models.Index(fields=["resolved"], condition=models.Q(resolved=False), name="metrics_call_unresolved"),
        ]

    def __str__(self) -> str:
        return f"Call {self.pk}"


class PatientIdentity(models.Model):
    """A key that identifies a patient on a call: a phone (any guardian's, or the registration phone)
    or an MRN, each as a keyed hash. Calls are attributed against every identity known at refresh
    time, so a phone learned when a family enrols also attributes that family's earlier calls."""

    class Kind(models.TextChoices):
        MRN = "mrn", "MRN"
        PHONE = "phone", "Phone"

    id = models.BigAutoField(primary_key=True)
    patient = models.ForeignKey(MetricsPatient, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    key = models.CharField(max_length=64, help_text="Keyed hash of the phone or blind index of the MRN.")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key", "patient"], name="metrics_unique_identity")]
        indexes = [models.Index(fields=["kind", "key"])]

    def __str__(self) -> str:
        return f"Identity {self.pk} ({self.kind})"


class ChangedIdentity(models.Model):
    """A key whose patients changed since the last refresh: its calls are attributed again."""

    kind = models.CharField(max_length=5)
    key = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="metrics_unique_changed_identity")]

    def __str__(self) -> str:
        return f"Changed identity {self.pk}"


class EstimateRun(models.Model):
    """The staggered-adoption estimate fitted by the nightly refresh (never per request): its inputs,
    coefficients, event study, pre-trend test, balance and match rates, as aggregate JSON only."""

    id = models.BigAutoField(primary_key=True)
    fitted_at = models.DateTimeField(default=timezone.now, db_index=True)
    topic = models.CharField(max_length=12, blank=True, help_text="Blank: all topics.")
    seconds = models.FloatField(default=0)
    result = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"Estimate {self.pk}"


class CallImportBatch(models.Model):
    """One accepted import (CSV command, admin upload or webhook delivery)."""

    class Via(models.TextChoices):
        COMMAND = "command", "Management command"
        ADMIN = "admin", "Admin upload"
        WEBHOOK = "webhook", "Webhook"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.CharField(max_length=40)
    via = models.CharField(max_length=10, choices=Via.choices)
    rows = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    actor_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "call import"

    def __str__(self) -> str:
        return f"Call import {self.pk}"


class WebhookReceipt(models.Model):
    """A signature already accepted from a source: the same signed body is never accepted twice."""

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=40)
    signature_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "signature_hash"], name="metrics_unique_webhook_signature")
        ]

    def __str__(self) -> str:
        return f"Webhook receipt {self.pk}"


class SelfServiceEvent(models.Model):
    """A guardian action that answers a question a call would have asked (derived from the audit
    trail, or synthetic)."""

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField()
    day = models.DateField()
    topic = models.CharField(max_length=12, choices=Topic.choices)
    kind = models.CharField(max_length=30)
    family_hash = models.CharField(max_length=64, blank=True, help_text="HMAC of the guardian's phone.")
    guardian_hash = models.CharField(max_length=64, help_text="HMAC of the guardian (monthly active guardians).")
    patient = models.ForeignKey(MetricsPatient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    audit_seq = models.BigIntegerField(null=True, blank=True, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["day"]),
            models.Index(fields=["family_hash", "topic", "occurred_at"]),
            models.Index(fields=["patient", "topic", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"Self-service event {self.pk}"


class MessageResponse(models.Model):
    """How long the care team took to answer a guardian's message (derived when messaging exists)."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField(help_text="Day of the reply.")
    patient = models.ForeignKey(MetricsPatient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    seconds = models.PositiveIntegerField()
    audit_seq = models.BigIntegerField(unique=True)

    class Meta:
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"Message response {self.pk}"


class PendingMessage(models.Model):
    """The oldest unanswered guardian message per patient (work state of the derivation)."""

    patient = models.OneToOneField(MetricsPatient, on_delete=models.CASCADE, primary_key=True, related_name="+")
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"Pending message {self.pk}"


class Watermark(models.Model):
    """How far an incremental job has read (for audit rows: how many ledger leaves were derived)."""

    name = models.CharField(max_length=40, primary_key=True)
    value = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class DirtyDay(models.Model):
    """A day whose rollups must be recomputed (new calls, events or enrolment changes)."""

    day = models.DateField(primary_key=True)

    def __str__(self) -> str:
        return str(self.day)


# --- Rollups: the only tables reports read ----------------------------------------------------


class DailyTopicRollup(models.Model):
    """Calls and self-service actions per day, department, topic and cohort."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    week = models.DateField(help_text="Monday of the ISO week.")
    month = models.DateField(help_text="First of the month.")
    department = models.CharField(max_length=40, blank=True)
    topic = models.CharField(max_length=12, choices=Topic.choices)
    cohort = models.PositiveSmallIntegerField(choices=Cohort.choices)
    calls = models.PositiveIntegerField(default=0)
    callbacks = models.PositiveIntegerField(
        default=0, help_text="Calls on this topic by a family that used the portal on it in the 7 days before."
    )
    actions = models.PositiveIntegerField(default=0)
    patients = models.PositiveIntegerField(default=0, help_text="Distinct patients calling or acting that day.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "department", "topic", "cohort"], name="metrics_unique_daily_topic")
        ]
        indexes = [models.Index(fields=["month", "topic"]), models.Index(fields=["week"])]

    def __str__(self) -> str:
        return f"{self.day} {self.topic}"


class DailyPopulation(models.Model):
    """Patients in the measured population and enrolled (active guardian link) per day and department."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    week = models.DateField()
    month = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    patients = models.PositiveIntegerField(default=0, help_text="Registered and not exited that day.")
    enrolled = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "department"], name="metrics_unique_daily_population")]
        indexes = [models.Index(fields=["month"])]

    def __str__(self) -> str:
        return f"{self.day} {self.department}"


class DailyCohortRollup(models.Model):
    """Calls per day, topic and enrolment month of the patient: the difference-in-differences input."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    month = models.DateField()
    topic = models.CharField(max_length=12, choices=Topic.choices)
    cohort_month = models.DateField()
    calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "topic", "cohort_month"], name="metrics_unique_daily_cohort")
        ]
        indexes = [models.Index(fields=["month"])]

    def __str__(self) -> str:
        return f"{self.day} {self.cohort_month}"


class MonthlyCohortRollup(models.Model):
    """Attributed inbound calls per month, department, topic and enrolment month, with distinct
    calling patients, and the calls that carried an MRN (for the match-rate check)."""

    id = models.BigAutoField(primary_key=True)
    month = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    topic = models.CharField(max_length=12, choices=Topic.choices)
    cohort_month = models.DateField()
    calls = models.PositiveIntegerField(default=0)
    callers = models.PositiveIntegerField(default=0, help_text="Distinct patients calling.")
    callbacks = models.PositiveIntegerField(default=0)
    mrn_calls = models.PositiveIntegerField(default=0, help_text="Calls attributed by an MRN.")
    mrn_calls_phone_known = models.PositiveIntegerField(
        default=0, help_text="Of those, calls whose caller phone alone would have identified a patient."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["month", "department", "topic", "cohort_month"], name="metrics_unique_monthly_cohort"
            )
        ]

    def __str__(self) -> str:
        return f"{self.month} {self.cohort_month}"


class MonthlyExposure(models.Model):
    """Person-time per month, department and enrolment month: patient-days registered and not exited."""

    id = models.BigAutoField(primary_key=True)
    month = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    cohort_month = models.DateField()
    patients = models.PositiveIntegerField(default=0, help_text="Distinct patients present some day of the month.")
    patient_days = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["month", "department", "cohort_month"], name="metrics_unique_exposure")
        ]

    def __str__(self) -> str:
        return f"{self.month} {self.cohort_month}"


class PeriodCallers(models.Model):
    """Distinct patients calling per day, week or month, department, topic and cohort at the time of
    the call: the cell counts disclosure control needs (a patient calling twice counts once).

    ``topic`` ``*`` and ``cohort`` 9 are the all-topics and all-cohorts rows (distinct counts do not add
    up across topics or across a patient's enrolment). Unattributed calls count distinct caller phones.
    """

    ALL_COHORTS = 9

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=5)  # day, week or month
    start = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    topic = models.CharField(max_length=12)
    cohort = models.PositiveSmallIntegerField()
    callers = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "start", "department", "topic", "cohort"], name="metrics_unique_period_callers"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.start}"


class CohortSize(models.Model):
    """Patients per enrolment month (9999-12-01: never enrolled)."""

    cohort_month = models.DateField(primary_key=True)
    patients = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.cohort_month}: {self.patients}"


class MonthlyGuardians(models.Model):
    """Monthly active guardians (distinct guardians with at least one self-service action)."""

    id = models.BigAutoField(primary_key=True)
    month = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    guardians = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "department"], name="metrics_unique_monthly_guardians")]

    def __str__(self) -> str:
        return f"{self.month} {self.department}"


class DailyResponseRollup(models.Model):
    """Message response times per day and department: count, total and a histogram."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    week = models.DateField()
    month = models.DateField()
    department = models.CharField(max_length=40, blank=True)
    responses = models.PositiveIntegerField(default=0)
    total_seconds = models.BigIntegerField(default=0)
    within_1h = models.PositiveIntegerField(default=0)
    within_4h = models.PositiveIntegerField(default=0)
    within_24h = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "department"], name="metrics_unique_daily_response")]

    def __str__(self) -> str:
        return f"{self.day} {self.department}"
