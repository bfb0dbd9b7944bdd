"""Which pool a new thread goes to and when the care team owes a reply. Hours and on-call duty belong
to care (``care.scheduling``); this module and ``messaging.alerts`` ask it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from care import scheduling
from messaging.conf import reply_within
from messaging.models import RoutingRule
from portal.access import current_membership_q
from portal.models import CareTeamMembership, Child, Department


@dataclass(frozen=True)
class Route:
    pool: Department | None
    minutes: int
    business_hours_only: bool

    def reply_by(self, moment: datetime) -> datetime:
        """Counted in the pool's business hours (its own where it keeps them, else the hospital's)."""
        return scheduling.department_reply_by(self.pool, moment, self.minutes, self.business_hours_only)


def _care_team_department(child: Child, moment: datetime) -> Department | None:
    membership = (
        CareTeamMembership.objects.filter(current_membership_q(moment), child=child, department__isnull=False)
        .select_related("department")
        .order_by("role", "start")
        .first()
    )
    return membership.department if membership else None


def route(*, child: Child, topic: str, priority: str, moment: datetime) -> Route:
    """The first active rule matching topic and priority; otherwise the care team's department with
    the default reply-by for the priority."""
    rule = (
        RoutingRule.objects.filter(active=True)
        .filter(Q(topic="") | Q(topic=topic), Q(priority="") | Q(priority=priority))
        .select_related("department")
        .order_by("order", "id")
        .first()
    )
    if rule is not None:
        return Route(rule.department, rule.reply_within_minutes, rule.business_hours_only)
    minutes, business_only = reply_within()[priority]
    return Route(_care_team_department(child, moment), minutes, business_only)
