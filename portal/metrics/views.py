"""The administrators' dashboard: one server-rendered page, charts as inline SVG (matplotlib), no build step."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import mark_safe

from portal import audit
from portal.access import can_view_metrics, has_mfa
from portal.errors import Invalid
from portal.metrics import comparison as compare
from portal.metrics import estimate, reports
from portal.metrics.charts import Series, bar_chart, event_study_chart, grouped_bars, line_chart
from portal.metrics.models import Topic
from portal.vocabulary import Resource

WEEKS = 26


def _allowed(user: Any) -> bool:
    return can_view_metrics(user) and has_mfa(user)


def _values(rows: list[dict[str, Any]], index: dict[date, int], field: str) -> list[float | None]:
    out: list[float | None] = [None] * len(index)
    for row in rows:
        out[index[row["period_start"]]] = row[field]
    return out


def _weekly_charts(window: reports.Window) -> tuple[list[str], list[dict[str, Any]]]:
    by_topic = reports.report(period="week", window=window, group_by="topic")
    overall = reports.report(period="week", window=window)
    weeks = sorted({row["period_start"] for row in overall} | {row["period_start"] for row in by_topic})
    index = {week: position for position, week in enumerate(weeks)}
    topic_series = [
        Series(topic.label, _values([row for row in by_topic if row["topic"] == topic.value], index, field))
        for topic in Topic
        for field in ("calls_per_1000_person_months",)
        if any(row["topic"] == topic.value for row in by_topic)
    ]
    charts = [
        line_chart("Weekly calls per 1,000 person-months, by topic", weeks, topic_series, "calls"),
        bar_chart(
            "Portal self-service actions per week",
            weeks,
            Series("Portal actions", _values(overall, index, "actions")),
            "actions",
        ),
        line_chart(
            "Weekly calls per 1,000 patients: enrolled vs not enrolled",
            weeks,
            [
                Series("Enrolled", _values(overall, index, "calls_per_1000_enrolled")),
                Series("Not enrolled", _values(overall, index, "calls_per_1000_not_enrolled")),
            ],
            "calls",
        ),
    ]
    return charts, overall


def _monthly_chart(window: reports.Window) -> str | None:
    start = window.end.replace(day=1) - timedelta(days=365 * 2)
    rows = reports.report(period="month", window=reports.Window(max(start, date(2000, 1, 1)), window.end))
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
        "fewer calls",
        percent=True,
    )


def _estimate_charts(comparison: dict[str, Any] | None, fitted: dict[str, Any] | None) -> list[str]:
    charts = []
    if fitted and fitted.get("event_study"):
        charts.append(
            event_study_chart("Effect by months since enrolment (event study, 95% band)", fitted["event_study"])
        )
    if comparison and any(value is not None for value in comparison["match_rates"].values()):
        rates = comparison["match_rates"]
        charts.append(
            grouped_bars(
                "Share of calls attributed to a patient (estimated)",
                ["Enrolled (treated)", "Not enrolled (control)"],
                [
                    Series("Baseline", [rates["treated_baseline"], rates["control_baseline"]]),
                    Series("Period", [rates["treated_period"], rates["control_period"]]),
                ],
                percent=True,
            )
        )
    return charts


def dashboard_context() -> dict[str, Any]:
    """The charts, the estimate and the comparison, from the rollups and the stored estimate only."""
    window = reports.weeks_window(WEEKS)
    baseline = reports.baseline_window()
    context: dict[str, Any] = {"window": window, "baseline": baseline, "charts": [], "comparison": None}
    if window is None:
        return context
    charts, overall = _weekly_charts(window)
    monthly = _monthly_chart(window)
    comparison_window = compare.default_comparison_window()
    if baseline is not None and comparison_window is not None and comparison_window.start > baseline.end:
        try:
            context["comparison"] = compare.comparison(baseline=baseline, window=comparison_window)
        except Invalid:
            context["comparison"] = None
    fitted = estimate.latest_estimate()
    context["estimate"] = fitted
    all_charts = ([monthly] if monthly else []) + charts + _estimate_charts(context["comparison"], fitted)
    # The SVG is written by matplotlib, which escapes every text it draws.
    context["charts"] = [mark_safe(chart) for chart in all_charts]  # noqa: S308
    context["weeks"] = overall
    return context


def dashboard(request: HttpRequest) -> HttpResponse:
    """``view_metrics`` holders with MFA (session sign-in); a signed-out visitor is sent to the sign-in
    page (the page's address is public; nothing about who may read it is revealed), and any signed-in
    account without the permission and MFA gets a 404, audited."""
    if not request.user.is_authenticated:
        response = redirect("web:sign_in")
        add_never_cache_headers(response)
        return response
    if not _allowed(request.user):
        audit.deny(actor=request.user, entity_type=Resource.METRICS_DASHBOARD, entity_id=None, reason="no_view_metrics")
        raise Http404()
    context = dashboard_context()
    context["today"] = date.today()  # noqa: DTZ011  (a label on the page)
    return render(request, "metrics/dashboard.html", context)
