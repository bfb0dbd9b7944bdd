"""Registering a patient, and a user's own settings."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from portal import audit
from portal.models import Child, User
from portal.vocabulary import Resource


def child_create(
    *,
    actor: User | None,
    name: str,
    mrn: str,
    date_of_birth: Any,
    sex: str = Child.Sex.UNKNOWN,
    time_zone: str = "UTC",
    conditions: list[str] | None = None,
) -> Child:
    """Register a patient (staff tools and the demo loader; EHR import later)."""
    child = Child(
        name=name, mrn=mrn, date_of_birth=date_of_birth, sex=sex, time_zone=time_zone, conditions=conditions or []
    )
    child.compute_age_boundaries()
    child.full_clean(exclude=["mrn_index", "adolescent_from", "adult_from"])
    with transaction.atomic():
        child.save(force_insert=True)
        audit.record(
            actor=actor, action=audit.Action.CREATE, entity_type=Resource.PATIENT, entity_id=child.pk, child_id=child.pk
        )
    return child


def user_language_set(*, actor: User, language: str) -> User:
    """Set the language of the user's notifications and automatic replies (audited; no PHI)."""
    with transaction.atomic():
        actor.preferred_language = language
        actor.save(update_fields=["preferred_language"])
        audit.record(
            actor=actor, action=audit.Action.UPDATE, entity_type=Resource.PERSON, entity_id=actor.pk, reason="language"
        )
    return actor
