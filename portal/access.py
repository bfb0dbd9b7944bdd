"""The access policy: the one place that decides who may see and do what for which child.

Every read of a child's data starts here. Guardians see a child through an active, valid
``GuardianLink`` (with its effective scope after the adolescent rules), clinicians through a current
``CareTeamMembership``. Administrators' permissions grant no clinical content through this module.
A refusal is indistinguishable from a missing record (404, no PHI) and is audited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from portal import audit
from portal.errors import Invalid, NotFound
from portal.models import CareTeamMembership, Child, DepartmentMembership, GuardianLink, User
from portal.vocabulary import Resource


class Capability(StrEnum):
    """What an actor wants to do with a child's record."""

    VIEW = "view"  # the child's name, birth date, care team: any guardian or care-team clinician
    SCHEDULE = "schedule"  # appointments and clinicians' schedules: limited scope includes it
    MESSAGE = "message"  # the secure messenger: limited scope includes it
    CLINICAL = "clinical"  # conditions, medications, coverage: full scope or the care team
    MANAGE = "manage"  # invite or revoke guardians, change the care team: care team or manage_portal
    TREAT = "treat"  # clinical decisions (appointments, prescriptions, refill approval): the care team only
    APPROVE = "approve"  # approve a staff member's guardian link (the second person): manage_portal only
    # Actions that speak for the family, guardians only (never the care team or staff acting as them):
    FAMILY_SCHEDULE = "family_schedule"  # confirm attendance, ask to move or cancel a visit: any live link
    FAMILY_CLINICAL = "family_clinical"  # request a refill, submit insurance: a full-scope link


# The portal's two staff permissions; outside this module, ask the named checks below.
VIEW_METRICS = "portal.view_metrics"
MANAGE_PORTAL = "portal.manage_portal"

LIMITED_CAPABILITIES = frozenset({Capability.VIEW, Capability.SCHEDULE, Capability.MESSAGE})


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def live_link_q(now: datetime, prefix: str = "") -> Q:
    """Links in force at ``now``: active, within their validity, and not ended by the adult rule."""
    p = prefix
    return (
        Q(**{f"{p}status": GuardianLink.Status.ACTIVE})
        & Q(**{f"{p}valid_from__lte": now})
        & (Q(**{f"{p}valid_until__isnull": True}) | Q(**{f"{p}valid_until__gt": now}))
        & (Q(**{f"{p}court_appointed": True}) | Q(**{f"{p}child__adult_from__gt": now}))
        & Q(**{f"{p}guardian__is_active": True})
    )


def current_membership_q(now: datetime, prefix: str = "") -> Q:
    p = prefix
    return Q(**{f"{p}start__lte": now}) & (Q(**{f"{p}end__isnull": True}) | Q(**{f"{p}end__gt": now}))


def effective_scope(link: GuardianLink, now: datetime | None = None) -> str:
    """The scope a link grants at ``now``: limited from the adolescent birthday unless excepted."""
    if link.scope == GuardianLink.Scope.LIMITED:
        return GuardianLink.Scope.LIMITED
    if _now(now) >= link.child.adolescent_from and not link.adolescent_exception:
        return GuardianLink.Scope.LIMITED
    return GuardianLink.Scope.FULL


def effective_status(link: GuardianLink, now: datetime | None = None) -> str:
    """The status a link has at ``now``, counting the adult birthday and the validity period."""
    moment = _now(now)
    if link.status != GuardianLink.Status.ACTIVE:
        return link.status
    if link.valid_until is not None and link.valid_until <= moment:
        return GuardianLink.Status.EXPIRED
    if not link.court_appointed and moment >= link.child.adult_from:
        return GuardianLink.Status.EXPIRED
    return link.status


def guardian_links(user: User | Any, now: datetime | None = None) -> QuerySet[GuardianLink]:
    """The user's links in force, with their children loaded."""
    if not getattr(user, "is_authenticated", False):
        return GuardianLink.objects.none()
    return GuardianLink.objects.filter(live_link_q(_now(now)), guardian=user).select_related("child")


def care_team_memberships(user: User | Any, now: datetime | None = None) -> QuerySet[CareTeamMembership]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return CareTeamMembership.objects.none()
    return CareTeamMembership.objects.filter(current_membership_q(_now(now)), clinician=user).select_related(
        "child", "department"
    )


def visible_children(user: User | Any, now: datetime | None = None) -> QuerySet[Child]:
    """Children the user may see at all, as guardian or on the care team."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Child.objects.none()
    moment = _now(now)
    as_guardian = GuardianLink.objects.filter(live_link_q(moment), guardian=user, child=OuterRef("pk"))
    as_clinician = CareTeamMembership.objects.filter(current_membership_q(moment), clinician=user, child=OuterRef("pk"))
    return Child.objects.filter(Q(Exists(as_guardian)) | Q(Exists(as_clinician)))


@dataclass
class ChildAccess:
    """What one user may do with one child, and why."""

    child: Child
    link: GuardianLink | None = None
    scope: str | None = None
    care_roles: list[str] = field(default_factory=list)
    manager: bool = False
    # ``resolve_access`` leaves the portal permission (two queries) to the first capability that needs it.
    manager_of: Any = field(default=None, repr=False, compare=False)

    def is_manager(self) -> bool:
        if self.manager_of is not None:
            self.manager, self.manager_of = bool(self.manager_of.has_perm(MANAGE_PORTAL)), None
        return self.manager

    @property
    def is_guardian(self) -> bool:
        return self.link is not None

    @property
    def is_clinician(self) -> bool:
        return bool(self.care_roles)

    @property
    def limited_view(self) -> bool:
        """A guardian at limited scope (not also on the care team): shown when and where a visit is,
        never what it is for (no visit type, specialty department or condition-named clinic)."""
        return not self.is_clinician and self.link is not None and self.scope == GuardianLink.Scope.LIMITED

    def can(self, capability: Capability) -> bool:
        if capability == Capability.MANAGE:
            return self.is_clinician or self.is_manager()
        if capability == Capability.TREAT:
            return self.is_clinician
        if capability == Capability.APPROVE:
            return self.is_manager()
        if capability == Capability.FAMILY_SCHEDULE:
            return self.link is not None
        if capability == Capability.FAMILY_CLINICAL:
            return self.link is not None and self.scope == GuardianLink.Scope.FULL
        if self.is_clinician:
            return True
        if self.link is None:
            return False
        if self.scope == GuardianLink.Scope.FULL:
            return True
        return capability in LIMITED_CAPABILITIES

    def require(self, capability: Capability) -> None:
        """Go on only if this access allows ``capability``; otherwise the same 404 as a missing child."""
        if not self.can(capability):
            raise NotFound("No such child.")


def hide_confidential(queryset: QuerySet[Any], access: ChildAccess, field: str = "confidential") -> QuerySet[Any]:
    """Adolescent-confidential items (apps set the flag on their rows) are for the care team only:
    guardians never see them, whatever their scope."""
    if access.is_clinician:
        return queryset
    return queryset.filter(**{field: False})


def resolve_access(user: User | Any, child: Child, now: datetime | None = None) -> ChildAccess:
    moment = _now(now)
    access = ChildAccess(child=child)
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return access
    link = GuardianLink.objects.filter(live_link_q(moment), guardian=user, child=child).first()
    if link is not None:
        link.child = child
        access.link = link
        access.scope = effective_scope(link, moment)
    access.care_roles = list(
        CareTeamMembership.objects.filter(current_membership_q(moment), clinician=user, child=child).values_list(
            "role", flat=True
        )
    )
    access.manager_of = user
    return access


def _parse_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def child_for(
    user: User | Any,
    child_id: uuid.UUID | str,
    capability: Capability = Capability.VIEW,
    now: datetime | None = None,
) -> ChildAccess:
    """Fetch a child the user may act on with ``capability``, or raise 404 and audit the denial."""
    parsed = _parse_uuid(child_id)
    child = Child.objects.filter(pk=parsed).first() if parsed else None
    if child is not None:
        access = resolve_access(user, child, now)
        if access.can(capability):
            return access
    audit.deny(actor=user, entity_type=Resource.PATIENT, entity_id=str(child_id)[:64], reason=f"no_{capability}_access")
    raise NotFound("No such child.")


def works_in_department(user: User | Any) -> bool:
    """An active member of some department: the people who may be booked or put on a care team."""
    if not getattr(user, "is_authenticated", False):
        return False
    return DepartmentMembership.objects.filter(clinician=user, active=True).exists()


def is_clinician(user: User | Any) -> bool:
    """Works in a department or sits on any care team (now or in the future)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return (
        works_in_department(user)
        or CareTeamMembership.objects.filter(Q(end__isnull=True) | Q(end__gt=timezone.now()), clinician=user).exists()
    )


def active_clinician(clinician_id: uuid.UUID) -> User:
    """The active account of someone working in a department, or ``422 not_a_clinician``."""
    clinician = User.objects.filter(pk=clinician_id, is_active=True).first()
    if clinician is None or not works_in_department(clinician):
        raise Invalid("That person is not an active clinician of any department.", code="not_a_clinician")
    return clinician


def is_administrator(user: User | Any) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff or user.is_superuser or user.has_perm(VIEW_METRICS) or user.has_perm(MANAGE_PORTAL))


def is_portal_manager(user: User | Any) -> bool:
    """Holds ``manage_portal``: staff, relationships, routing and groups (never clinical content)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.has_perm(MANAGE_PORTAL))


def can_view_metrics(user: User | Any) -> bool:
    """Holds ``view_metrics``: the call-deflection figures (aggregates only, never a child's record)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.has_perm(VIEW_METRICS))


def _portal_role_q() -> Q:
    """A portal permission (directly or through a group), a department membership or a current or
    future care-team membership, as a filter on users."""
    from django.contrib.auth.models import Permission

    portal_perms = Permission.objects.filter(
        Q(user=OuterRef("pk")) | Q(group__user=OuterRef("pk")),
        content_type__app_label="portal",
        codename__in=["view_metrics", "manage_portal"],
    )
    in_department = DepartmentMembership.objects.filter(clinician=OuterRef("pk"), active=True)
    on_care_team = CareTeamMembership.objects.filter(
        Q(end__isnull=True) | Q(end__gt=timezone.now()), clinician=OuterRef("pk")
    )
    return Q(Exists(portal_perms)) | Q(Exists(in_department)) | Q(Exists(on_care_team))


def staff_accounts() -> QuerySet[User]:
    """Accounts with any staff role: Django staff, ``view_metrics``/``manage_portal``, a department or a
    care team. Such an account holds a guardian link only after a second staff member approves it."""
    return User.objects.filter(Q(is_staff=True) | Q(is_superuser=True) | _portal_role_q())


def holds_staff_role(user: User | Any) -> bool:
    """Any staff role (the accounts ``staff_accounts`` lists): the same people who must use MFA."""
    return requires_mfa(user)


def requires_mfa(user: User | Any) -> bool:
    """Clinicians and administrators hold PHI of many children: two factors are mandatory.

    One query on the hot path (every API call): staff flags, a portal permission (directly or through
    a group), a department membership or a current or future care-team membership.
    """
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff or user.is_superuser:
        return True
    return User.objects.filter(pk=user.pk).filter(_portal_role_q()).exists()


def has_mfa(user: User | Any) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(
        user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
    ).exists()
