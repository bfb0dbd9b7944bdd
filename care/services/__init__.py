"""Writes on the child's care record, one module per idea. Each service is atomic, checks access
through the policy, writes its audit rows and publishes a domain event that the realtime stream
delivers after commit. ``from care import services`` reaches every service by name."""

from care.services.appointments import (
    APPOINTMENT_TRANSITIONS,
    LIVE_APPOINTMENT,
    appointment_confirm,
    appointment_create,
    appointment_request_change,
    appointment_update,
)
from care.services.calendar import calendar_feed_issue, calendar_feed_revoke, feed_token_hash
from care.services.coverage import coverage_statuses, coverage_submit, coverage_verify
from care.services.medicines import dose_record, plan_create, plan_for
from care.services.refills import GUARDIAN_CANCELLABLE, REFILL_TRANSITIONS, refill_request, refill_transition

__all__ = [
    "APPOINTMENT_TRANSITIONS",
    "GUARDIAN_CANCELLABLE",
    "LIVE_APPOINTMENT",
    "REFILL_TRANSITIONS",
    "appointment_confirm",
    "appointment_create",
    "appointment_request_change",
    "appointment_update",
    "calendar_feed_issue",
    "calendar_feed_revoke",
    "coverage_statuses",
    "coverage_submit",
    "coverage_verify",
    "dose_record",
    "feed_token_hash",
    "plan_create",
    "plan_for",
    "refill_request",
    "refill_transition",
]
