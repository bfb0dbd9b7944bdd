"""Accounts and the relationships that decide access.

Nobody has a role column: a user is a guardian of a child through an active ``GuardianLink``, a
clinician for a child through a ``CareTeamMembership``, a member of a department's pool through a
``DepartmentMembership``, and an administrator through the ``view_metrics``/``manage_portal``
permissions. One person can be all of these at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from portal import zones
from portal.fields import BlindIndexField, EncryptedJSONField, EncryptedTextField


def validate_time_zone(value: str) -> None:
    if not zones.is_known(value):
        raise ValidationError("Unknown time zone.", code="invalid_time_zone")


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in: guardian, clinician, administrator, or several of these."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    # When the account proved it receives texts at ``phone`` (a code sent there and typed back); None
    # until then, and set back to None whenever ``phone`` changes. Phone-bound invitations need it.
    phone_verified_at = models.DateTimeField(null=True, blank=True)
    preferred_language = models.CharField(max_length=16, default="en", choices=settings.LANGUAGES)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the Django admin (with MFA).")
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        permissions = [
            ("view_metrics", "Can view call-deflection metrics"),
            ("manage_portal", "Can manage staff, relationships, routing and groups"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.email


class Department(models.Model):
    """A hospital department; its clinicians form the pools that messaging routes to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)

    def __str__(self) -> str:
        return self.name


class DepartmentMembership(models.Model):
    """A clinician working in a department (a member of its pool)."""

    class Role(models.TextChoices):
        DOCTOR = "doctor", "Doctor"
        NURSE = "nurse", "Nurse"
        PHARMACIST = "pharmacist", "Pharmacist"
        SCHEDULER = "scheduler", "Scheduling staff"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="memberships")
    clinician = models.ForeignKey(User, on_delete=models.CASCADE, related_name="department_memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_lead = models.BooleanField(default=False)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["department", "clinician"], name="unique_department_member"),
        ]

    def __str__(self) -> str:
        return f"{self.clinician} in {self.department}"


def _birthday_start(dob: date, years: int, tz: ZoneInfo) -> datetime:
    """The first instant of the given birthday in the child's time zone (29 Feb → 1 Mar)."""
    try:
        day = dob.replace(year=dob.year + years)
    except ValueError:
        day = date(dob.year + years, 3, 1)
    return datetime.combine(day, time.min, tzinfo=tz)


class Child(models.Model):
    """The patient. Name, MRN and conditions are encrypted; the MRN has a blind index for lookups."""

    class Sex(models.TextChoices):
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        OTHER = "other", "Other"
        UNKNOWN = "unknown", "Unknown"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = EncryptedTextField()
    mrn = EncryptedTextField()
    mrn_index = BlindIndexField(source="mrn", unique=True)
    date_of_birth = models.DateField()
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    conditions = EncryptedJSONField(default=list, blank=True, help_text="Coded conditions, e.g. SNOMED CT codes.")
    # The adolescent and adult birthdays as instants, derived from the date of birth in the child's
    # time zone, so that access queries compare them with now() in SQL.
    adolescent_from = models.DateTimeField(editable=False)
    adult_from = models.DateTimeField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The change time (FHIR meta.lastUpdated): auto_now covers save(); a save with update_fields and a
    # QuerySet.update() must name it (the services do).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "children"

    def __str__(self) -> str:
        return f"Child {self.pk}"

    def compute_age_boundaries(self) -> None:
        """Derive ``adolescent_from``/``adult_from``; call after changing date of birth or time zone."""
        tz = zones.zone(self.time_zone)
        self.adolescent_from = _birthday_start(self.date_of_birth, settings.PORTAL_ADOLESCENT_AGE, tz)
        self.adult_from = _birthday_start(self.date_of_birth, settings.PORTAL_ADULT_AGE, tz)

    def local_today(self, now: datetime | None = None) -> date:
        return (now or timezone.now()).astimezone(zones.zone(self.time_zone)).date()


class GuardianLink(models.Model):
    """A guardian's relationship to a child (FHIR RelatedPerson), with its own lifecycle."""

    class Relationship(models.TextChoices):
        MOTHER = "mother", "Mother"
        FATHER = "father", "Father"
        LEGAL_GUARDIAN = "legal_guardian", "Legal guardian"
        FOSTER_PARENT = "foster_parent", "Foster parent"
        OTHER = "other", "Other"

    class Scope(models.TextChoices):
        FULL = "full", "Full"
        LIMITED = "limited", "Schedule and messaging only"

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        # Redeemed by an account with a staff role: no access until a second staff member approves.
        PENDING_APPROVAL = "pending_approval", "Waiting for a second staff member's approval"
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Empty while the link is only an invitation (status ``invited``); set when a guardian redeems it.
    guardian = models.ForeignKey(User, on_delete=models.CASCADE, null=True, blank=True, related_name="guardian_links")
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="guardian_links")
    relationship = models.CharField(max_length=20, choices=Relationship.choices)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.FULL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INVITED)
    court_appointed = models.BooleanField(
        default=False, help_text="A court-appointed guardianship continues past the adult birthday."
    )
    adolescent_exception = models.BooleanField(
        default=False, help_text="Staff recorded an exception: full scope continues past the adolescent birthday."
    )
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    granted_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="+")
    granted_at = models.DateTimeField(default=timezone.now)
    revoked_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The second staff member who approved a link held by an account with a staff role.
    approved_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    # The change time (FHIR meta.lastUpdated); a save with update_fields or an update() must name it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One live link per guardian and child; revoked and expired ones stay as history.
            models.UniqueConstraint(
                fields=["guardian", "child"],
                condition=models.Q(status__in=["invited", "pending_approval", "active"]),
                name="one_live_link_per_guardian_child",
            ),
        ]
        indexes = [models.Index(fields=["guardian", "status"]), models.Index(fields=["child", "status"])]

    def __str__(self) -> str:
        return f"Guardian link {self.pk} ({self.status})"


class Invitation(models.Model):
    """A single-use, expiring code that lets the signed-in recipient take up an ``invited`` link.

    Only a hash of the code is stored; the code itself is shown once, to the staff member who made it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The link in status ``invited`` that redeeming this code activates.
    link = models.OneToOneField(GuardianLink, on_delete=models.CASCADE, related_name="invitation")
    code_hash = models.CharField(max_length=64, unique=True)
    # The address the invitation was sent to: only an account that has verified it may redeem the code.
    # Empty only on invitations made before invitations were bound to their recipient.
    recipient_email = models.EmailField(blank=True)
    # Or the phone number (E.164) it was texted to, when the EHR lists no email address: only an
    # account that has verified that number may redeem it. At most one of the two is set.
    recipient_phone = models.CharField(max_length=16, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    redeemed_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    redeemed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Invitation {self.pk}"

    @property
    def child_id(self) -> uuid.UUID:
        return self.link.child_id


class PhoneVerification(models.Model):
    """A one-time code texted to an account's phone number; typing it back verifies the number.

    Only a keyed hash of the code is stored. A code is good for one number (the account's number when
    it was sent), until ``expires_at``, for a limited number of wrong tries; a newer code replaces it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="phone_verifications")
    phone = models.CharField(max_length=16)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # Set when a newer code is sent, the number changes, or the tries are used up.
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"Phone verification {self.pk}"


class CareTeamMembership(models.Model):
    """A clinician on a child's care team (FHIR CareTeam.participant), for a period."""

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary clinician"
        SPECIALIST = "specialist", "Specialist"
        NURSE = "nurse", "Nurse"
        PHARMACIST = "pharmacist", "Pharmacist"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="care_team")
    clinician = models.ForeignKey(User, on_delete=models.CASCADE, related_name="care_team_memberships")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    role = models.CharField(max_length=20, choices=Role.choices)
    start = models.DateTimeField(default=timezone.now)
    end = models.DateTimeField(null=True, blank=True)
    added_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["clinician", "child"])]

    def __str__(self) -> str:
        return f"Care-team membership {self.pk} ({self.role})"


class Action(models.TextChoices):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LOGIN = "login"
    LOGOUT = "logout"
    EXPORT = "export"
    DENY = "deny"


class Outcome(models.TextChoices):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


class AuditEvent(models.Model):
    """One FHIR AuditEvent; written only through ``portal.audit.record``, never updated or deleted.

    The row is a plain insert. Its place in the signed order is its ``LedgerLeaf``, which the
    sequencer (``portal.ledger``) adds shortly after the row commits. On PostgreSQL the table also
    has an ``xid`` column (``xid8 DEFAULT pg_current_xact_id()``, added by migration 0007 and not
    mapped here): the id of the inserting transaction, which the sequencer uses to seal only rows
    whose transactions have ended.
    """

    # Assigned by the database at insert: unique and increasing in insert order, but not in commit
    # order, and with gaps where a transaction rolled back (it is part of the hashed entry). The
    # order that is signed is the ledger's (LedgerLeaf.index).
    seq = models.BigAutoField(primary_key=True)
    id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    recorded_at = models.DateTimeField()
    actor_id = models.UUIDField(null=True, db_index=True)
    on_behalf_of_id = models.UUIDField(null=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    entity_type = models.CharField(max_length=60)
    entity_id = models.CharField(max_length=64, blank=True)
    child_id = models.UUIDField(null=True, db_index=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.CharField(max_length=60, blank=True)
    client_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    # How many refusals this row stands for: unauthenticated refusals are coalesced per address,
    # reason and window (portal.refusals). Part of the hashed entry only when it is not 1, so rows
    # written before the column existed keep their hashes.
    count = models.PositiveIntegerField(default=1, db_default=1)
    # The hash chain of rows written before the ledger (migration 0007); empty on newer rows, whose
    # evidence is their ledger leaf.
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name = "audit event"
        indexes = [models.Index(fields=["child_id", "recorded_at"]), models.Index(fields=["recorded_at"])]

    def __str__(self) -> str:
        return f"Audit #{self.seq} {self.action} {self.entity_type}"

    def entry(self) -> dict[str, Any]:
        recorded: datetime = self.recorded_at
        entry = {
            "seq": self.seq,
            "id": str(self.id),
            "recorded_at": recorded.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": str(self.actor_id) if self.actor_id else None,
            "on_behalf_of": str(self.on_behalf_of_id) if self.on_behalf_of_id else None,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "child": str(self.child_id) if self.child_id else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "client_address": self.client_address,
            "user_agent": self.user_agent,
        }
        if self.count != 1:
            entry["count"] = self.count
        return entry


class LedgerLeaf(models.Model):
    """The audit row at position ``index`` of the ledger (an RFC 6962 Merkle tree). Insert-only.

    ``hash`` is the leaf hash, SHA-256(0x00 || canonical entry). Leaves are added only by the
    sequencer, one batch per transaction, in index order (``portal.ledger``).
    """

    index = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="leaf", db_column="event_seq")
    hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = "ledger leaf"

    def __str__(self) -> str:
        return f"Leaf #{self.index}"


class LedgerNode(models.Model):
    """A complete (perfect) subtree of the ledger above the leaves: level ``level`` >= 1 covers
    leaves ``[index * 2**level, (index + 1) * 2**level)``. Once complete it never changes. Insert-only."""

    id = models.BigAutoField(primary_key=True)
    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = "ledger node"
        constraints = [models.UniqueConstraint(fields=["level", "index"], name="unique_ledger_node")]

    def __str__(self) -> str:
        return f"Node {self.level}/{self.index}"


class LedgerCheckpoint(models.Model):
    """A signed tree head: the ledger's size and root hash at a moment, signed with Ed25519. Insert-only.

    ``horizon`` is the sequencer's watermark: every audit row below it has a leaf (PostgreSQL: a
    transaction id, rows with ``xid`` below it; SQLite: an audit ``seq``).
    """

    tree_size = models.BigIntegerField(primary_key=True)
    root_hash = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=100)
    horizon = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "ledger checkpoint"

    def __str__(self) -> str:
        return f"Checkpoint {self.tree_size}"


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an ``Idempotency-Key``, replayed on retries.

    The row is inserted before the work is done, inside the same transaction, so concurrent retries
    wait on the unique index and then see the committed answer.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=60)
    key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "scope", "key"], name="unique_idempotency_key")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Idempotency record {self.pk}"


class RefusalTally(models.Model):
    """Unauthenticated refusals from one address for one reason in one time window, counted here
    and appended to the audit chain as a single row (with the count) once the window has closed.
    Not part of the trail itself: ``portal.refusals.flush`` moves closed windows into it."""

    id = models.BigAutoField(primary_key=True)
    client_address = models.CharField(max_length=45, blank=True)
    entity_type = models.CharField(max_length=60)
    reason = models.CharField(max_length=60)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    entity_id = models.CharField(max_length=64, blank=True)  # the first refusal's (if any)
    user_agent = models.CharField(max_length=200, blank=True)  # the first refusal's
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_address", "entity_type", "reason", "window_start"], name="unique_refusal_window"
            )
        ]
        indexes = [models.Index(fields=["window_start"])]

    def __str__(self) -> str:
        return f"{self.count} refusal(s) {self.reason} from {self.client_address}"
