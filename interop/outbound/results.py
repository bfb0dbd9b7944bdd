"""Observation (a test result), DiagnosticReport (a report grouping results) and DocumentReference
(a visit summary). ``source_id`` on these rows is the EHR's business identifier (``system|value``)."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from care.models import ResultComment, ResultReport, TestResult, VisitSummary
from interop.fhir import REPORT_STATUSES
from interop.outbound.common import drop_empty, instant, meta, ref

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
REPORT_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATIONS = {
    TestResult.Interpretation.NORMAL: ("N", "Normal"),
    TestResult.Interpretation.LOW: ("L", "Low"),
    TestResult.Interpretation.HIGH: ("H", "High"),
    TestResult.Interpretation.CRITICAL: ("AA", "Critical abnormal"),
    TestResult.Interpretation.ABNORMAL: ("A", "Abnormal"),
}
REPORT_CATEGORIES = {"laboratory": "LAB", "imaging": "RAD", "pathology": "PAT", "microbiology": "MB"}


def source_identifier(source_id: str) -> list[dict[str, str]]:
    system, sep, value = source_id.partition("|")
    return [{"system": system, "value": value}] if sep and system and value else [{"value": source_id}]


def _number(text: str) -> int | float | None:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _code(code: str, system: str, text: str) -> dict[str, Any]:
    coding = [drop_empty({"system": system, "code": code})] if code else []
    return drop_empty({"coding": coding, "text": text})


def _orderer(clinician_id: Any, name: str) -> list[dict[str, Any]]:
    if clinician_id:
        return [ref("Practitioner", clinician_id)]
    return [{"display": name}] if name else []


def _range(row: TestResult) -> list[dict[str, Any]]:
    low, high = _number(row.range_low), _number(row.range_high)
    texts = [
        t for t in (row.range_text, row.range_low if low is None else "", row.range_high if high is None else "") if t
    ]
    item = drop_empty(
        {
            "low": drop_empty({"value": low, "unit": row.unit}) if low is not None else None,
            "high": drop_empty({"value": high, "unit": row.unit}) if high is not None else None,
            "text": " ".join(texts),
        }
    )
    return [item] if item else []


def _value(row: TestResult) -> dict[str, Any]:
    if row.value_is_numeric and _number(row.value) is not None:
        return {"valueQuantity": drop_empty({"value": _number(row.value), "unit": row.unit})}
    return {"valueString": row.value} if row.value else {}


def observations(rows: Sequence[TestResult], *, comments: bool = True) -> list[dict[str, Any]]:
    """With the care team's comments for the family as notes (one query for the page)."""
    notes: dict[Any, list[dict[str, str]]] = defaultdict(list)
    if comments and rows:
        for comment in ResultComment.objects.filter(result_id__in=[r.pk for r in rows]).order_by("created_at", "id"):
            notes[comment.result_id].append({"text": comment.body, "time": instant(comment.created_at)})
    out = []
    for row in rows:
        flag = INTERPRETATIONS.get(TestResult.Interpretation(row.interpretation)) if row.interpretation else None
        out.append(
            drop_empty(
                {
                    "resourceType": "Observation",
                    "id": str(row.pk),
                    "meta": meta(row.updated_at, confidential=row.confidential),
                    "identifier": source_identifier(row.source_id),
                    "status": row.status,
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": row.category}]}],
                    "code": _code(row.code, row.code_system, row.name),
                    "subject": ref("Patient", row.child_id),
                    "effectiveDateTime": instant(row.effective_at),
                    "issued": instant(row.issued_at) if row.issued_at else None,
                    "performer": _orderer(row.ordering_clinician_id, row.ordering_clinician_name),
                    **_value(row),
                    "interpretation": [{"coding": [{"system": INTERPRETATION, "code": flag[0], "display": flag[1]}]}]
                    if flag
                    else [],
                    "referenceRange": _range(row),
                    "note": notes.get(row.pk, []),
                }
            )
        )
    return out


def diagnostic_reports(
    rows: Sequence[ResultReport], results: dict[Any, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """``results`` narrows the results each report lists (a family's export: the released ones); by
    default all of them, in one query for the page."""
    if results is None:
        results = defaultdict(list)
        for report_id, result_id in (
            TestResult.objects.filter(report_id__in=[r.pk for r in rows])
            .order_by("effective_at", "id")
            .values_list("report_id", "id")
        ):
            results[report_id].append(result_id)
    out = []
    for row in rows:
        category = REPORT_CATEGORIES.get(row.category)
        out.append(
            drop_empty(
                {
                    "resourceType": "DiagnosticReport",
                    "id": str(row.pk),
                    "meta": meta(row.updated_at, confidential=row.confidential),
                    "identifier": source_identifier(row.source_id),
                    "status": row.status if row.status in REPORT_STATUSES else "unknown",
                    "category": [
                        drop_empty(
                            {
                                "coding": [{"system": REPORT_CATEGORY, "code": category}] if category else [],
                                "text": row.category,
                            }
                        )
                    ],
                    "code": _code(row.code, row.code_system, row.name),
                    "subject": ref("Patient", row.child_id),
                    "effectiveDateTime": instant(row.effective_at) if row.effective_at else None,
                    "issued": instant(row.issued_at) if row.issued_at else None,
                    "performer": _orderer(row.ordering_clinician_id, row.ordering_clinician_name),
                    "result": [ref("Observation", result_id) for result_id in results.get(row.pk, [])],
                    "conclusion": row.conclusion,
                }
            )
        )
    return out


def document_references(rows: Sequence[VisitSummary], *, with_pdf: bool = True) -> list[dict[str, Any]]:
    """The summary's text and PDF as attachments. ``with_pdf=False`` (search pages) leaves out the PDF's
    bytes and gives its size only; a read of the one resource carries them."""
    out = []
    for row in rows:
        content = []
        if row.text:
            content.append(
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(row.text.encode()).decode(),
                        "title": row.title,
                    }
                }
            )
        if row.pdf_size:
            pdf: dict[str, Any] = {"contentType": "application/pdf", "size": row.pdf_size, "title": row.title}
            if with_pdf:
                pdf["data"] = row.pdf
            content.append({"attachment": pdf})
        if not content:
            content.append({"attachment": {"title": row.title}})
        out.append(
            drop_empty(
                {
                    "resourceType": "DocumentReference",
                    "id": str(row.pk),
                    "meta": meta(row.updated_at, confidential=row.confidential),
                    "identifier": source_identifier(row.source_id),
                    "status": row.status,
                    "type": {"text": row.category},
                    "subject": ref("Patient", row.child_id),
                    "date": instant(row.date),
                    "author": _orderer(row.author_id, row.author_name),
                    "description": row.title,
                    "content": content,
                    "context": {"related": [ref("Appointment", row.appointment_id)]} if row.appointment_id else None,
                }
            )
        )
    return out
