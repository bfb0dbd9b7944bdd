"""Care-team membership: putting a department's clinician on a child's care team, and ending it."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from portal import audit, events
from portal.access import Capability, ChildAccess, active_clinician
from portal.errors import Conflict, Invalid, NotFound
from portal.models import CareTeamMembership, Department, User
from portal.vocabulary import Resource


def care_team_add(
    *,
    actor: User,
    access: ChildAccess,
    clinician_id: uuid.UUID,
    role: str,
    department_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CareTeamMembership:
    """Put a clinician (someone working in a department) on the child's care team."""
    access.require(Capability.MANAGE)
    clinician = active_clinician(clinician_id)
    department = None
    if department_id is not None:
        department = Department.objects.filter(pk=department_id).first()
        if department is None:
            raise Invalid("Unknown department.", code="unknown_department")
    begin = start or timezone.now()
    if end is not None and end <= begin:
        raise Invalid("The end must come after the start.", code="invalid_period")
    with transaction.atomic():
        membership = CareTeamMembership.objects.create(
            child=access.child,
            clinician=clinician,
            department=department,
            role=role,
            start=begin,
            end=end,
            added_by=actor,
        )
        audit.record(
            actor=actor,
            action=audit.Action.CREATE,
            entity_type=Resource.CARE_TEAM,
            entity_id=membership.pk,
            child_id=access.child.pk,
        )
        events.access_changed(user_id=clinician.pk)
    return membership


def care_team_end(*, actor: User, access: ChildAccess, membership_id: uuid.UUID) -> CareTeamMembership:
    """End a clinician's care-team membership now; their access to the child ends with it."""
    access.require(Capability.MANAGE)
    now = timezone.now()
    with transaction.atomic():
        membership = CareTeamMembership.objects.select_for_update().filter(pk=membership_id, child=access.child).first()
        if membership is None:
            raise NotFound("No such care-team member.")
        if membership.end is not None and membership.end <= now:
            raise Conflict("This membership has already ended.", code="membership_ended")
        membership.end = now
        membership.save(update_fields=["end"])
        audit.record(
            actor=actor,
            action=audit.Action.DELETE,
            entity_type=Resource.CARE_TEAM,
            entity_id=membership.pk,
            child_id=access.child.pk,
        )
        events.access_revoked(user_id=membership.clinician_id)
    return membership
