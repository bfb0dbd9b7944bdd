"""The administrators' dashboard: one server-rendered page, charts as inline SVG (matplotlib), no build
step; its table as CSV and the charts with the table as PDF. The page and both exports read the same
validated filters (``filters``), so an export holds exactly what the page shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import mark_safe
from matplotlib.figure import Figure

from portal import audit
from portal.access import can_view_metrics, has_mfa
from portal.csvsafe import csv_text
from portal.errors import ApiError, Invalid, NotFound
from portal.metrics import comparison as compare
from portal.metrics import estimate, reports
from portal.metrics.charts import Series, bar_chart, event_study_chart, grouped_bars, line_chart, pdf_document, svg
from portal.metrics.common import next_month
from portal.metrics.filters import DashboardFilter, DashboardFilterForm, FilterError, dashboard_filter
from portal.metrics.models import Topic
from portal.vocabulary import Resource

TITLE = "Call deflection"
HIDDEN = "\N{EN DASH}"  # a hidden or not applicable cell, as the page shows it


@dataclass(frozen=True)
class Column:
    """A column of the weekly table: the report field, its heading, and how it is shown.

    ``kind``: ``count`` and ``rate`` as numbers, ``percent`` a fraction shown (and exported) as a
    percentage, ``date`` the week's Monday."""

    field: str
    heading: str
    kind: str


COLUMNS = (
    Column("period_start", "Week starting", "date"),
    Column("calls", "Calls", "count"),
    Column("calls_enrolled", "Calls, enrolled families", "count"),
    Column("calls_not_enrolled", "Calls, families not enrolled", "count"),
    Column("calls_unattributed", "Calls, not attributed", "count"),
    Column("calls_per_1000_person_months", "Calls per 1,000 person-months", "rate"),
    Column("calls_per_1000_enrolled", "Calls per 1,000 enrolled patients", "rate"),
    Column("calls_per_1000_not_enrolled", "Calls per 1,000 patients not enrolled", "rate"),
    Column("callbacks", "Call-backs", "count"),
    Column("callbacks_expected", "Call-backs expected anyway", "rate"),
    Column("actions", "Portal actions", "count"),
    Column("actions_per_call", "Portal actions per call", "rate"),
    Column("responded_within_24h", "Messages answered within 24 h (%)", "percent"),
)


def _allowed(user: Any) -> bool:
    return can_view_metrics(user) and has_mfa(user)


def cell_value(column: Column, row: dict[str, Any], selection: DashboardFilter) -> Any:
    """The table's value (None when hidden or not applicable). Message response times are not kept
    per topic, so under a topic filter they are left out rather than shown for every topic."""
    value = row.get(column.field)
    if value is None or (column.field.startswith("responded_") and selection.topic):
        return None
    if column.kind == "percent":
        return round(float(value) * 100, 1)
    return value


def cell_text(column: Column, value: Any) -> str:
    if value is None:
        return HIDDEN
    if column.kind == "percent":
        return f"{value:.1f}%"
    if column.kind == "count":
        return f"{value:,}"
    if column.kind == "rate":
        return f"{value:,.2f}"
    return str(value)


def _values(rows: list[dict[str, Any]], index: dict[date, int], name: str) -> list[float | None]:
    out: list[float | None] = [None] * len(index)
    for row in rows:
        out[index[row["period_start"]]] = row[name]
    return out


@dataclass
class Dashboard:
    """What the page, the CSV and the PDF are made of (aggregates only)."""

    selection: DashboardFilter
    weeks: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    estimate: dict[str, Any] | None = None

    def table(self) -> list[list[Any]]:
        return [[cell_value(column, row, self.selection) for column in COLUMNS] for row in self.weeks]


def _weekly_figures(selection: DashboardFilter, window: reports.Window) -> tuple[list[Figure], list[dict[str, Any]]]:
    department, topic = selection.department, selection.topic
    by_topic = reports.report(period="week", window=window, group_by="topic", department=department, topic=topic)
    overall = reports.report(period="week", window=window, department=department, topic=topic)
    weeks = sorted({row["period_start"] for row in overall} | {row["period_start"] for row in by_topic})
    index = {week: position for position, week in enumerate(weeks)}
    topic_series = [
        Series(
            topic.label, _values([row for row in by_topic if row["topic"] == topic.value], index, name), key=topic.value
        )
        for topic in Topic
        for name in ("calls_per_1000_person_months",)
        if any(row["topic"] == topic.value for row in by_topic)
    ]
    figures = [
        line_chart("Calls by topic", weeks, topic_series, "Calls per 1,000 person-months (weekly)"),
        bar_chart(
            "Portal self-service actions",
            weeks,
            Series(
                "Portal actions (schedule views, refill requests, messages, …)",
                _values(overall, index, "actions"),
                key="portal-actions",
            ),
            "Actions per week",
        ),
        line_chart(
            "Calls from enrolled families and from families not enrolled (comparison group)",
            weeks,
            [
                Series("Enrolled families", _values(overall, index, "calls_per_1000_enrolled"), key="enrolled"),
                Series(
                    "Families not enrolled (comparison)",
                    _values(overall, index, "calls_per_1000_not_enrolled"),
                    key="not-enrolled",
                ),
                Series(
                    "All patients", _values(overall, index, "calls_per_1000_patients"), dashed=True, key="all-patients"
                ),
            ],
            "Calls per 1,000 patients in the group (weekly)",
        ),
    ]
    return figures, overall


def _monthly_figure(selection: DashboardFilter, window: reports.Window) -> Figure | None:
    """Deflection per whole calendar month inside the selected period."""
    first = window.start if window.start.day == 1 else next_month(window.start)
    if first > window.end:
        return None
    rows = reports.report(
        period="month",
        window=reports.Window(first, window.end),
        department=selection.department,
        topic=selection.topic,
    )
    rows = [row for row in rows if row["deflection_net"] is not None or row["deflection_gross"] is not None]
    if not rows:
        return None
    months = [row["period_start"] for row in rows]
    return line_chart(
        "Monthly deflection: enrolled vs not enrolled, each against the same month a year earlier",
        months,
        [
            Series("Net (every call once)", [row["deflection_net"] for row in rows]),
            Series("Gross (without call-backs)", [row["deflection_gross"] for row in rows], dashed=True),
        ],
        "Fewer calls than expected (%)",
        percent=True,
        x_label="Month",
    )


def _estimate_figures(comparison: dict[str, Any] | None, fitted: dict[str, Any] | None) -> list[Figure]:
    figures = []
    if fitted and fitted.get("event_study"):
        figures.append(
            event_study_chart("Effect by months since enrolment (event study, 95% band)", fitted["event_study"])
        )
    if comparison and any(value is not None for value in comparison["match_rates"].values()):
        rates = comparison["match_rates"]
        figures.append(
            grouped_bars(
                "Share of calls attributed to a patient (estimated)",
                ["Enrolled (treated)", "Not enrolled (control)"],
                [
                    Series("Baseline period", [rates["treated_baseline"], rates["control_baseline"]], key="baseline"),
                    Series("Compared period", [rates["treated_period"], rates["control_period"]], key="period"),
                ],
                unit="Calls attributed (%)",
                percent=True,
            )
        )
    return figures


def dashboard_table(selection: DashboardFilter) -> Dashboard:
    """The weekly table alone (what the CSV holds), with none of the charts."""
    built = Dashboard(selection)
    if selection.window is not None:
        built.weeks = reports.report(
            period="week", window=selection.window, department=selection.department, topic=selection.topic
        )
    return built


def dashboard_build(selection: DashboardFilter) -> Dashboard:
    """The charts, the table, the estimate and the comparison, from the rollups and the stored
    estimate only. The estimate is hospital-wide; the two-by-two follows the topic filter."""
    built = Dashboard(selection)
    window = selection.window
    if window is None:
        return built
    weekly, built.weeks = _weekly_figures(selection, window)
    monthly = _monthly_figure(selection, window)
    baseline = reports.baseline_window()
    comparison_window = compare.default_comparison_window()
    if baseline is not None and comparison_window is not None and comparison_window.start > baseline.end:
        try:
            built.comparison = compare.comparison(baseline=baseline, window=comparison_window, topic=selection.topic)
        except Invalid:
            built.comparison = None
    built.estimate = estimate.latest_estimate()
    built.figures = ([monthly] if monthly else []) + weekly + _estimate_figures(built.comparison, built.estimate)
    return built


def _error(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.payload(), status=error.status)
    add_never_cache_headers(response)
    return response


def _guard_export(request: HttpRequest, what: str) -> JsonResponse | None:
    """Exports answer in the API's error shape: 401 signed out, 404 (audited) without the right."""
    if not request.user.is_authenticated:
        return _error(ApiError("Sign in first.", code="not_authenticated", status=401))
    if not _allowed(request.user):
        audit.deny(actor=request.user, entity_type=Resource.METRICS_DASHBOARD, entity_id=what, reason="no_view_metrics")
        return _error(NotFound())
    return None


def _file_name(selection: DashboardFilter, extension: str) -> str:
    parts = ["call-deflection"]
    if selection.window is not None:
        parts += [selection.window.start.isoformat(), selection.window.end.isoformat()]
    parts += [part for part in (selection.topic, selection.department) if part]
    return "-".join(parts) + "." + extension


def dashboard(request: HttpRequest) -> HttpResponse:
    """``view_metrics`` holders with MFA (session sign-in); a signed-out visitor is sent to the sign-in
    page (the page's address is public; nothing about who may read it is revealed), and any signed-in
    account without the permission and MFA gets a 404, audited. Bad filters: the form again, 400."""
    if not request.user.is_authenticated:
        redirected = redirect("web:sign_in")
        add_never_cache_headers(redirected)
        return redirected
    if not _allowed(request.user):
        audit.deny(actor=request.user, entity_type=Resource.METRICS_DASHBOARD, entity_id=None, reason="no_view_metrics")
        raise Http404()
    form: DashboardFilterForm
    try:
        selection, form = dashboard_filter(request.GET, latest=reports.latest_day())
    except FilterError as error:
        context: dict[str, Any] = {"form": error.form, "filter_errors": error.details, "title": TITLE}
        response = render(request, "metrics/dashboard.html", context, status=400)
        add_never_cache_headers(response)
        return response
    built = dashboard_build(selection)
    context = {
        "title": TITLE,
        "form": form,
        "selection": selection,
        "window": selection.window,
        "baseline": reports.baseline_window(),
        # The SVG is written by matplotlib, which escapes every text it draws.
        "charts": [mark_safe(svg(figure)) for figure in built.figures],  # noqa: S308
        "comparison": built.comparison,
        "estimate": built.estimate,
        "columns": COLUMNS,
        "rows": [
            [cell_text(column, value) for column, value in zip(COLUMNS, row, strict=True)] for row in built.table()
        ],
        "query": selection.query_string(),
        "min_cell": reports.min_cell(),
    }
    response = render(request, "metrics/dashboard.html", context)
    add_never_cache_headers(response)
    return response


def _export_selection(request: HttpRequest, kind: str) -> DashboardFilter | JsonResponse:
    """An export's checks, in order: who asks (``_guard_export``), then the filters; the export is
    audited only once both pass. Returns the selection, or the refusal to send."""
    refused = _guard_export(request, kind)
    if refused is not None:
        return refused
    try:
        selection, _form = dashboard_filter(request.GET, latest=reports.latest_day())
    except FilterError as error:
        return _error(error)
    reports.export_record(actor=request.user, what=f"dashboard_{kind}", period=selection.query_string() or "default")
    return selection


def dashboard_csv(request: HttpRequest) -> HttpResponse:
    """The page's weekly table as CSV (same filters, same suppression, formula-safe cells), audited."""
    selection = _export_selection(request, "csv")
    if isinstance(selection, HttpResponse):
        return selection
    built = dashboard_table(selection)
    rows = ({column.heading: value for column, value in zip(COLUMNS, row, strict=True)} for row in built.table())
    response = HttpResponse(
        csv_text([column.heading for column in COLUMNS], rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_file_name(selection, "csv")}"'
    add_never_cache_headers(response)
    return response


def dashboard_pdf(request: HttpRequest) -> HttpResponse:
    """The page's charts and table as one PDF (same filters, same suppression), audited."""
    selection = _export_selection(request, "pdf")
    if isinstance(selection, HttpResponse):
        return selection
    built = dashboard_build(selection)
    caption = (
        f"{selection.describe()}. Cells about fewer than {reports.min_cell()} patients are hidden ({HIDDEN}), "
        "with the cells that would reveal them."
    )
    document = pdf_document(
        title=TITLE,
        caption=caption,
        figures=built.figures,
        header=[column.heading for column in COLUMNS],
        rows=[[cell_text(column, value) for column, value in zip(COLUMNS, row, strict=True)] for row in built.table()],
    )
    response = HttpResponse(document, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{_file_name(selection, "pdf")}"'
    add_never_cache_headers(response)
    return response
