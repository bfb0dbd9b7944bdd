"""DiagnosticReport → care's ResultReport; Observation → care's TestResult, through
``care.services.results`` (which audits, holds held categories and publishes what families gain).

A report is read before its results: an Observation that a report lists joins that report, and its
hold and confidentiality follow the report's as well as its own (a genetic panel's results are held
even when each Observation is only coded ``laboratory``); a report imported after its results links
them then. Each item's ``source_id`` is the blind index of the EHR's business identifier, so the
care tables hold no identifier in the clear.

What the portal cannot show faithfully is rejected with a reason: a value of a type it has no field
for (``observation_value:valueRange``...), an Observation with neither value nor reason for its
absence, a year or a month alone as its date.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils.text import slugify

from care.models import ResultReport, TestResult
from care.services import results
from interop.context import Context, hospital_time_zone
from interop.errors import Unmappable, named
from interop.fhir import (
    REPORT_STATUSES,
    Resource,
    codes,
    concept_text,
    contained,
    parse_date_time,
    parse_instant,
    reference_id,
)
from interop.mapping.appointments import confidential
from interop.mapping.base import Mapped, Mapping, source_key
from interop.models import SourceRecord
from portal.errors import ApiError
from portal.models import Child, User

LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
# HL7 v2 diagnostic service sections (DiagnosticReport.category) → the portal's category names.
SECTIONS = {
    "LAB": "laboratory",
    "HM": "hematology",
    "CH": "chemistry",
    "MB": "microbiology",
    "GE": "genetic",
    "PAT": "pathology",
    "SP": "pathology",
    "RAD": "imaging",
    "IMM": "immunology",
    "SR": "serology",
}
# v3 ObservationInterpretation → the portal's flag. Codes not listed leave the result unflagged.
INTERPRETATIONS = {
    "N": TestResult.Interpretation.NORMAL,
    "L": TestResult.Interpretation.LOW,
    "LU": TestResult.Interpretation.LOW,
    "H": TestResult.Interpretation.HIGH,
    "HU": TestResult.Interpretation.HIGH,
    "LL": TestResult.Interpretation.CRITICAL,
    "HH": TestResult.Interpretation.CRITICAL,
    "AA": TestResult.Interpretation.CRITICAL,
    "A": TestResult.Interpretation.ABNORMAL,
    "POS": TestResult.Interpretation.ABNORMAL,
    "DET": TestResult.Interpretation.ABNORMAL,
}
# Statuses in which a result may have no value yet (or never will).
VALUELESS = frozenset({TestResult.Status.REGISTERED, TestResult.Status.CANCELLED, TestResult.Status.ENTERED_IN_ERROR})
UNIT_MAX = 40
NAME_MAX = 150


def category(concepts: list[dict[str, Any]], default: str) -> str:
    """The category an item is filed (and held) under: one the hospital holds if any coding or text
    names one, else the first coding's name (v2 sections by their name), else ``default``."""
    held = getattr(settings, "PORTAL_RESULT_HOLD", {}) or {}
    names: list[str] = []
    for concept in concepts:
        for coding in concept.get("coding") or []:
            code = str(coding.get("code") or "")
            if coding.get("system") == V2_0074 and code in SECTIONS:
                names.append(SECTIONS[code])
            elif code:
                names.append(code.strip().lower())
            if coding.get("display"):
                names.append(slugify(str(coding["display"])))
        if concept.get("text"):
            names.append(slugify(str(concept["text"])))
    names = [name[:40] for name in names if name]
    return next((name for name in names if name in held), names[0] if names else default)


def _coded(concept: dict[str, Any] | None) -> tuple[str, str]:
    """(code, system) of the concept: its LOINC coding if it has one, else its first."""
    codings = [c for c in (concept or {}).get("coding") or [] if c.get("code")]
    chosen = next((c for c in codings if c.get("system") == LOINC), codings[0] if codings else None)
    if chosen is None:
        return "", ""
    return str(chosen["code"]), str(chosen.get("system") or "")[:200]


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise Unmappable("invalid_number") from None


def _person(ctx: Context, reference: dict[str, Any] | None) -> tuple[User | None, str]:
    """A clinician the portal knows, else the name the EHR gave (an outside clinician)."""
    kind = str((reference or {}).get("reference") or "").partition("/")[0]
    if kind in ("Practitioner", "PractitionerRole"):
        try:
            return ctx.clinician(reference)[0], ""
        except Unmappable:
            pass
    return None, str((reference or {}).get("display") or "")[:NAME_MAX]


def ordering_clinician(ctx: Context, data: dict[str, Any], *, performer: bool) -> tuple[User | None, str]:
    """Who ordered the test: the requester of the ServiceRequest it is based on (contained in the
    resource), else (for an Observation) its performer. (None, "") when the resource names no one."""
    for based_on in data.get("basedOn") or []:
        request = contained(data, based_on)
        if request is not None and request.get("resourceType") == "ServiceRequest" and request.get("requester"):
            return _person(ctx, request["requester"])
    if performer:  # a clinician performer (a laboratory, an organization, orders nothing)
        for reference in data.get("performer") or []:
            if str(reference.get("reference") or "").partition("/")[0] in ("Practitioner", "PractitionerRole"):
                return _person(ctx, reference)
    return None, ""


def _effective(data: dict[str, Any]) -> Any:
    zone = hospital_time_zone()
    value = data.get("effectiveDateTime") or data.get("effectiveInstant")
    value = value or (data.get("effectivePeriod") or {}).get("start")
    return parse_date_time(value, zone) if value else None


def _value(data: dict[str, Any], status: str) -> dict[str, Any]:
    quantity = data.get("valueQuantity")
    if quantity is not None:
        if quantity.get("value") is None:
            raise Unmappable("no_value")
        unit = str(quantity.get("unit") or quantity.get("code") or "")[:UNIT_MAX]
        if quantity.get("comparator"):  # "<5": a bound, not a number to plot
            return {"value_text": f"{quantity['comparator']}{quantity['value']}", "unit": unit}
        return {"value_quantity": _decimal(quantity["value"]), "unit": unit}
    if data.get("valueInteger") is not None:
        return {"value_quantity": Decimal(int(data["valueInteger"]))}
    if data.get("valueString") is not None:
        return {"value_text": str(data["valueString"])}
    if data.get("valueCodeableConcept") is not None:
        return {"value_text": concept_text(data["valueCodeableConcept"])}
    other = next((key for key in data if key.startswith("value")), None)
    if other is not None:
        raise Unmappable(f"observation_value:{other[:40]}")
    if data.get("dataAbsentReason"):
        return {"value_text": concept_text(data["dataAbsentReason"]) or "Not available"}
    if status in VALUELESS:
        return {}
    raise Unmappable("observation_without_value")


def _range(data: dict[str, Any]) -> dict[str, Any]:
    ranges = data.get("referenceRange") or []
    if not ranges:
        return {}
    first = ranges[0]
    return {
        "range_low": _decimal((first.get("low") or {}).get("value")),
        "range_high": _decimal((first.get("high") or {}).get("value")),
        "range_text": str(first.get("text") or ""),
    }


def _interpretation(data: dict[str, Any]) -> str:
    for concept in data.get("interpretation") or []:
        for code in codes(concept):
            if code in INTERPRETATIONS:
                return str(INTERPRETATIONS[code])
    return ""


def observation_fields(ctx: Context, data: dict[str, Any], report: ResultReport | None) -> dict[str, Any]:
    status = str(data.get("status") or "")
    if status not in TestResult.Status.values:
        raise Unmappable(f"observation_status:{named(status, {'unknown'})}")
    name = concept_text(data.get("code"))
    if not name:
        raise Unmappable("no_test_name")
    effective = _effective(data) or parse_instant(data.get("issued"))
    if effective is None:
        raise Unmappable("no_effective_time")
    held = getattr(settings, "PORTAL_RESULT_HOLD", {}) or {}
    own = category(data.get("category") or [], report.category if report is not None else "laboratory")
    clinician, clinician_name = ordering_clinician(ctx, data, performer=True)
    if clinician is None and not clinician_name and report is not None:
        clinician, clinician_name = report.ordering_clinician, report.ordering_clinician_name
    code, code_system = _coded(data.get("code"))
    return {
        "name": name,
        "status": status,
        "category": report.category if report is not None and report.category in held and own not in held else own,
        "code": code,
        "code_system": code_system,
        **_value(data, status),
        **_range(data),
        "interpretation": _interpretation(data),
        "effective_at": effective,
        "issued_at": parse_instant(data.get("issued")),
        "ordering_clinician": clinician,
        "ordering_clinician_name": clinician_name,
        "confidential": confidential(data) or (report is not None and report.confidential),
    }


def result_arguments(row: TestResult) -> dict[str, Any]:
    """The arguments that record ``row`` again as it stands (to change one thing through the service)."""
    return {
        "name": row.name,
        "effective_at": row.effective_at,
        "report": row.report,
        "category": row.category,
        "status": row.status,
        "code": row.code,
        "code_system": row.code_system,
        "value_quantity": Decimal(row.value) if row.value_is_numeric else None,
        "value_text": "" if row.value_is_numeric else row.value,
        "unit": row.unit,
        "range_low": Decimal(row.range_low) if row.range_low else None,
        "range_high": Decimal(row.range_high) if row.range_high else None,
        "range_text": row.range_text,
        "interpretation": row.interpretation,
        "issued_at": row.issued_at,
        "ordering_clinician": row.ordering_clinician,
        "ordering_clinician_name": row.ordering_clinician_name,
        "confidential": row.confidential,
    }


def _record_result(ctx: Context, child: Child, source_id: str, arguments: dict[str, Any]) -> TestResult:
    try:
        row, _ = results.result_record(actor=ctx.actor, child=child, source_id=source_id, **arguments)
    except ApiError as error:
        raise Unmappable(f"result:{error.code}") from None
    return row


def _reports_listing(child_ids: set[Any]) -> dict[Any, dict[str, ResultReport]]:
    """For each child, its live reports by the Observation ids they list (two queries for all)."""
    records = SourceRecord.objects.filter(resource_type="DiagnosticReport", child_id__in=child_ids, deleted=False)
    listed = [(record.child_id, record.target, record.state.get("results", [])) for record in records]
    rows = ResultReport.objects.select_related("ordering_clinician").in_bulk({UUID(target) for _, target, _ in listed})
    found: dict[Any, dict[str, ResultReport]] = {child_id: {} for child_id in child_ids}
    for child_id, target, results_listed in listed:
        report = rows.get(UUID(target))
        if report is not None:
            for ident in results_listed:
                found.setdefault(child_id, {}).setdefault(ident, report)
    return found


def _listing_report(ctx: Context, resource: Resource, child: Child) -> ResultReport | None:
    """The live report of the child that lists this Observation among its results."""
    key = ("reports_listing", child.pk)
    if key not in ctx.memo:
        ctx.memo[key] = _reports_listing({child.pk})[child.pk]
    listing: dict[str, ResultReport] = ctx.memo[key]
    return listing.get(resource.id) if resource.id else None


def observation_prefetch(ctx: Context, resources: Sequence[Resource]) -> None:
    """A chunk's Observations: the reports that list them, for all their children at once."""
    child_ids = set()
    for resource in resources:
        try:
            child_ids.add(UUID(ctx.record("Patient", resource.data.get("subject")).target))
        except (Unmappable, ValueError):
            continue  # reported when the line is applied
    for child_id, listing in _reports_listing(child_ids).items():
        ctx.memo[("reports_listing", child_id)] = listing


def observation_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("subject"))
    report = _listing_report(ctx, resource, child)
    arguments = observation_fields(ctx, data, report)
    row = _record_result(ctx, child, source_key(resource), {**arguments, "report": report})
    return Mapped(targets=[str(row.pk)], child_id=child.pk)


def observation_remove(ctx: Context, record: SourceRecord) -> None:
    """Gone from the EHR: the result is withdrawn (``entered-in-error``, hidden from families, who are
    told to look again if they saw it); the row and its audit history stay."""
    row = TestResult.objects.select_related("report", "child", "ordering_clinician").filter(pk=record.target).first()
    if row is None or row.status == TestResult.Status.ENTERED_IN_ERROR:
        return
    arguments = result_arguments(row) | {"status": TestResult.Status.ENTERED_IN_ERROR}
    _record_result(ctx, row.child, row.source_id, arguments)


def report_fields(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    status = str(data.get("status") or "")
    if status not in REPORT_STATUSES:
        raise Unmappable(f"report_status:{named(status, {'unknown'})}")
    name = concept_text(data.get("code"))
    if not name:
        raise Unmappable("no_report_name")
    clinician, clinician_name = ordering_clinician(ctx, data, performer=False)
    code, code_system = _coded(data.get("code"))
    conclusion = data.get("conclusion") or "\n".join(
        text for text in (concept_text(c) for c in data.get("conclusionCode") or []) if text
    )
    return {
        "name": name,
        "category": category(data.get("category") or [], "laboratory"),
        "status": status,
        "code": code,
        "code_system": code_system,
        "conclusion": str(conclusion),
        "effective_at": _effective(data),
        "issued_at": parse_instant(data.get("issued")),
        "ordering_clinician": clinician,
        "ordering_clinician_name": clinician_name,
        "confidential": confidential(data),
    }


def _record_report(ctx: Context, child: Child, source_id: str, fields: dict[str, Any]) -> ResultReport:
    try:
        report, _ = results.report_record(actor=ctx.actor, child=child, source_id=source_id, **fields)
    except ApiError as error:
        raise Unmappable(f"report:{error.code}") from None
    return report


def _listed_result(ctx: Context, ident: str) -> tuple[SourceRecord, TestResult] | None:
    """The live record of an Observation a report lists, and its result row (None: not imported)."""
    key = ("listed_result", ident)
    if key not in ctx.memo:
        source = SourceRecord.objects.filter(resource_type="Observation", resource_id=ident, deleted=False).first()
        row = None
        if source is not None and source.targets:
            row = TestResult.objects.select_related("report", "ordering_clinician").filter(pk=source.target).first()
        ctx.memo[key] = (source, row) if source is not None and row is not None else None
    found: tuple[SourceRecord, TestResult] | None = ctx.memo[key]
    return found


def report_prefetch(ctx: Context, resources: Sequence[Resource]) -> None:
    """A chunk's DiagnosticReports: the results they list that were imported already (two queries)."""
    listed = {
        ident[:64]
        for resource in resources
        for ident in (reference_id(r, "Observation") for r in resource.data.get("result") or [])
        if ident
    }
    sources = {
        source.resource_id: source
        for source in SourceRecord.objects.filter(resource_type="Observation", resource_id__in=listed, deleted=False)
        if source.targets
    }
    rows = TestResult.objects.select_related("report", "ordering_clinician").in_bulk(
        {UUID(source.target) for source in sources.values()}
    )
    for ident in listed:
        source = sources.get(ident)
        row = rows.get(UUID(source.target)) if source is not None else None
        ctx.memo[("listed_result", ident)] = (source, row) if source is not None and row is not None else None


def _link(ctx: Context, report: ResultReport, observation_ids: list[str], previous: list[str]) -> None:
    """Results already imported join the report (and take its confidentiality); those it no longer
    lists leave it. Results not imported yet join it when they are."""
    wanted = set(observation_ids)
    for ident in dict.fromkeys([*observation_ids, *previous]):
        found = _listed_result(ctx, ident[:64])
        if found is None:
            continue
        source, row = found
        if row.child_id != report.child_id:
            raise Unmappable("result_of_another_patient")
        arguments = result_arguments(row)
        if ident in wanted:
            arguments |= {"report": report, "confidential": row.confidential or report.confidential}
        elif row.report_id == report.pk:
            arguments |= {"report": None}
        if arguments != result_arguments(row):
            changed = _record_result(ctx, report.child, row.source_id, arguments)
            ctx.memo[("listed_result", ident[:64])] = (source, changed)


def report_apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("subject"))
    fields = report_fields(ctx, data)
    report = _record_report(ctx, child, source_key(resource), fields)
    listed = [ident for ident in (reference_id(r, "Observation") for r in data.get("result") or []) if ident]
    previous = list(record.state.get("results", [])) if record is not None else []
    _link(ctx, report, listed, previous)
    return Mapped(targets=[str(report.pk)], state={"results": listed}, child_id=child.pk)


def report_remove(ctx: Context, record: SourceRecord) -> None:
    """Gone from the EHR: the report is marked ``entered-in-error`` (its results are resources of their
    own, removed when they leave the export); the row and its audit history stay."""
    report = ResultReport.objects.select_related("child", "ordering_clinician").filter(pk=record.target).first()
    if report is None or report.status == "entered-in-error":
        return
    fields = {
        "name": report.name,
        "category": report.category,
        "status": "entered-in-error",
        "code": report.code,
        "code_system": report.code_system,
        "conclusion": report.conclusion,
        "effective_at": report.effective_at,
        "issued_at": report.issued_at,
        "ordering_clinician": report.ordering_clinician,
        "ordering_clinician_name": report.ordering_clinician_name,
        "confidential": report.confidential,
    }
    _record_report(ctx, report.child, report.source_id, fields)


OBSERVATION = Mapping(
    target_type="care.TestResult", apply=observation_apply, remove=observation_remove, prefetch=observation_prefetch
)
DIAGNOSTIC_REPORT = Mapping(
    target_type="care.ResultReport", apply=report_apply, remove=report_remove, prefetch=report_prefetch
)
