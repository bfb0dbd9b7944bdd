"""Coverage → care's Coverage, verified by the EHR (the import actor is its verifier).

Copays come from ``costToBeneficiary`` (HL7 copay types: gpvisit → primary care, spvisit → specialist,
emergency); member id and subscriber name stay encrypted. Gone from a full export: superseded.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.utils import timezone

from care.models import Coverage
from interop.context import Context
from interop.errors import Unmappable, named
from interop.fhir import Resource, codes
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit
from portal.access import Capability
from portal.models import Child
from portal.vocabulary import EventType
from portal.vocabulary import Resource as Entity

STATUSES = {"active": Coverage.Status.ACTIVE, "draft": Coverage.Status.PENDING, "cancelled": Coverage.Status.SUPERSEDED}
COPAYS = {"gpvisit": "primary_care", "spvisit": "specialist", "emergency": "emergency"}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


def _classes(data: dict[str, Any]) -> tuple[str, str]:
    plan, group = "", ""
    for item in data.get("class") or []:
        kinds = codes(item.get("type"))
        if "plan" in kinds:
            plan = str(item.get("name") or item.get("value") or "")
        if "group" in kinds:
            group = str(item.get("value") or "")
    return plan[:120], group[:60]


def _copays(data: dict[str, Any]) -> dict[str, str]:
    found = {}
    for cost in data.get("costToBeneficiary") or []:
        money = cost.get("valueMoney") or {}
        for code in codes(cost.get("type")):
            if code in COPAYS and money.get("value") is not None:
                found[COPAYS[code]] = str(Decimal(str(money["value"])).quantize(Decimal("0.01")))
    return found


def fields(ctx: Context, data: dict[str, Any]) -> tuple[Child, dict[str, Any]]:
    if data.get("status") not in STATUSES:
        raise Unmappable(f"coverage_status:{named(data.get('status'), {'entered-in-error'})}")
    child = ctx.child(data.get("beneficiary"))
    payer = next((str(p.get("display")) for p in data.get("payor") or [] if p.get("display")), "")
    if not payer:
        raise Unmappable("no_payer_name")
    member_id = data.get("subscriberId") or next(
        (str(i["value"]) for i in data.get("identifier") or [] if "MB" in codes(i.get("type")) and i.get("value")), ""
    )
    if not member_id:
        raise Unmappable("no_member_id")
    period = data.get("period") or {}
    plan, group = _classes(data)
    relationship = (codes(data.get("relationship")) or ["child"])[0]
    return child, {
        "status": STATUSES[data["status"]],
        "payer": payer[:120],
        "plan_name": plan,
        "member_id": str(member_id),
        "group_number": group,
        "subscriber_name": str((data.get("subscriber") or {}).get("display") or ""),
        "subscriber_relationship": relationship[:20],
        "period_start": _day(period.get("start")),
        "period_end": _day(period.get("end")),
        "copays": _copays(data),
    }


def _publish(ctx: Context, child: Child, coverage: Coverage) -> None:
    ctx.publish(
        EventType.COVERAGE_CHANGED, child, Entity.COVERAGE, coverage.pk, Capability.CLINICAL, status=coverage.status
    )


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    child, wanted = fields(ctx, resource.data)
    coverage = Coverage.objects.filter(pk=record.target).first() if record and record.targets else None
    if coverage is None or coverage.child_id != child.pk:
        now = timezone.now()
        coverage = Coverage.objects.create(
            child=child, submitted_by=ctx.actor, submitted_at=now, verified_by=ctx.actor, verified_at=now, **wanted
        )
        ctx.audit(audit.Action.CREATE, Entity.COVERAGE, coverage.pk, child.pk)
        _publish(ctx, child, coverage)
        return Mapped(targets=[str(coverage.pk)])
    changed = [name for name, value in wanted.items() if getattr(coverage, name) != value]
    if changed:
        for name in changed:
            setattr(coverage, name, wanted[name])
        coverage.save(update_fields=[*changed, "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.COVERAGE, coverage.pk, child.pk, reason="ehr_import")
        _publish(ctx, child, coverage)
    return Mapped(targets=[str(coverage.pk)])


def remove(ctx: Context, record: SourceRecord) -> None:
    coverage = Coverage.objects.select_related("child").filter(pk=record.target).first()
    if coverage is None or coverage.status == Coverage.Status.SUPERSEDED:
        return
    coverage.status = Coverage.Status.SUPERSEDED
    coverage.save(update_fields=["status", "updated_at"])
    ctx.audit(audit.Action.UPDATE, Entity.COVERAGE, coverage.pk, coverage.child_id, reason="ehr_removed")
    _publish(ctx, coverage.child, coverage)


MAPPING = Mapping(target_type="care.Coverage", apply=apply, remove=remove)
