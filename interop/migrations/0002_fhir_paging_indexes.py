"""Indexes for FHIR search pages: every searchable table on (its lastUpdated column, id), the order
``interop.fhir_read`` pages in, so a page is an index range scan from the cursor. On PostgreSQL also
the first row an imported record became (``targets->0``), which the output reads identifiers by.

Kept here, as plain SQL, because they serve the FHIR output only; the models they index need not
know it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = (
    ("fhir_child_created", "portal_child", "created_at, id"),
    ("fhir_user_joined", "portal_user", "date_joined, id"),
    ("fhir_link_granted", "portal_guardianlink", "granted_at, id"),
    ("fhir_audit_recorded", "portal_auditevent", "recorded_at, id"),
    ("fhir_appointment_updated", "care_appointment", "updated_at, id"),
    ("fhir_appointment_change", "care_appointment", "change_requested_at, id"),
    ("fhir_plan_created", "care_medicationplan", "created_at, id"),
    ("fhir_dose_recorded", "care_doselog", "recorded_at, id"),
    ("fhir_coverage_submitted", "care_coverage", "submitted_at, id"),
    ("fhir_refill_updated", "care_refillrequest", "updated_at, id"),
    ("fhir_result_updated", "care_testresult", "updated_at, id"),
    ("fhir_report_updated", "care_resultreport", "updated_at, id"),
    ("fhir_summary_updated", "care_visitsummary", "updated_at, id"),
    ("fhir_record_updated", "interop_sourcerecord", "resource_type, updated_at, id"),
)
POSTGRES_ONLY = (("fhir_record_first_target", "interop_sourcerecord", "resource_type, (targets -> 0)"),)


def _all(schema_editor: Any) -> tuple[tuple[str, str, str], ...]:
    return INDEXES + (POSTGRES_ONLY if schema_editor.connection.vendor == "postgresql" else ())


def create(apps: Any, schema_editor: Any) -> None:
    for name, table, columns in _all(schema_editor):
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


def drop(apps: Any, schema_editor: Any) -> None:
    for name, _, _ in _all(schema_editor):
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("interop", "0001_initial"),
        ("portal", "0007_audit_ledger"),
        ("care", "0004_results_and_visit_summaries"),
    ]

    operations = [migrations.RunPython(create, drop)]
