"""The portal's endpoints: health, who am I, children, invitations, guardian links, care teams."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Status

from portal import audit, selectors, services
from portal.access import Capability, child_for, is_portal_manager
from portal.errors import Invalid, NotFound
from portal.models import User
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
    MeOut,
    RedeemIn,
)

router = Router(tags=["portal"])


def actor(request: HttpRequest) -> User:
    """The authenticated user; every operation here runs behind ``PORTAL_AUTH``."""
    return cast(User, request.user)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


async def _channel_layer_round_trip() -> bool:
    import asyncio

    layer = get_channel_layer()
    if layer is None:
        return False
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    return bool(message.get("type") == "health.ping")


def _channel_layer_ok() -> bool:
    try:
        return async_to_sync(_channel_layer_round_trip)()
    except Exception:
        return False


@router.get(
    "/health", auth=None, response={200: HealthOut, 503: HealthOut}, summary="Database and channel layer status"
)
def health(request: HttpRequest) -> Status[dict[str, str]]:
    database = _database_ok()
    layer = _channel_layer_ok()
    body = {
        "status": "ok" if database and layer else "degraded",
        "database": "ok" if database else "unavailable",
        "channel_layer": "ok" if layer else "unavailable",
    }
    return Status(200 if database else 503, body)


@router.get("/me", response=MeOut, summary="Who am I: children as guardian and as clinician, permissions")
def me(request: HttpRequest) -> dict[str, Any]:
    return selectors.me_summary(user=actor(request))


@router.get("/children", response=list[ChildOut], summary="Children I may see")
def children(request: HttpRequest) -> list[dict[str, Any]]:
    return selectors.children_list(user=actor(request))


@router.get("/children/{child_id}", response=ChildOut, summary="One child")
def child(request: HttpRequest, child_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.VIEW)
    return selectors.child_detail(user=actor(request), access=access)


@router.get("/children/{child_id}/care-team", response=list[CareTeamMemberOut], summary="The child's care team")
def care_team(request: HttpRequest, child_id: uuid.UUID) -> list[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.VIEW)
    return selectors.care_team_list(user=actor(request), access=access)


@router.post("/children/{child_id}/care-team", response={201: CareTeamMemberOut}, summary="Staff: add a clinician")
def care_team_add(request: HttpRequest, child_id: uuid.UUID, payload: CareTeamIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    membership = services.care_team_add(actor=actor(request), access=access, **payload.dict())
    return Status(
        201,
        {
            "id": membership.pk,
            "clinician_id": membership.clinician_id,
            "clinician_name": str(membership.clinician),
            "role": membership.role,
            "department": membership.department.name if membership.department else None,
            "start": membership.start,
            "end": membership.end,
        },
    )


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
    response=list[GuardianLinkOut],
    summary="Staff: the child's guardian links, invitations and history",
)
def guardian_links(request: HttpRequest, child_id: uuid.UUID) -> list[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    return selectors.guardian_links_list(user=actor(request), access=access)


@router.post(
    "/children/{child_id}/invitations",
    response={201: InvitationOut},
    summary="Staff: invite a guardian (returns a single-use code)",
)
def invite(request: HttpRequest, child_id: uuid.UUID, payload: InvitationIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    invitation, code = services.invitation_create(actor=actor(request), access=access, **payload.dict())
    return Status(
        201,
        {
            "id": invitation.pk,
            "child_id": access.child.pk,
            "code": code,
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
    return selectors.link_out(link)


@router.post(
    "/children/{child_id}/guardian-links/{link_id}/revoke",
    response=GuardianLinkOut,
    summary="Staff: revoke a guardian's access or withdraw an invitation",
)
def link_revoke(request: HttpRequest, child_id: uuid.UUID, link_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    link = services.link_revoke(actor=actor(request), access=access, link_id=link_id)
    return selectors.link_out(link)


@router.post("/invitations/redeem", response={201: GuardianLinkOut}, summary="Guardian: redeem an invitation code")
def redeem(request: HttpRequest, payload: RedeemIn) -> Status[dict[str, Any]]:
    link = services.invitation_redeem(
        actor=actor(request),
        code=payload.code,
        client_address=str(request.META.get("REMOTE_ADDR", "")),
    )
    return Status(201, selectors.link_out(link))


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
    return selectors.access_log(user=actor(request), access=access, before=before, limit=limit)


class ExportQuery(In):
    start: datetime
    end: datetime
    format: Literal["csv", "json"] = "csv"


@router.get("/audit/export", response={200: None}, summary="Administrators: export the audit trail for a period")
def audit_export(request: HttpRequest, query: Query[ExportQuery]) -> StreamingHttpResponse:
    user = actor(request)
    if not is_portal_manager(user):
        audit.deny(actor=user, entity_type="AuditEvent", entity_id=None, reason="no_export_permission")
        raise NotFound()
    if query.end <= query.start or query.end - query.start > timedelta(days=400):
        raise Invalid("end must be after start, and the period at most 400 days.", code="invalid_period")
    audit.record(
        actor=user,
        action=audit.Action.EXPORT,
        entity_type="AuditEvent",
        reason=f"period:{query.start.date()}..{query.end.date()}",
    )
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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=selectors.EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
