"""Indexes for FHIR search pages over the change-time columns (``updated_at``) that children, guardian
links, medication plans, doses and coverage now keep, and over messages (FHIR Communication, by
``created_at``: a message is never edited). Each is on (that column, id), the order
``interop.fhir_read`` pages in, as ``0002`` made them for the other types; the creation-time indexes
those five types paged by before are dropped (CareTeam still pages children by ``created_at``, so
``fhir_child_created`` stays).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = (
    ("fhir_child_updated", "portal_child", "updated_at, id"),
    ("fhir_link_updated", "portal_guardianlink", "updated_at, id"),
    ("fhir_plan_updated", "care_medicationplan", "updated_at, id"),
    ("fhir_dose_updated", "care_doselog", "updated_at, id"),
    ("fhir_coverage_updated", "care_coverage", "updated_at, id"),
    ("fhir_message_created", "messaging_message", "created_at, id"),
)
REPLACED = (
    ("fhir_link_granted", "portal_guardianlink", "granted_at, id"),
    ("fhir_plan_created", "care_medicationplan", "created_at, id"),
    ("fhir_dose_recorded", "care_doselog", "recorded_at, id"),
    ("fhir_coverage_submitted", "care_coverage", "submitted_at, id"),
)


def _create(schema_editor: Any, indexes: tuple[tuple[str, str, str], ...]) -> None:
    for name, table, columns in indexes:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


def _drop(schema_editor: Any, indexes: tuple[tuple[str, str, str], ...]) -> None:
    for name, _, _ in indexes:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def forwards(apps: Any, schema_editor: Any) -> None:
    _create(schema_editor, INDEXES)
    _drop(schema_editor, REPLACED)


def backwards(apps: Any, schema_editor: Any) -> None:
    _create(schema_editor, REPLACED)
    _drop(schema_editor, INDEXES)


class Migration(migrations.Migration):
    dependencies = [
        ("interop", "0003_smart_backend_clients"),
        ("portal", "0009_child_and_guardianlink_updated_at"),
        ("care", "0006_plan_dose_coverage_updated_at"),
        ("messaging", "0003_urgent_alerts"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
