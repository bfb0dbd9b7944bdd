"""Condition → a SNOMED CT code on the child's ``conditions`` (what peer groups match on and screens
name through ``portal.conditions``). A code stays while any live imported Condition of the child
carries it (or staff entered it); resolved, refuted or removed Conditions take it away."""

from __future__ import annotations

from typing import Any

from interop.context import Context
from interop.errors import Unmappable
from interop.fhir import Resource, codes
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit
from portal.models import Child
from portal.vocabulary import Resource as Entity

SNOMED = "http://snomed.info/sct"
PRESENT = {"active", "recurrence", "relapse"}
NOT_TRUE = {"refuted", "entered-in-error"}


def _present(data: dict[str, Any]) -> bool:
    clinical = codes(data.get("clinicalStatus"))
    verification = codes(data.get("verificationStatus"))
    return bool(set(clinical) & PRESENT) and not set(verification) & NOT_TRUE


def _set_codes(ctx: Context, child: Child, add: str | None, drop: str | None, record: SourceRecord | None) -> None:
    current = list(child.conditions or [])
    wanted = list(current)
    if drop and drop != add and drop in wanted and not _still_held(child, drop, record):
        wanted.remove(drop)
    if add and add not in wanted:
        wanted.append(add)
    if wanted != current:
        child.conditions = wanted
        child.save(update_fields=["conditions", "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.CONDITION, record.pk if record else None, child.pk, reason="ehr_import")


def _still_held(child: Child, code: str, record: SourceRecord | None) -> bool:
    """Another live imported Condition of the child carries the code."""
    others = SourceRecord.objects.filter(resource_type="Condition", deleted=False, child_id=child.pk)
    if record is not None:
        others = others.exclude(pk=record.pk)
    return any(other.state.get("code") == code and other.state.get("present") for other in others)


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("subject"))
    code = next(iter(codes(data.get("code"), SNOMED)), None)
    if code is None:
        raise Unmappable("no_snomed_code")
    present = _present(data)
    previous = record.state.get("code") if record and record.state.get("present") else None
    _set_codes(ctx, child, code if present else None, previous if previous != code or not present else None, record)
    return Mapped(targets=[str(child.pk)], state={"code": code, "present": present}, child_id=child.pk)


def remove(ctx: Context, record: SourceRecord) -> None:
    child = Child.objects.filter(pk=record.target).first()
    if child is not None and record.state.get("present"):
        _set_codes(ctx, child, None, record.state.get("code"), record)


# ``_still_held`` reads the child's other Condition records: each is saved as soon as it is applied.
MAPPING = Mapping(target_type="portal.Child", apply=apply, remove=remove, reads_own_type=True)
