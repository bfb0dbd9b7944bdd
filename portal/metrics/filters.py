"""The dashboard's filters (period, topic, department), read from a GET query and validated once for
the page, its CSV and its PDF, so the three always show the same selection.

A period is either a preset (the last 4, 13, 26 or 52 weeks of stored data) or ``start``/``end``;
topics are the ``Topic`` vocabulary; departments are the codes present in the population rollup
(aggregates only: a code names a department, never a patient).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import QueryDict

from portal.errors import Invalid
from portal.metrics import reports
from portal.metrics.models import DailyPopulation, Topic
from portal.metrics.rollups import ALL_DEPARTMENTS
from portal.models import Department

PRESETS = (("4", "Last 4 weeks"), ("13", "Last 13 weeks"), ("26", "Last 26 weeks"), ("52", "Last 52 weeks"))
DEFAULT_WEEKS = 26
FIELDS = ("weeks", "start", "end", "topic", "department")


def department_choices() -> list[tuple[str, str]]:
    """Departments with population rows, labelled by their name where the portal knows it."""
    codes = sorted(
        code
        for code in DailyPopulation.objects.exclude(department="").values_list("department", flat=True).distinct()
        if code != ALL_DEPARTMENTS
    )
    names = dict(Department.objects.filter(code__in=codes).values_list("code", "name"))
    return [(code, names.get(code, code)) for code in codes]


class DashboardFilterForm(forms.Form):
    weeks = forms.ChoiceField(label="Period", choices=PRESETS, required=False)
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    topic = forms.ChoiceField(label="Topic", choices=[("", "All topics"), *Topic.choices], required=False)
    department = forms.ChoiceField(label="Department", required=False)

    def __init__(self, *args: Any, departments: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["department"]
        if isinstance(field, forms.ChoiceField):  # always: declared just above
            field.choices = [("", "All departments"), *departments]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if (start is None) != (end is None):
            raise forms.ValidationError("Give both From and To, or neither (then the period preset applies).")
        if start is not None and end is not None:
            if end < start:
                raise forms.ValidationError("To must not be before From.")
            if (end - start).days > reports.MAX_SPAN_DAYS:
                raise forms.ValidationError("The period may be at most 3 years.")
        return data


@dataclass(frozen=True)
class DashboardFilter:
    """A validated selection: ``window`` is None when no metrics are stored yet."""

    window: reports.Window | None
    weeks: int | None
    topic: str | None
    department: str | None

    def query_string(self) -> str:
        """The selection as a query string (links to the exports carry exactly what the page shows)."""
        params: dict[str, str] = {}
        if self.weeks is not None:
            params["weeks"] = str(self.weeks)
        elif self.window is not None:
            params["start"] = self.window.start.isoformat()
            params["end"] = self.window.end.isoformat()
        if self.topic:
            params["topic"] = self.topic
        if self.department:
            params["department"] = self.department
        return urlencode(params)

    def describe(self) -> str:
        """A one-line caption for the page, the PDF and the CSV file name (no PHI: codes and dates)."""
        if self.window is None:
            return "no data"
        topic = Topic(self.topic).label if self.topic else "all topics"
        department = self.department or "all departments"
        return f"{self.window.start} to {self.window.end}, {topic}, {department}"


class FilterError(Invalid):
    """Bad filters: a 400 ``invalid_filters`` for the exports; the page shows the form with its errors."""

    def __init__(self, message: str, *, form: DashboardFilterForm, details: list[dict[str, Any]]) -> None:
        super().__init__(message, code="invalid_filters", status=400, details=details)
        self.form = form


def _errors(form: DashboardFilterForm) -> list[dict[str, Any]]:
    return [
        {"loc": ["query", name if name != "__all__" else "period"], "type": "invalid", "msg": str(message)}
        for name, messages in form.errors.items()
        for message in messages
    ]


def dashboard_filter(query: QueryDict, *, latest: date | None) -> tuple[DashboardFilter, DashboardFilterForm]:
    """Validate the query (unknown parameters rejected) or raise ``FilterError`` (400 ``invalid_filters``)
    with one entry per problem; ``latest`` is the last day with stored rollups (None: nothing yet)."""
    form = DashboardFilterForm(query or None, departments=department_choices())
    unknown = sorted(set(query) - set(FIELDS))
    if unknown:
        details = [
            {"loc": ["query", name[:40]], "type": "extra_forbidden", "msg": "Unknown parameter"} for name in unknown
        ]
        raise FilterError("Unknown filter parameter.", form=form, details=details)
    if query and not form.is_valid():
        raise FilterError("The filters are not valid; see errors.", form=form, details=_errors(form))
    data: dict[str, Any] = form.cleaned_data if query else {}
    topic = data.get("topic") or None
    department = data.get("department") or None
    if data.get("start") is not None:
        window = reports.Window(data["start"], data["end"])
        return DashboardFilter(window, None, topic, department), form
    weeks = int(data.get("weeks") or DEFAULT_WEEKS)
    if latest is None:
        return DashboardFilter(None, weeks, topic, department), form
    monday = latest - timedelta(days=latest.weekday())
    window = reports.Window(monday - timedelta(weeks=weeks - 1), latest)
    return DashboardFilter(window, weeks, topic, department), form
