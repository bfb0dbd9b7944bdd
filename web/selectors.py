"""Reads the family pages need beyond ``care``'s selectors."""

from __future__ import annotations

import uuid
from collections import defaultdict

from django.utils import timezone

from care.models import RefillRequest, RefillTransition
from portal.access import effective_status
from portal.models import GuardianLink, User


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
