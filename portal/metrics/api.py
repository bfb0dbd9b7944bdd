"""Metrics endpoints under /api/v1/metrics: reports for ``view_metrics`` holders, the phone webhook."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status

from portal import audit, refusals
from portal.access import can_view_metrics
from portal.api import actor
from portal.csvsafe import csv_text
from portal.errors import Invalid, NotFound
from portal.metrics import comparison as compare
from portal.metrics import estimate, imports, reports
from portal.metrics.schemas import ComparisonOut, ComparisonQuery, ReportOut, ReportQuery, ReportRowOut, WebhookOut
from portal.schemas import ErrorOut
from portal.vocabulary import Resource

router = Router(tags=["metrics"])


def require_metrics_viewer(user: Any, what: str) -> None:
    """``view_metrics`` or a 404 that reveals nothing, audited (MFA is enforced by the API auth)."""
    if not can_view_metrics(user):
        audit.deny(actor=user, entity_type=Resource.METRICS_REPORT, entity_id=what, reason="no_view_metrics")
        raise NotFound()


def _known_parameters(request: HttpRequest, schema: type[Schema]) -> None:
    """Unknown query parameters are an error, as unknown body fields are (ninja ignores them)."""
    unknown = sorted(set(request.GET) - set(schema.model_fields))
    if unknown:
        details = [
            {"loc": ["query", name[:40]], "type": "extra_forbidden", "msg": "Unknown parameter"} for name in unknown
        ]
        raise Invalid("The request is not valid; see errors.", details=details)


def _report(query: ReportQuery) -> dict[str, Any]:
    end = query.end or reports.latest_day() or date.today()  # noqa: DTZ011  (only when nothing is stored)
    start = query.start or (end - timedelta(days=365))
    window = reports.check_window(start, end)
    baseline = reports.baseline_window()
    rows = reports.report(
        period=query.period, window=window, group_by=query.group_by, department=query.department, topic=query.topic
    )
    return {
        "period": query.period,
        "start": window.start,
        "end": window.end,
        "baseline_start": baseline.start if baseline else None,
        "baseline_end": baseline.end if baseline else None,
        "rows": rows,
    }


@router.get("/metrics/report", response=ReportOut, summary="Administrators: calls, rates, deflection per period")
def report(request: HttpRequest, query: Query[ReportQuery]) -> dict[str, Any]:
    require_metrics_viewer(actor(request), "report")
    _known_parameters(request, ReportQuery)
    return _report(query)


@router.get(
    "/metrics/comparison",
    response=ComparisonOut,
    summary="Administrators: enrolled vs not enrolled, difference-in-differences with a 95% interval",
)
def comparison(request: HttpRequest, query: Query[ComparisonQuery]) -> dict[str, Any]:
    require_metrics_viewer(actor(request), "comparison")
    _known_parameters(request, ComparisonQuery)
    baseline = reports.baseline_window(query.baseline_start, query.baseline_end)
    if baseline is None:
        raise Invalid("No baseline period is configured; pass baseline_start and baseline_end.", code="no_baseline")
    if query.start and query.end:
        window = reports.check_window(query.start, query.end)
    else:
        found = compare.default_comparison_window()
        if found is None:
            raise NotFound("No metrics data yet.")
        window = found
    body = compare.comparison(baseline=baseline, window=window, topic=query.topic)
    body["estimate"] = estimate.latest_estimate()
    return body


@router.get("/metrics/export", response={200: None}, summary="Administrators: the report as CSV (small cells hidden)")
def export(request: HttpRequest, query: Query[ReportQuery]) -> HttpResponse:
    user = actor(request)
    require_metrics_viewer(user, "export")
    _known_parameters(request, ReportQuery)
    body = _report(query)
    reports.export_record(actor=user, what="report", period=f"{query.period}:{body['start']}..{body['end']}")
    rows = ({**row, "suppressed": " ".join(row["suppressed"])} for row in body["rows"])
    response = HttpResponse(csv_text(list(ReportRowOut.model_fields), rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="metrics-{query.period}-{body["start"]}-{body["end"]}.csv"'
    return response


# Authenticated by its HMAC signature per source (no session): see tests/test_api_surface.py.
@router.post(
    "/metrics/calls",
    auth=None,
    response={201: WebhookOut, 401: ErrorOut, 413: ErrorOut},
    summary="Phone system: push calls (HMAC)",
)
def calls_webhook(request: HttpRequest) -> Status[dict[str, Any]]:
    refusals.guard(Resource.CALL_WEBHOOK)
    batch = imports.calls_webhook_receive(
        source=str(request.headers.get("X-Metrics-Source", ""))[:40],
        timestamp=str(request.headers.get("X-Metrics-Timestamp", ""))[:20],
        signature=str(request.headers.get("X-Metrics-Signature", ""))[:100],
        body=request.body,
    )
    return Status(
        201, {"import_id": str(batch.pk), "rows": batch.rows, "added": batch.added, "duplicates": batch.duplicates}
    )
