"""What every mapping shares: the import actor, the run, reference resolution, audit and events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from care.services.common import publish
from interop.errors import Unmappable
from interop.fhir import reference_id
from interop.models import ImportRun, SourceRecord
from portal import audit
from portal.access import Capability, ChildAccess
from portal.models import Child, Department, DepartmentMembership, User
from portal.vocabulary import EventType, Resource

# The account the import acts as: not a person, never able to sign in (inactive, no usable password).
# Audit rows of imported writes name it as their actor, and invitations it makes name it as creator.
IMPORT_ACTOR_EMAIL = "ehr-import@system.invalid"


def import_actor() -> User:
    user = User.objects.filter(email=IMPORT_ACTOR_EMAIL).first()
    if user is None:
        user = User.objects.create_user(IMPORT_ACTOR_EMAIL, None, display_name="EHR import", is_active=False)
    return user


@dataclass
class Context:
    actor: User
    run: ImportRun
    # References resolved in the current batch (cleared with each batch: a rolled-back batch may have
    # made records that no longer exist).
    resolved: dict[tuple[str, str], SourceRecord] = field(default_factory=dict)

    def forget(self) -> None:
        self.resolved.clear()

    def record(self, resource_type: str, reference: dict[str, Any] | None) -> SourceRecord:
        """The live record a reference points to, or ``Unmappable("unresolved_reference:<Type>")``
        (the resource was never imported, was rejected, or was deleted)."""
        ident = reference_id(reference, resource_type)
        if ident is None:
            raise Unmappable(f"no_reference:{resource_type}")
        found = self.resolved.get((resource_type, ident))
        if found is None:
            found = SourceRecord.objects.filter(resource_type=resource_type, resource_id=ident, deleted=False).first()
        if found is None or not found.targets:
            raise Unmappable(f"unresolved_reference:{resource_type}")
        self.resolved[(resource_type, ident)] = found
        return found

    def child(self, reference: dict[str, Any] | None) -> Child:
        found = self.record("Patient", reference)
        return Child.objects.get(pk=found.target)

    def clinician(self, reference: dict[str, Any] | None) -> tuple[User, Department | None]:
        """The clinician (and department, through a PractitionerRole) a reference names."""
        kind = ((reference or {}).get("reference") or "").partition("/")[0]
        if kind == "PractitionerRole":
            membership = DepartmentMembership.objects.select_related("clinician", "department").get(
                pk=self.record("PractitionerRole", reference).target
            )
            return membership.clinician, membership.department
        if kind == "Practitioner":
            return User.objects.get(pk=self.record("Practitioner", reference).target), None
        raise Unmappable("no_reference:Practitioner")

    def audit(
        self, action: str, entity_type: Resource, entity_id: Any, child_id: uuid.UUID | None = None, reason: str = ""
    ) -> None:
        audit.record(
            actor=self.actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            child_id=child_id,
            reason=reason or "ehr_import",
        )

    def publish(
        self,
        kind: EventType,
        child: Child,
        entity_type: Resource,
        entity_id: uuid.UUID,
        capability: Capability,
        **data: Any,
    ) -> None:
        confidential = bool(data.pop("confidential", False))
        publish(kind, ChildAccess(child=child), entity_type, entity_id, self.actor, capability, confidential, **data)


def hospital_time_zone() -> str:
    return str(settings.PORTAL_HOSPITAL_TIME_ZONE)
