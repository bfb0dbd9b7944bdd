"""Which pool a new thread goes to, when the care team owes a reply, and who is on call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from care.models import ScheduleException
from messaging import hours
from messaging.conf import reply_within
from messaging.models import RoutingRule
from portal.access import current_membership_q
from portal.models import CareTeamMembership, Child, Department, DepartmentMembership


@dataclass(frozen=True)
class Route:
    pool: Department | None
    minutes: int
    business_hours_only: bool

    def reply_by(self, moment: datetime) -> datetime:
        return hours.reply_by(moment, self.minutes, self.business_hours_only)


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


def pool_leads(pool: Department | None) -> list[DepartmentMembership]:
    if pool is None:
        return []
    return list(
        DepartmentMembership.objects.filter(department=pool, is_lead=True, active=True, clinician__is_active=True)
    )


def on_call(*, child: Child, pool: Department | None, moment: datetime) -> set[uuid.UUID]:
    """Clinicians on call now for the thread's pool or on the child's care team; failing that, the pool
    leads (someone must always hear about a red flag)."""
    care_team = CareTeamMembership.objects.filter(current_membership_q(moment), child=child).values("clinician_id")
    members = DepartmentMembership.objects.filter(department=pool, active=True).values("clinician_id")
    duty = ScheduleException.objects.filter(
        kind=ScheduleException.Kind.ON_CALL, start__lte=moment, end__gt=moment, clinician__is_active=True
    ).filter(Q(clinician_id__in=care_team) | Q(clinician_id__in=members) | Q(department=pool, department__isnull=False))
    found: set[uuid.UUID] = set(duty.values_list("clinician_id", flat=True))
    if not found:
        found = {lead.clinician_id for lead in pool_leads(pool)}
    return found
