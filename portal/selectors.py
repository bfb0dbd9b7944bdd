"""Reads on accounts and relationships, already scoped by the access policy and audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from portal import audit, ledger
from portal.access import (
    ChildAccess,
    can_view_metrics,
    care_team_memberships,
    effective_scope,
    guardian_links,
    has_mfa,
    is_portal_manager,
    requires_mfa,
    visible_children,
)
from portal.errors import NotFound
from portal.models import AuditEvent, CareTeamMembership, GuardianLink, User
from portal.pagination import Pager
from portal.vocabulary import Resource

PORTAL_PERMISSIONS = (("view_metrics", can_view_metrics), ("manage_portal", is_portal_manager))


@dataclass(frozen=True)
class Me:
    """Who the user is to the portal: links and care-team memberships in force at ``now``, two-factor
    state, and the portal permissions held."""

    user: User
    now: datetime
    links: list[GuardianLink]
    memberships: list[CareTeamMembership]
    mfa_enrolled: bool
    mfa_required: bool
    permissions: list[str]


def me_summary(*, user: User) -> Me:
    now = timezone.now()
    links = list(guardian_links(user, now))
    memberships = list(care_team_memberships(user, now))
    child_ids = {link.child_id for link in links} | {membership.child_id for membership in memberships}
    audit.reads(user, Resource.PATIENT, sorted(child_ids, key=str))
    return Me(
        user=user,
        now=now,
        links=links,
        memberships=memberships,
        mfa_enrolled=has_mfa(user),
        mfa_required=requires_mfa(user),
        permissions=[name for name, holds in PORTAL_PERMISSIONS if holds(user)],
    )


def children_list(*, user: User) -> list[ChildAccess]:
    """Every child the user may see, with what the user may see of each (three queries)."""
    now = timezone.now()
    children = list(visible_children(user, now).order_by("date_of_birth", "pk"))
    links = {link.child_id: link for link in guardian_links(user, now)}
    roles: dict[Any, list[str]] = {}
    for child_id, role in care_team_memberships(user, now).values_list("child_id", "role"):
        roles.setdefault(child_id, []).append(role)
    result = []
    for child in children:
        access = ChildAccess(child=child, link=links.get(child.pk), care_roles=roles.get(child.pk, []))
        if access.link is not None:
            access.link.child = child
            access.scope = effective_scope(access.link, now)
        result.append(access)
    audit.reads(user, Resource.PATIENT, [child.pk for child in children])
    return result


def child_detail(*, user: User, access: ChildAccess) -> ChildAccess:
    audit.reads(user, Resource.PATIENT, [access.child.pk])
    return access


def care_team_list(*, user: User, access: ChildAccess) -> list[CareTeamMembership]:
    now = timezone.now()
    rows = (
        CareTeamMembership.objects.filter(child=access.child, start__lte=now)
        .exclude(end__lte=now)
        .select_related("clinician", "department")
        .order_by("role", "start")
    )
    audit.record(
        actor=user,
        action=audit.Action.READ,
        entity_type=Resource.CARE_TEAM,
        entity_id=access.child.pk,
        child_id=access.child.pk,
    )
    return list(rows)


def guardian_links_list(*, user: User, access: ChildAccess, page: Pager | None = None) -> list[GuardianLink]:
    """Staff view of every link of a child, invitations and history included (invitations loaded);
    one page of them with ``page``."""
    links = (
        GuardianLink.objects.filter(child=access.child).select_related("guardian", "invitation").order_by("granted_at")
    )
    if page is not None:
        links = page.queryset(links)
    audit.record(
        actor=user,
        action=audit.Action.READ,
        entity_type=Resource.RELATED_PERSON,
        entity_id=access.child.pk,
        child_id=access.child.pk,
    )
    result = list(links)
    for link in result:
        link.child = access.child
    return result


def links_awaiting_approval(*, user: User, page: Pager | None = None) -> list[GuardianLink]:
    """For ``manage_portal``: staff accounts' guardian links waiting for a second staff member, oldest
    first, with who holds each and who made the invitation (so the approver can see they are neither).
    Ids and people only, no clinical content (invitations and their creators loaded). Anyone else
    gets 404, audited."""
    if not is_portal_manager(user):
        audit.deny(actor=user, entity_type=Resource.RELATED_PERSON, entity_id=None, reason="not_staff")
        raise NotFound()
    pending = GuardianLink.objects.filter(status=GuardianLink.Status.PENDING_APPROVAL).select_related(
        "guardian", "granted_by", "invitation", "invitation__created_by"
    )
    rows = list(page.queryset(pending) if page is not None else pending.order_by("valid_from", "pk")[:500])
    audit.reads(user, Resource.RELATED_PERSON, sorted({row.child_id for row in rows}, key=str))
    return rows


ACCESS_LOG_LIMIT = 100


def _actor_roles(child_id: Any, actor_ids: set[Any]) -> dict[Any, str]:
    """How each actor relates to the child, in three queries whatever the number of actors."""
    roles: dict[Any, str] = {}
    for guardian_id, relationship in GuardianLink.objects.filter(
        child_id=child_id, guardian_id__in=actor_ids
    ).values_list("guardian_id", "relationship"):
        roles[guardian_id] = f"guardian ({GuardianLink.Relationship(relationship).label.lower()})"
    for clinician_id, role in CareTeamMembership.objects.filter(
        child_id=child_id, clinician_id__in=actor_ids
    ).values_list("clinician_id", "role"):
        roles[clinician_id] = f"care team ({CareTeamMembership.Role(role).label.lower()})"
    return roles


@dataclass(frozen=True)
class AccessLogEntry:
    event: AuditEvent
    actor_name: str
    actor_role: str


@dataclass(frozen=True)
class AccessLogPage:
    entries: list[AccessLogEntry]
    next_before: int | None  # the ``before`` of the next (older) page, if there is one


def access_log(
    *, user: User, access: ChildAccess, before: int | None = None, limit: int = ACCESS_LOG_LIMIT
) -> AccessLogPage:
    """Who read or changed this child's record, newest first (FHIR AuditEvent, for families).

    Clinicians and staff are named by role and name; failed sign-ins and other children's rows never
    appear, since every row shown names this child.
    """
    rows = AuditEvent.objects.filter(child_id=access.child.pk).order_by("-seq")
    if before is not None:
        rows = rows.filter(seq__lt=before)
    page = list(rows[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    actor_ids = {row.actor_id for row in page if row.actor_id}
    names = {pk: str(actor) for pk, actor in ((u.pk, u) for u in User.objects.filter(pk__in=actor_ids))}
    roles = _actor_roles(access.child.pk, actor_ids)
    audit.record(
        actor=user,
        action=audit.Action.READ,
        entity_type=Resource.AUDIT_EVENT,
        entity_id=access.child.pk,
        child_id=access.child.pk,
    )
    entries = []
    for row in page:
        if row.actor_id is None:
            who, role = "Care portal", "system"
        else:
            who = names.get(row.actor_id, "Former user")
            role = roles.get(row.actor_id) or "staff"
        entries.append(AccessLogEntry(row, who, role))
    return AccessLogPage(entries, page[-1].seq if more and page else None)


EXPORT_COLUMNS = (
    "seq",
    "id",
    "recorded_at",
    "actor",
    "on_behalf_of",
    "action",
    "entity_type",
    "entity_id",
    "child",
    "outcome",
    "reason",
    "client_address",
    "user_agent",
    "count",
    "leaf_index",
    "leaf_hash",
    "prev_hash",
    "hash",
)


def audit_export_rows(*, start: Any, end: Any) -> Any:
    """Audit rows recorded in [start, end), oldest first, as the canonical entries plus their ledger
    leaf (index and hash: each entry hashes to its leaf, which ``audit_checkpoint --inclusion`` proves
    against a signed checkpoint) and, for rows written before the ledger, their chain hashes. Pending
    rows are sealed first. Streams from the database in chunks."""
    ledger.seal()
    rows = (
        AuditEvent.objects.filter(recorded_at__gte=start, recorded_at__lt=end)
        .annotate(leaf_index=F("leaf__index"), leaf_hash=F("leaf__hash"))
        .order_by("seq")
    )
    for row in rows.iterator(chunk_size=2000):
        yield {
            **row.entry(),
            "leaf_index": row.leaf_index,
            "leaf_hash": row.leaf_hash,
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }
