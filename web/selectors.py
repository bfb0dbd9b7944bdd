"""Reads the family pages need beyond ``care``'s selectors."""

from __future__ import annotations

from django.utils import timezone

from portal.access import effective_status
from portal.models import GuardianLink, User


def ended_links(*, user: User) -> list[str]:
    """Why an account that sees no child sees none: the status of each of its links that is no longer
    in force (``revoked``, ``expired``, ...), without naming the child. Its own links only."""
    now = timezone.now()
    links = GuardianLink.objects.filter(guardian=user).select_related("child")
    return sorted({effective_status(link, now) for link in links} - {"active"})
