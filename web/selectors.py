"""Reads the family pages need beyond ``care``'s selectors."""

from __future__ import annotations

import uuid
from collections import defaultdict

from django.utils import timezone

from care.models import RefillRequest, RefillTransition
from messaging.models import UserEvent
from portal.access import Capability, ChildAccess, current_membership_q, effective_status
from portal.models import CareTeamMembership, DepartmentMembership, GuardianLink, User


def ended_links(*, user: User) -> list[str]:
    """Why an account that sees no child sees none: the status of each of its links that is no longer
    in force (``revoked``, ``expired``, ...), without naming the child. Its own links only."""
    now = timezone.now()
    links = GuardianLink.objects.filter(guardian=user).select_related("child")
    return sorted({effective_status(link, now) for link in links} - {"active"})


def refill_history(*, refills: list[RefillRequest]) -> dict[uuid.UUID, list[RefillTransition]]:
    """Each refill's steps so far, oldest first, in one query. The refills come from
    ``care.selectors.refills_list`` (access already checked and audited there)."""
    history: dict[uuid.UUID, list[RefillTransition]] = defaultdict(list)
    rows = RefillTransition.objects.filter(refill__in=refills).only("refill_id", "to_status", "at").order_by("at", "pk")
    for row in rows:
        history[row.refill_id].append(row)
    return history


def newest_event_id(*, user: User) -> int:
    """The newest event of the user's stream: where a page's live updates resume from (the page
    shows everything up to it)."""
    newest = UserEvent.objects.filter(user=user).order_by("-id").values_list("id", flat=True).first()
    return int(newest or 0)


def care_team(*, access: ChildAccess) -> list[tuple[uuid.UUID, str]]:
    """The clinicians currently on the child's care team (a conversation may be assigned to them),
    for a reader the access policy lets treat the child."""
    access.require(Capability.TREAT)
    rows = (
        CareTeamMembership.objects.filter(
            current_membership_q(timezone.now()), child=access.child, clinician__is_active=True
        )
        .select_related("clinician")
        .order_by("clinician__display_name", "clinician_id")
    )
    found: dict[uuid.UUID, str] = {}
    for row in rows:
        found.setdefault(row.clinician_id, str(row.clinician))
    return list(found.items())


def my_pools(*, user: User) -> list[tuple[uuid.UUID, str]]:
    """The departments whose pools the clinician works in (the inbox's pool filter)."""
    rows = DepartmentMembership.objects.filter(clinician=user, active=True).select_related("department")
    return sorted({(row.department_id, row.department.name) for row in rows}, key=lambda item: item[1])
