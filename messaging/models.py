"""The secure messenger: threads about one child, their messages and attachments, routing to
department pools, read receipts, each user's persisted event stream, and notifications.

Message bodies, subjects, attachment names and attachment bytes are encrypted at rest. Threads an
adolescent keeps confidential carry ``confidential`` and reach the care team only.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.fields import EncryptedJSONField, EncryptedTextField
from portal.models import Child, Department, User


class Topic(models.TextChoices):
    MEDICAL = "medical", "Medical question"
    MEDICATION = "medication", "Medication"
    REFILL = "refill", "Refill"
    SCHEDULING = "scheduling", "Scheduling"
    BILLING = "billing", "Billing and insurance"
    OTHER = "other", "Other"


class Priority(models.TextChoices):
    ROUTINE = "routine", "Routine"
    URGENT = "urgent", "Urgent"


class RoutingRule(models.Model):
    """Sends a new thread to a department's pool with a reply-by time. The first rule (by ``order``)
    whose topic and priority match wins; an empty topic or priority matches any. Without a matching
    rule a thread goes to the pool of the child's care team and the defaults of ``PORTAL_REPLY_WITHIN``
    apply."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.PositiveIntegerField(default=100)
    topic = models.CharField(max_length=12, choices=Topic.choices, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, blank=True)
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="routing_rules")
    reply_within_minutes = models.PositiveIntegerField(default=9 * 60)
    business_hours_only = models.BooleanField(
        default=True, help_text="Count only business hours towards the reply-by time (routine work)."
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"Routing rule {self.order}: {self.topic or 'any'}/{self.priority or 'any'}"


class Thread(models.Model):
    """A conversation about one child (FHIR Communication's topic and status)."""

    class Status(models.TextChoices):
        AWAITING_CARE_TEAM = "awaiting_care_team", "Awaiting the care team"
        AWAITING_FAMILY = "awaiting_family", "Awaiting the family"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="threads")
    subject = EncryptedTextField()
    topic = models.CharField(max_length=12, choices=Topic.choices)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.ROUTINE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING_CARE_TEAM)
    confidential = models.BooleanField(default=False)
    pool = models.ForeignKey(Department, on_delete=models.PROTECT, null=True, blank=True, related_name="threads")
    assignee = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(default=timezone.now)
    # When the care team owes an answer (null while the family is the one to answer, or closed).
    reply_by = models.DateTimeField(null=True, blank=True)
    awaiting_since = models.DateTimeField(null=True, blank=True)
    first_reply_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    red_flag = models.BooleanField(default=False, help_text="Triage found a red-flag phrase.")
    # Response-time statistics count threads that families opened.
    opened_by_family = models.BooleanField(default=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Messages are numbered in the thread under its row lock: their order never depends on the clock.
    message_count = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["child", "last_message_at"]),
            models.Index(fields=["pool", "status", "reply_by"]),
            models.Index(fields=["status", "reply_by"]),
        ]

    def __str__(self) -> str:
        return f"Thread {self.pk} ({self.status})"


class ThreadAssignment(models.Model):
    """The history of who holds a thread: claims, assignments, reassignments, escalations."""

    class Kind(models.TextChoices):
        CLAIM = "claim", "Claimed"
        ASSIGN = "assign", "Assigned"
        REASSIGN = "reassign", "Reassigned"
        ESCALATE = "escalate", "Escalated to the pool lead"

    id = models.BigAutoField(primary_key=True)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    from_user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    to_user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"


class Message(models.Model):
    """One message; never edited (a correction is a new message). Automatic replies have no author."""

    class Kind(models.TextChoices):
        FAMILY = "family", "From the family"
        CARE_TEAM = "care_team", "From the care team"
        AUTOMATIC = "automatic", "Automatic reply"

    class Reason(models.TextChoices):
        NONE = "", "None"
        EMERGENCY = "emergency", "Emergency instructions"
        AFTER_HOURS = "after_hours", "Outside business hours"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    # Chosen by the sending client, so a retried send is recognized and not stored twice.
    client_id = models.UUIDField(null=True, blank=True)
    author = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    automatic_reason = models.CharField(max_length=12, choices=Reason.choices, blank=True, default="")
    body = EncryptedTextField()
    # The red-flag categories triage found in a family message (e.g. ["breathing"]), never the words
    # that matched (null: none); encrypted like the body, since a category such as self-harm is PHI.
    triage_categories = EncryptedJSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    position = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["thread", "position"], name="unique_message_position"),
            models.UniqueConstraint(
                fields=["author", "client_id"], condition=Q(client_id__isnull=False), name="unique_message_client_id"
            ),
        ]
        indexes = [models.Index(fields=["thread", "created_at"])]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.kind})"


class Attachment(models.Model):
    """A JPEG, PNG or PDF, uploaded first and then sent with one message. The bytes are kept
    encrypted (base64 inside an encrypted field whose associated data names this row), so key rotation
    re-encrypts them like any other PHI."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments")
    uploaded_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    filename = EncryptedTextField()
    content = EncryptedTextField()

    class Meta:
        indexes = [models.Index(fields=["uploaded_by", "message"])]

    def __str__(self) -> str:
        return f"Attachment {self.pk}"


class ThreadRead(models.Model):
    """A participant's read receipt: everything in the thread up to ``read_at`` has been read."""

    id = models.BigAutoField(primary_key=True)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["thread", "user"], name="one_read_receipt_per_user")]

    def __str__(self) -> str:
        return f"Read receipt {self.pk}"


class UserEvent(models.Model):
    """One entry of a user's persisted, ordered event stream (the outbox): written in the transaction
    that made the change, pushed to the user's sockets after commit, replayed on resume. Carries ids
    and states only, never PHI."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=40)
    child_id = models.UUIDField(null=True)
    # What the user must still be able to do with the child to receive it (re-checked on delivery).
    capability = models.CharField(max_length=12, default="message")
    confidential = models.BooleanField(default=False)
    entity_type = models.CharField(max_length=40)
    entity_id = models.UUIDField(null=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "id"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Event {self.pk} {self.type}"


class NotificationPreference(models.Model):
    """How a user wants to hear about new activity while not connected, and when not to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="notification_preference")
    email = models.BooleanField(default=True)
    sms = models.BooleanField(default=False)
    # Local times in the user's time zone; a window may cross midnight (22:00-07:00).
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Notification preference {self.pk}"


class Notification(models.Model):
    """One email, SMS or web push to send (PHI-free text chosen by ``kind``), with its retry state. A
    push goes to one device: ``subscription``."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        PUSH = "push", "Web push"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped (connected or opted out)"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=5, choices=Channel.choices)
    kind = models.CharField(max_length=30)
    # Urgent notices (a red flag for the on-call clinician) ignore quiet hours and presence.
    urgent = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    not_before = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    subscription = models.ForeignKey(
        "PushSubscription", null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )

    class Meta:
        indexes = [models.Index(fields=["status", "not_before"])]

    def __str__(self) -> str:
        return f"Notification {self.pk} ({self.channel}, {self.status})"


class UrgentAlert(models.Model):
    """A red-flag message paging the on-call clinician until someone of the care team acknowledges
    it. Unacknowledged, it escalates: to the next on-call clinician, then to the department lead."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for acknowledgement"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"

    class Level(models.IntegerChoices):
        ON_CALL = 0, "On-call clinician"
        NEXT_ON_CALL = 1, "Next on-call clinician"
        LEAD = 2, "Department lead"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="alerts")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    level = models.PositiveSmallIntegerField(choices=Level.choices, default=Level.ON_CALL)
    created_at = models.DateTimeField(default=timezone.now)
    # When the next escalation is due (null once acknowledged or when no one is left to page).
    escalate_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "escalate_at"])]

    def __str__(self) -> str:
        return f"Urgent alert {self.pk} ({self.status})"


class AlertStep(models.Model):
    """One step of an alert's history: who was paged at which level, and who acknowledged."""

    class Kind(models.TextChoices):
        PAGE = "page", "Paged"
        ESCALATE = "escalate", "Escalated"
        ACKNOWLEDGE = "acknowledge", "Acknowledged"
        UNANSWERED = "unanswered", "No one left to page"

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(UrgentAlert, on_delete=models.CASCADE, related_name="steps")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    level = models.PositiveSmallIntegerField(choices=UrgentAlert.Level.choices)
    # The paged clinician (page/escalate) or the one who acknowledged.
    user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"


class WorkerHeartbeat(models.Model):
    """The background worker's sign of life, one row per worker, rewritten every few seconds."""

    worker_id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=120)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    tasks_run = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Worker {self.worker_id}"


class PushSubscription(models.Model):
    """One browser's web push subscription (the ``PushSubscription`` JSON its service worker got from
    the browser's push service), registered by the account on that device and revocable. The endpoint
    and keys are encrypted at rest; ``endpoint_index`` (a keyed hash) finds a device registered again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = EncryptedTextField()
    endpoint_index = models.CharField(max_length=64)
    p256dh = EncryptedTextField()
    auth = EncryptedTextField()
    label = models.CharField(max_length=80, blank=True)  # "Chrome on Android", from the user agent
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=20, blank=True)  # "user", "gone" (404/410 from the service)

    class Meta:
        indexes = [models.Index(fields=["endpoint_index"]), models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"PushSubscription {self.pk}"
