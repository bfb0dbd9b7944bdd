"""Practitioner → a clinician's account; PractitionerRole → their membership of a department.

An account that already exists with the practitioner's email address is adopted (its name is kept
if it has one). A new account has no usable password: the clinician sets one through the portal's
password reset, and enrols MFA as every clinician must. Departments come from the role's specialty
(created on first sight, named after it).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils.text import slugify

from interop.context import Context
from interop.errors import Unmappable
from interop.fhir import Resource, codes, concept_text
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from portal import audit, events
from portal.models import Department, DepartmentMembership, User
from portal.vocabulary import Resource as Entity

ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/practitioner-role"
ROLES = {
    "doctor": DepartmentMembership.Role.DOCTOR,
    "nurse": DepartmentMembership.Role.NURSE,
    "pharmacist": DepartmentMembership.Role.PHARMACIST,
}


def _display_name(data: dict[str, Any]) -> str:
    for name in data.get("name") or []:
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip() or (name.get("text") or "").strip()
        if text:
            return text[:150]
    raise Unmappable("no_name")


def _email(data: dict[str, Any]) -> str:
    for telecom in data.get("telecom") or []:
        if telecom.get("system") == "email" and "@" in (telecom.get("value") or ""):
            return str(telecom["value"]).strip().lower()
    raise Unmappable("no_email")


def practitioner_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    email, display_name = _email(data), _display_name(data)
    user = User.objects.filter(pk=record.target).first() if record and record.targets else None
    if user is None:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email, None, display_name=display_name)
            ctx.audit(audit.Action.CREATE, Entity.PRACTITIONER, user.pk)
            return Mapped(targets=[str(user.pk)])
        if user.display_name:
            return Mapped(targets=[str(user.pk)])
    changed = {}
    if user.display_name != display_name:
        changed["display_name"] = display_name
    if user.email != email and not User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        changed["email"] = email
    if changed:
        for name, value in changed.items():
            setattr(user, name, value)
        user.save(update_fields=list(changed))
        ctx.audit(audit.Action.UPDATE, Entity.PRACTITIONER, user.pk, reason="ehr_import:" + ",".join(sorted(changed)))
    if data.get("active") is False:
        _deactivate_memberships(ctx, DepartmentMembership.objects.filter(clinician=user, active=True))
    return Mapped(targets=[str(user.pk)])


def _deactivate_memberships(ctx: Context, memberships: Any) -> None:
    for membership in memberships.select_for_update():
        membership.active = False
        membership.save(update_fields=["active"])
        ctx.audit(audit.Action.UPDATE, Entity.PRACTITIONER_ROLE, membership.pk, reason="ehr_role_ended")
        events.access_changed(user_id=membership.clinician_id)


def practitioner_remove(ctx: Context, record: SourceRecord) -> None:
    """The practitioner left the export: their department memberships end (their account stays)."""
    _deactivate_memberships(
        ctx, DepartmentMembership.objects.filter(clinician_id=uuid.UUID(record.target), active=True)
    )


def _department(data: dict[str, Any]) -> Department:
    for specialty in data.get("specialty") or []:
        name = concept_text(specialty)
        code = slugify(name)[:40]
        if code:
            department, _ = Department.objects.get_or_create(code=code, defaults={"name": name[:120]})
            return department
    raise Unmappable("no_specialty")


def _role(data: dict[str, Any]) -> str:
    for concept in data.get("code") or []:
        for code in codes(concept, ROLE_SYSTEM):
            if code in ROLES:
                return ROLES[code]
    raise Unmappable("unknown_practitioner_role")


def role_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    clinician = User.objects.get(pk=ctx.record("Practitioner", data.get("practitioner")).target)
    department, role, active = _department(data), _role(data), data.get("active") is not False
    membership = DepartmentMembership.objects.filter(pk=record.target).first() if record and record.targets else None
    if membership is not None and (membership.department_id, membership.clinician_id) != (department.pk, clinician.pk):
        _deactivate_memberships(ctx, DepartmentMembership.objects.filter(pk=membership.pk, active=True))
        membership = None
    if membership is None:
        membership, created = DepartmentMembership.objects.get_or_create(
            department=department, clinician=clinician, defaults={"role": role, "active": active}
        )
        if created:
            ctx.audit(audit.Action.CREATE, Entity.PRACTITIONER_ROLE, membership.pk)
            events.access_changed(user_id=clinician.pk)
            return Mapped(targets=[str(membership.pk)])
    if (membership.role, membership.active) != (role, active):
        membership.role, membership.active = role, active
        membership.save(update_fields=["role", "active"])
        ctx.audit(audit.Action.UPDATE, Entity.PRACTITIONER_ROLE, membership.pk, reason="ehr_import:role")
        events.access_changed(user_id=clinician.pk)
    return Mapped(targets=[str(membership.pk)])


def role_remove(ctx: Context, record: SourceRecord) -> None:
    _deactivate_memberships(ctx, DepartmentMembership.objects.filter(pk=record.target, active=True))


PRACTITIONER = Mapping(target_type="portal.User", apply=practitioner_apply, remove=practitioner_remove)
PRACTITIONER_ROLE = Mapping(target_type="portal.DepartmentMembership", apply=role_apply, remove=role_remove)
