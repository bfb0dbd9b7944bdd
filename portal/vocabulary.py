"""The portal's typed vocabulary: what audit rows, domain events and stream events are about.

Every ``audit.record`` call, every domain event (``portal.events``) and every per-user stream event
names its entity with a ``Resource`` and its change with an ``EventType``. Both are ``StrEnum``s, so
they are stored and sent as their plain values, while a mistyped or invented string fails under mypy
instead of drifting silently (a metrics table once named link rows ``GuardianLink`` while the
services audited them as ``RelatedPerson``).

Clinical entities take their FHIR R4 resource name. What the portal keeps that FHIR has no resource
for (sessions, invitations, a conversation, a peer group's posts, the metrics' own objects) takes a
portal name, listed apart so the difference stays visible.
"""

from __future__ import annotations

from enum import StrEnum


class Resource(StrEnum):
    # -- FHIR R4 resource types -------------------------------------------------------------------
    APPOINTMENT = "Appointment"
    AUDIT_EVENT = "AuditEvent"
    BUNDLE = "Bundle"  # a transaction or batch pushed to the FHIR API, or a page of its changes
    BINARY = "Binary"  # a message attachment
    CARE_TEAM = "CareTeam"
    COMMUNICATION = "Communication"  # one message
    CONDITION = "Condition"  # a coded condition on a child's record, from the EHR
    COVERAGE = "Coverage"
    DIAGNOSTIC_REPORT = "DiagnosticReport"  # a report grouping test results
    DOCUMENT_REFERENCE = "DocumentReference"  # a visit summary
    GROUP = "Group"  # a peer group of families
    MEDICATION_ADMINISTRATION = "MedicationAdministration"  # a dose given or skipped
    MEDICATION_REQUEST = "MedicationRequest"  # a medication plan
    OBSERVATION = "Observation"  # a test result (and the clinicians' comments on it)
    PATIENT = "Patient"  # a child
    PERSON = "Person"  # a portal account's own settings
    PRACTITIONER = "Practitioner"  # a clinician's account, from the EHR
    PRACTITIONER_ROLE = "PractitionerRole"  # a clinician's department membership, from the EHR
    RELATED_PERSON = "RelatedPerson"  # a guardian's link to a child
    SCHEDULE = "Schedule"  # clinicians' hours and open slots
    TASK = "Task"  # a refill request
    # -- portal resources with no FHIR counterpart ------------------------------------------------
    BACKEND_CLIENT = "BackendClient"  # a system calling the FHIR API (SMART Backend Services)
    CALENDAR_FEED = "CalendarFeed"
    CALL_IMPORT = "CallImport"
    CALL_WEBHOOK = "CallWebhook"
    GROUP_MEMBERSHIP = "GroupMembership"
    GROUP_MODERATION = "GroupModeration"
    GROUP_POST = "GroupPost"
    GROUP_REPORT = "GroupReport"
    INVITATION = "Invitation"
    MESSAGE_THREAD = "MessageThread"  # a conversation between a family and a care team
    METRICS_CONFIG = "MetricsConfig"
    METRICS_DASHBOARD = "MetricsDashboard"
    METRICS_REPORT = "MetricsReport"
    NOTIFICATION_PREFERENCE = "NotificationPreference"
    PUSH_SUBSCRIPTION = "PushSubscription"
    READING_FLAG = "ReadingFlag"
    SESSION = "Session"
    URGENT_ALERT = "UrgentAlert"


class EventType(StrEnum):
    """Domain events (``portal.events``) and the per-user stream's events: ``<entity>.<change>``."""

    APPOINTMENT_CHANGED = "appointment.changed"
    MEDICATION_CHANGED = "medication.changed"
    DOSE_RECORDED = "dose.recorded"
    REFILL_CHANGED = "refill.changed"
    COVERAGE_CHANGED = "coverage.changed"
    RESULT_AVAILABLE = "result.available"  # a test result became visible to the family
    RESULT_CHANGED = "result.changed"  # a visible result was corrected or amended
    RESULT_COMMENTED = "result.commented"  # a clinician commented on a result for the family
    VISIT_SUMMARY_AVAILABLE = "visit_summary.available"
    VISIT_SUMMARY_CHANGED = "visit_summary.changed"
    THREAD_CHANGED = "thread.changed"
    MESSAGE_CREATED = "message.created"
    RECEIPT_UPDATED = "receipt.updated"
    ALERT_CHANGED = "alert.changed"
    NOTIFICATION = "notification"
    GROUP_POST = "group.post"
    # Control events: about a user's open sockets, never stored in the stream.
    SESSION_ENDED = "session.ended"
    ACCESS_CHANGED = "access.changed"
    ACCESS_REVOKED = "access.revoked"
