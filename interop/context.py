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
    # References resolved in the current chunk (cleared with each chunk: a rolled-back chunk may have
    # made records that no longer exist), and those known to resolve to nothing.
    resolved: dict[tuple[str, str], SourceRecord] = field(default_factory=dict)
    unresolved: set[tuple[str, str]] = field(default_factory=set)
    # Rows references lead to, read once per chunk (``prefetch``): children, clinicians, memberships.
    children: dict[str, Child] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    memberships: dict[str, DepartmentMembership] = field(default_factory=dict)
    # What a mapping reads once for a whole chunk (``Mapping.prefetch``), by the mapping's own keys.
    memo: dict[Any, Any] = field(default_factory=dict)

    def forget(self) -> None:
        """A new chunk: everything read for the last one is forgotten."""
        self.resolved.clear()
        self.unresolved.clear()
        self.forget_rows()

    def forget_rows(self) -> None:
        """A line was rolled back: the rows it read (and may have changed in memory) are read again."""
        self.children.clear()
        self.users.clear()
        self.memberships.clear()
        self.memo.clear()

    def remember(self, record: SourceRecord) -> None:
        """A record written (or about to be) in this chunk: references to it resolve to it."""
        key = (record.resource_type, record.resource_id)
        self.unresolved.discard(key)
        if record.deleted:
            self.resolved.pop(key, None)
        else:
            self.resolved[key] = record

    def prefetch(self, references: set[tuple[str, str]]) -> None:
        """Resolve a chunk's references (``(Type, id)``) at once: their records, then the children,
        clinicians and memberships they point to, one query each."""
        wanted = {key for key in references if key not in self.resolved and key not in self.unresolved}
        if wanted:
            rows = SourceRecord.objects.filter(
                resource_type__in={kind for kind, _ in wanted},
                resource_id__in={ident for _, ident in wanted},
                deleted=False,
            )
            for record in rows:
                key = (record.resource_type, record.resource_id)
                if key in wanted:
                    self.resolved[key] = record
            self.unresolved |= wanted - set(self.resolved)
        targets: dict[str, set[str]] = {}
        for (kind, _), record in self.resolved.items():
            if record.targets:
                targets.setdefault(kind, set()).add(record.target)
        missing = targets.get("Patient", set()) - set(self.children)
        if missing:
            self.children.update((str(child.pk), child) for child in Child.objects.filter(pk__in=missing))
        missing = targets.get("Practitioner", set()) - set(self.users)
        if missing:
            self.users.update((str(user.pk), user) for user in User.objects.filter(pk__in=missing))
        missing = targets.get("PractitionerRole", set()) - set(self.memberships)
        if missing:
            memberships = DepartmentMembership.objects.select_related("clinician", "department")
            self.memberships.update((str(row.pk), row) for row in memberships.filter(pk__in=missing))

    def record(self, resource_type: str, reference: dict[str, Any] | None) -> SourceRecord:
        """The live record a reference points to, or ``Unmappable("unresolved_reference:<Type>")``
        (the resource was never imported, was rejected, or was deleted)."""
        ident = reference_id(reference, resource_type)
        if ident is None:
            raise Unmappable(f"no_reference:{resource_type}")
        key = (resource_type, ident)
        found = self.resolved.get(key)
        if found is None and key not in self.unresolved:
            found = SourceRecord.objects.filter(resource_type=resource_type, resource_id=ident, deleted=False).first()
        if found is None or not found.targets:
            raise Unmappable(f"unresolved_reference:{resource_type}")
        self.resolved[key] = found
        return found

    def child(self, reference: dict[str, Any] | None) -> Child:
        target = self.record("Patient", reference).target
        child = self.children.get(target)
        if child is None:
            child = self.children[target] = Child.objects.get(pk=target)
        return child

    def clinician(self, reference: dict[str, Any] | None) -> tuple[User, Department | None]:
        """The clinician (and department, through a PractitionerRole) a reference names."""
        kind = ((reference or {}).get("reference") or "").partition("/")[0]
        if kind == "PractitionerRole":
            target = self.record("PractitionerRole", reference).target
            membership = self.memberships.get(target)
            if membership is None:
                membership = DepartmentMembership.objects.select_related("clinician", "department").get(pk=target)
                self.memberships[target] = membership
            return membership.clinician, membership.department
        if kind == "Practitioner":
            target = self.record("Practitioner", reference).target
            user = self.users.get(target)
            if user is None:
                user = self.users[target] = User.objects.get(pk=target)
            return user, None
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
