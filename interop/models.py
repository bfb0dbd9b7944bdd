"""Where imported records came from, kept apart from the domain models (which need no EHR columns).

``SourceRecord`` is one FHIR resource as the EHR knows it (type, business identifier, version, content
hash) and the portal rows it became. ``ImportRun`` and ``ImportFile`` make an import resumable: each
file's sha256 and the last line committed. ``ImportIssue`` is a line the import could not take, by
file, line and a machine reason (never a value from the record).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from portal.fields import BlindIndexField, EncryptedJSONField, EncryptedTextField


class ImportRun(models.Model):
    """One ``fhir_import`` over a set of files; an interrupted run is continued, not started anew."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running (or interrupted)"
        FINISHED = "finished", "Finished"
        ABANDONED = "abandoned", "Abandoned (a later run read other files)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # sha256 of the sorted file digests: a later run over the same files continues this one.
    fileset = models.CharField(max_length=64, db_index=True)
    full_export = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Deletions (full export) are counted here: they belong to no file.
    deletions = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"Import run {self.pk} ({self.status})"


class ImportFile(models.Model):
    """One NDJSON file of a run: lines up to ``lines_committed`` are in the database."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    resource_type = models.CharField(max_length=64)
    lines_committed = models.PositiveIntegerField(default=0)
    completed = models.BooleanField(default=False)
    # {"Patient": {"created": 3, "unchanged": 1, ...}}, saved with every batch.
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "sha256"], name="one_import_file_per_digest")]

    def __str__(self) -> str:
        return f"{self.name} ({self.lines_committed} lines)"


class ImportIssue(models.Model):
    """A rejected line: file, line number, resource type and a machine reason, never a value."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="issues")
    file_name = models.CharField(max_length=255)
    line = models.PositiveIntegerField()
    resource_type = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "file_name", "line"], name="one_issue_per_line")]

    def __str__(self) -> str:
        return f"{self.file_name}:{self.line} {self.reason}"


class SourceRecord(models.Model):
    """One EHR resource and the portal rows it maps to, keyed by its business identifier.

    ``identifier`` is ``Type|system|value`` (or ``Type|id|<logical id>`` when the resource has no
    identifier), encrypted because identifiers such as MRNs are PHI; lookups use its blind index.
    ``targets`` are the ids of the rows it became (a CareTeam becomes several memberships);
    ``state`` is what the mapping must remember to undo its work (a condition's code), encrypted.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    resource_type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64)
    identifier = EncryptedTextField()
    identifier_index = BlindIndexField(source="identifier", unique=True)
    identifier_is_logical_id = models.BooleanField(default=False)
    version_id = models.CharField(max_length=64, blank=True)
    last_updated = models.DateTimeField(null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    targets = models.JSONField(default=list, blank=True)
    state = EncryptedJSONField(default=dict, blank=True)
    child_id = models.UUIDField(null=True, blank=True, db_index=True)
    deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    last_seen_run = models.ForeignKey(ImportRun, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["resource_type", "resource_id"]),
            models.Index(fields=["resource_type", "deleted", "last_seen_run"]),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type} record {self.pk}"

    @property
    def target(self) -> str:
        """The first row it maps to; without one, the nil UUID, which matches no row."""
        return str(self.targets[0]) if self.targets else str(uuid.UUID(int=0))


# --- SMART Backend Services (the FHIR API's system-to-system clients) ----------------------------


class BackendClient(models.Model):
    """A system registered to call the FHIR API (the hospital's integration engine): it signs a JWT
    with a private key whose public half is registered here, and receives access tokens for at most
    ``scopes``. Its audit rows name ``account``: an inactive user that can never sign in, as the
    import's actor does (audit actors are accounts)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    # A JSON Web Key Set of public keys (RS384 or ES384), each with its ``kid``.
    jwks = models.JSONField(default=dict)
    # SMART scopes, space separated: ``system/Patient.rs system/*.cud``.
    scopes = models.TextField()
    active = models.BooleanField(default=True)
    account = models.OneToOneField("portal.User", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Backend client {self.client_id}"


class ClientAssertion(models.Model):
    """A client assertion's ``jti`` already used, kept until the assertion expires: a replay is refused."""

    id = models.BigAutoField(primary_key=True)
    client = models.ForeignKey(BackendClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="one_use_per_assertion")]

    def __str__(self) -> str:
        return f"Assertion {self.pk}"


class AccessToken(models.Model):
    """An access token issued to a backend client. Only the SHA-256 of the token is stored."""

    id = models.BigAutoField(primary_key=True)
    client = models.ForeignKey(BackendClient, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.TextField()
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Access token {self.pk}"
