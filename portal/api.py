"""The portal's endpoints: health, who am I, children, invitations, guardian links, care teams."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Status
from ninja.decorators import decorate_view

from portal import audit, presenters, refusals, selectors, services
from portal.access import Capability, child_for, is_portal_manager
from portal.csvsafe import csv_stream
from portal.errors import Invalid, NotFound
from portal.etag import etag
from portal.health import HEALTH_COMPONENTS as HEALTH_COMPONENTS
from portal.health import HealthComponent as HealthComponent
from portal.health import answer
from portal.health import register_health_component as register_health_component
from portal.idempotency import status_for
from portal.models import User
from portal.pagination import Page, PageIn, pager
from portal.schemas import (
    AccessLogOut,
    CareTeamIn,
    CareTeamMemberOut,
    ChildOut,
    GuardianLinkOut,
    HealthOut,
    In,
    InvitationIn,
    InvitationOut,
    LinkUpdateIn,
    MeIn,
    MeOut,
    PendingLinkOut,
    RedeemIn,
)
from portal.vocabulary import Resource

logger = logging.getLogger(__name__)
router = Router(tags=["portal"])


def actor(request: HttpRequest) -> User:
    """The authenticated user; every operation here runs behind ``PORTAL_AUTH``."""
    return cast(User, request.user)


@router.get(
    "/health",
    auth=None,
    response={200: HealthOut, 503: HealthOut},
    summary="Status of each component: ok, degraded (which ones) or down",
)
def health(request: HttpRequest) -> Status[dict[str, Any]]:
    # GET is answered by HealthMiddleware before sessions and authentication; the same answer here
    # for a request that reaches the router (a HEAD, a test calling the view).
    status, body = answer()
    return Status(status, body)


@router.get("/me", response=MeOut, summary="Who am I: children as guardian and as clinician, permissions")
def me(request: HttpRequest) -> dict[str, Any]:
    return presenters.me_out(selectors.me_summary(user=actor(request)))


@router.patch("/me", response=MeOut, summary="Change my language (notifications and automatic replies)")
def me_update(request: HttpRequest, payload: MeIn) -> dict[str, Any]:
    services.user_language_set(actor=actor(request), language=payload.language)
    return presenters.me_out(selectors.me_summary(user=actor(request)))


@router.get("/children", response={200: Page[ChildOut], 304: None}, summary="Children I may see, eldest first")
@decorate_view(etag)
def children(request: HttpRequest, page: Query[PageIn]) -> dict[str, Any]:
    pages = pager(request, page, "date_of_birth", "id")
    rows = selectors.children_list(user=actor(request))
    return pages.page_of(rows, presenters.child_out, row=lambda access: access.child)


@router.get("/children/{child_id}", response=ChildOut, summary="One child")
def child(request: HttpRequest, child_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.VIEW)
    return presenters.child_out(selectors.child_detail(user=actor(request), access=access))


@router.get("/children/{child_id}/care-team", response=Page[CareTeamMemberOut], summary="The child's care team")
def care_team(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.VIEW)
    pages = pager(request, page, "role", "start", "id")
    rows = selectors.care_team_list(user=actor(request), access=access)
    return pages.page_of(rows, lambda row: presenters.care_team_member_out(row, limited=access.limited_view))


@router.post("/children/{child_id}/care-team", response={201: CareTeamMemberOut}, summary="Staff: add a clinician")
def care_team_add(request: HttpRequest, child_id: uuid.UUID, payload: CareTeamIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    membership = services.care_team_add(actor=actor(request), access=access, **payload.dict())
    return Status(status_for(created=True), presenters.care_team_member_out(membership))


@router.delete(
    "/children/{child_id}/care-team/{membership_id}",
    response={204: None},
    summary="Staff: end a clinician's membership",
)
def care_team_end(request: HttpRequest, child_id: uuid.UUID, membership_id: uuid.UUID) -> Status[None]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    services.care_team_end(actor=actor(request), access=access, membership_id=membership_id)
    return Status(204, None)


@router.get(
    "/children/{child_id}/guardian-links",
    response=Page[GuardianLinkOut],
    summary="Staff: the child's guardian links, invitations and history",
)
def guardian_links(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    pages = pager(request, page, "granted_at", "id")
    rows = selectors.guardian_links_list(user=actor(request), access=access, page=pages)
    return pages.page(rows, presenters.guardian_link_out)


@router.post(
    "/children/{child_id}/invitations",
    response={201: InvitationOut},
    summary="Staff: invite a guardian (returns a single-use code)",
)
def invite(request: HttpRequest, child_id: uuid.UUID, payload: InvitationIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    invitation, code = services.invitation_create(actor=actor(request), access=access, **payload.dict())
    return Status(
        status_for(created=True),
        {
            "id": invitation.pk,
            "child_id": access.child.pk,
            "code": code,
            "recipient_email": invitation.recipient_email,
            "relationship": invitation.link.relationship,
            "scope": invitation.link.scope,
            "expires_at": invitation.expires_at,
        },
    )


@router.patch(
    "/children/{child_id}/guardian-links/{link_id}",
    response=GuardianLinkOut,
    summary="Staff: change scope, record an adolescent exception or a court appointment",
)
def link_update(request: HttpRequest, child_id: uuid.UUID, link_id: uuid.UUID, payload: LinkUpdateIn) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    link = services.link_update(
        actor=actor(request),
        access=access,
        link_id=link_id,
        **payload.dict(exclude_unset=True),
    )
    return presenters.link_out(link)


@router.post(
    "/children/{child_id}/guardian-links/{link_id}/revoke",
    response=GuardianLinkOut,
    summary="Staff: revoke a guardian's access or withdraw an invitation",
)
def link_revoke(request: HttpRequest, child_id: uuid.UUID, link_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    link = services.link_revoke(actor=actor(request), access=access, link_id=link_id)
    return presenters.link_out(link)


@router.post(
    "/children/{child_id}/guardian-links/{link_id}/approve",
    response=GuardianLinkOut,
    summary="Staff (manage_portal): approve a staff member's guardian link as the second person",
)
def link_approve(request: HttpRequest, child_id: uuid.UUID, link_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.APPROVE)
    link = services.link_approve(actor=actor(request), access=access, link_id=link_id)
    return presenters.link_out(link)


@router.get(
    "/guardian-links/pending-approval",
    response=Page[PendingLinkOut],
    summary="Staff (manage_portal): staff accounts' guardian links waiting for a second person",
)
def links_awaiting_approval(request: HttpRequest, page: Query[PageIn]) -> dict[str, Any]:
    pages = pager(request, page, "valid_from", "id")
    rows = selectors.links_awaiting_approval(user=actor(request), page=pages)
    return pages.page(rows, presenters.pending_link_out)


@router.post("/invitations/redeem", response={201: GuardianLinkOut}, summary="Guardian: redeem an invitation code")
def redeem(request: HttpRequest, payload: RedeemIn) -> Status[dict[str, Any]]:
    link = services.invitation_redeem(
        actor=actor(request),
        code=payload.code,
        client_address=str(request.META.get("REMOTE_ADDR", "")),
    )
    return Status(status_for(created=True), presenters.link_out(link))


@router.get(
    "/children/{child_id}/access-log",
    response=AccessLogOut,
    summary="Who accessed the child's record (full-scope guardians and the care team)",
)
def access_log(
    request: HttpRequest, child_id: uuid.UUID, before: int | None = None, limit: int = 100
) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    if not 1 <= limit <= 500:
        raise Invalid("limit must be between 1 and 500.", code="invalid_limit")
    return presenters.access_log_out(
        selectors.access_log(user=actor(request), access=access, before=before, limit=limit)
    )


class ExportQuery(In):
    start: datetime
    end: datetime
    format: Literal["csv", "json"] = "csv"


@router.get("/audit/export", response={200: None}, summary="Administrators: export the audit trail for a period")
def audit_export(request: HttpRequest, query: Query[ExportQuery]) -> StreamingHttpResponse:
    user = actor(request)
    if not is_portal_manager(user):
        audit.deny(actor=user, entity_type=Resource.AUDIT_EVENT, entity_id=None, reason="no_export_permission")
        raise NotFound()
    if query.end <= query.start or query.end - query.start > timedelta(days=400):
        raise Invalid("end must be after start, and the period at most 400 days.", code="invalid_period")
    audit.record(
        actor=user,
        action=audit.Action.EXPORT,
        entity_type=Resource.AUDIT_EVENT,
        reason=f"period:{query.start.date()}..{query.end.date()}",
    )
    refusals.flush()  # closed windows of coalesced refusals join the trail before it is read
    rows = selectors.audit_export_rows(start=query.start, end=query.end)
    name = f"audit-{query.start.date()}-{query.end.date()}"
    if query.format == "json":
        response = StreamingHttpResponse(_json_lines(rows), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    else:
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


def _json_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, sort_keys=True) + "\n"


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    # "count" is in an entry only when it is not 1 (see AuditEvent.entry).
    return csv_stream(selectors.EXPORT_COLUMNS, rows, extrasaction="ignore", restval=1)
