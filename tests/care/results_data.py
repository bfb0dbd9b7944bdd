"""Results and visit summaries for the personas' children, recorded through the services (as the EHR
importer will record them)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from care.models import TestResult, VisitSummary
from care.services import results
from portal.models import Child, User

# Canaries: a result's name and a comment that must never reach anyone who may not read them.
RESULT_NAME = "Glucose CANARYLAB"
SUMMARY_TITLE = "Diabetes review CANARYDOC"
COMMENT = "Your HbA1c is on target CANARYNOTE"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def result(child: Child, clinician: User | None = None, **extra: Any) -> TestResult:
    fields: dict[str, Any] = {
        "source_id": f"Observation/{uuid.uuid4()}",
        "name": RESULT_NAME,
        "code": "2345-7",
        "code_system": "http://loinc.org",
        "value_quantity": Decimal("5.4"),
        "unit": "mmol/L",
        "range_low": Decimal("3.9"),
        "range_high": Decimal("7.8"),
        "interpretation": "normal",
        "effective_at": timezone.now() - timedelta(hours=2),
        "issued_at": timezone.now() - timedelta(hours=1),
        "ordering_clinician": clinician,
        **extra,
    }
    row, _ = results.result_record(actor=None, child=child, **fields)
    return row


def summary(child: Child, author: User | None = None, **extra: Any) -> VisitSummary:
    fields: dict[str, Any] = {
        "source_id": f"DocumentReference/{uuid.uuid4()}",
        "title": SUMMARY_TITLE,
        "date": timezone.now() - timedelta(days=1),
        "text": "Keep the evening dose; next review in three months.",
        "pdf": PDF,
        "author": author,
        **extra,
    }
    row, _ = results.visit_summary_record(actor=None, child=child, **fields)
    return row
