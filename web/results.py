"""The family's test results and visit summaries: a list of results grouped by report, one result with
its range, flag and the care team's comments, the visit summaries, one summary's text and its PDF.

Like ``web.family``: access through ``portal.access.child_for`` (``web.family.clinical_access`` refuses a
limited-scope guardian with an explanation), then the selectors the JSON API calls
(``care.result_selectors``), which decide what a reader sees (held, confidential), audit the read and
move a guardian's results-seen marker; rows are shaped by the API's presenters."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from care import presenters, result_selectors
from portal.models import User
from web.family import child_nav, child_page, clinical_access
from web.wording import label

# The flag in words: a colour alone tells nothing to a reader who cannot see it.
FLAG_LABELS: dict[str, Promise] = {
    "normal": gettext_lazy("Normal"),
    "low": gettext_lazy("Low"),
    "high": gettext_lazy("High"),
    "critical": gettext_lazy("Critical: far outside the usual range"),
    "abnormal": gettext_lazy("Outside the usual range"),
}
RESULT_STATUS: dict[str, Promise] = {
    "preliminary": gettext_lazy("Preliminary"),
    "final": gettext_lazy("Final"),
    "amended": gettext_lazy("Amended"),
    "corrected": gettext_lazy("Corrected"),
}
PAGE = 100


def _result_row(out: dict[str, Any]) -> dict[str, Any]:
    flag = out["interpretation"]
    return {
        **out,
        "flag": label(FLAG_LABELS, flag) if flag else "",
        "flagged": bool(flag) and flag != "normal",
        "status_label": label(RESULT_STATUS, out["status"]),
    }


def _grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results under their report (in the order the newest result of each report comes); results
    without a report shown to this reader are grouped apart, as "other results"."""
    groups: dict[uuid.UUID | None, dict[str, Any]] = {}
    for row in rows:
        key = row["report_id"]
        if key not in groups:
            groups[key] = {"id": key, "name": row["report_name"], "results": []}
        groups[key]["results"].append(row)
    return list(groups.values())


@child_page
@require_GET
def results(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """The child's results, newest first, grouped by report (``result_selectors.results_list``, as
    ``GET .../results``: a guardian's visit marks them seen)."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    rows = result_selectors.results_list(user=user, access=access, limit=PAGE)
    shown = [_result_row(presenters.result_out(row, clinician=access.is_clinician)) for row in rows]
    context = {
        **child_nav(access),
        "groups": _grouped(shown),
        "more": len(rows) == PAGE,
        "clinician": access.is_clinician,
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/results.html", context)


@child_page
@require_GET
def result(request: HttpRequest, user: User, child_id: uuid.UUID, result_id: uuid.UUID) -> HttpResponse:
    """One result with its report, ordering clinician and the care team's comments
    (``result_selectors.result_detail``, as ``GET .../results/{id}``)."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    row = result_selectors.result_detail(user=user, access=access, result_id=result_id)
    shown = _result_row(presenters.result_detail_out(row, row.shown_comments, clinician=access.is_clinician))  # type: ignore[attr-defined]
    context = {
        **child_nav(access),
        "result": shown,
        "clinician": access.is_clinician,
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/result.html", context)


@child_page
@require_GET
def visit_summaries(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """The child's visit summaries, newest first (``result_selectors.summaries_list``)."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    rows = result_selectors.summaries_list(user=user, access=access, limit=PAGE)
    context = {
        **child_nav(access),
        "summaries": [presenters.visit_summary_out(row) for row in rows],
        "more": len(rows) == PAGE,
        "clinician": access.is_clinician,
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/visit_summaries.html", context)


@child_page
@require_GET
def visit_summary(request: HttpRequest, user: User, child_id: uuid.UUID, summary_id: uuid.UUID) -> HttpResponse:
    """One visit summary's text, and a link to its PDF when there is one."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    row = result_selectors.summary_detail(user=user, access=access, summary_id=summary_id)
    context = {
        **child_nav(access),
        "summary": presenters.visit_summary_detail_out(row),
        "clinician": access.is_clinician,
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/visit_summary.html", context)


@child_page
@require_GET
def visit_summary_pdf(request: HttpRequest, user: User, child_id: uuid.UUID, summary_id: uuid.UUID) -> HttpResponse:
    """The summary's PDF as a download (``result_selectors.summary_pdf``, checked and audited as the
    API's ``.../pdf``); named by its id alone, and never kept by the browser (``no-store``)."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    row, data = result_selectors.summary_pdf(user=user, access=access, summary_id=summary_id)
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{row.pk}.pdf"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
