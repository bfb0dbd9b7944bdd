"""The vocabularies of the metrics: what a phone reason and a portal action are about, and how a
family is recognised across the phone system and the portal (a keyed hash of its phone number)."""

from __future__ import annotations

import re
import uuid

from django.conf import settings

from portal.crypto import keyring
from portal.metrics.models import Topic
from portal.vocabulary import Resource

# Phone-system reason codes → portal topics. Topic names themselves are accepted as reasons too.
# Unknown reasons count as "other" (the import reports nothing for them: a new IVR option must not
# block a whole night's file).
REASON_TOPICS: dict[str, str] = {
    "appointment": Topic.SCHEDULING,
    "appointments": Topic.SCHEDULING,
    "schedule": Topic.SCHEDULING,
    "reschedule": Topic.SCHEDULING,
    "cancel": Topic.SCHEDULING,
    "medication": Topic.MEDICATION,
    "medicine": Topic.MEDICATION,
    "dose": Topic.MEDICATION,
    "dosing": Topic.MEDICATION,
    "refill": Topic.REFILL,
    "prescription": Topic.REFILL,
    "pharmacy": Topic.REFILL,
    "symptoms": Topic.ADVICE,
    "advice": Topic.ADVICE,
    "nurse_line": Topic.ADVICE,
    "triage": Topic.ADVICE,
    "results": Topic.RESULTS,
    "lab_results": Topic.RESULTS,
    "test_results": Topic.RESULTS,
    "billing": Topic.BILLING,
    "insurance": Topic.BILLING,
    "coverage": Topic.BILLING,
    "payment": Topic.BILLING,
    "other": Topic.OTHER,
}


def topic_for_reason(reason: str) -> str:
    key = re.sub(r"[\s/-]+", "_", reason.strip().casefold())
    if key in Topic.values:
        return key
    return REASON_TOPICS.get(key, Topic.OTHER)


# The one table of self-service actions derived from the audit trail: (entity type, action) of a
# successful audit row written for a guardian of the child → (topic, kind). Messaging writes
# "Communication" rows; add new entity types here and nowhere else.
SELF_SERVICE_ACTIONS: dict[tuple[Resource, str], tuple[str, str]] = {
    (Resource.SCHEDULE, "read"): (Topic.SCHEDULING, "viewed_schedule"),
    (Resource.APPOINTMENT, "read"): (Topic.SCHEDULING, "viewed_appointments"),
    (Resource.APPOINTMENT, "update"): (Topic.SCHEDULING, "changed_appointment"),
    (Resource.MEDICATION_REQUEST, "read"): (Topic.MEDICATION, "viewed_doses"),
    (Resource.MEDICATION_ADMINISTRATION, "read"): (Topic.MEDICATION, "viewed_dose_log"),
    (Resource.MEDICATION_ADMINISTRATION, "create"): (Topic.MEDICATION, "logged_dose"),
    (Resource.TASK, "create"): (Topic.REFILL, "requested_refill"),
    (Resource.TASK, "read"): (Topic.REFILL, "viewed_refills"),
    (Resource.COVERAGE, "read"): (Topic.BILLING, "viewed_coverage"),
    (Resource.COVERAGE, "create"): (Topic.BILLING, "submitted_coverage"),
    (Resource.DIAGNOSTIC_REPORT, "read"): (Topic.RESULTS, "viewed_results"),
    (Resource.OBSERVATION, "read"): (Topic.RESULTS, "viewed_results"),
    (Resource.COMMUNICATION, "create"): (Topic.ADVICE, "sent_message"),
    (Resource.COMMUNICATION, "read"): (Topic.ADVICE, "read_reply"),
}

# Audit rows that change who is enrolled or in which department a patient is measured.
# Guardian links are audited as FHIR ``RelatedPerson`` (invite, redeem, revoke, expire, update).
POPULATION_ENTITY_TYPES: frozenset[Resource] = frozenset(
    {Resource.RELATED_PERSON, Resource.INVITATION, Resource.CARE_TEAM, Resource.PATIENT}
)

# Messages: a guardian's "Communication" create opens a question; the care team's closes it.
MESSAGE_ENTITY_TYPE = Resource.COMMUNICATION


# Message thread topics (messaging) → metrics topics; a thread's messages count under its topic.
THREAD_TOPICS: dict[str, str] = {"medical": Topic.ADVICE}


def metrics_topic_of_thread(topic: str) -> str:
    if topic in THREAD_TOPICS:
        return THREAD_TOPICS[topic]
    return topic if topic in Topic.values else Topic.OTHER


def normalize_phone(raw: str) -> str:
    """Digits in E.164 form (``+15551234567``), or "" when there are too few digits to be a phone."""
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("00"):
        digits = digits[2:]
        text = "+" + digits
    if len(digits) < 7:
        return ""
    if text.startswith("+"):
        return "+" + digits
    country: str = settings.PORTAL_METRICS_DEFAULT_COUNTRY_CODE
    if len(digits) == 10 and country == "1":
        return "+1" + digits
    if country == "1" and len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    if digits.startswith("0"):
        digits = digits.lstrip("0")
    return f"+{country}{digits}"


def phone_hash(raw: str) -> str:
    """The keyed hash that stands for a family in the metrics tables ("" for no usable number)."""
    normalized = normalize_phone(raw)
    if not normalized:
        return ""
    return keyring().blind_index(normalized, purpose="metrics.phone")


def guardian_hash(user_id: uuid.UUID | str) -> str:
    return keyring().blind_index(str(user_id), purpose="metrics.guardian")
