"""The administrators' dashboard: filters, readable charts, the CSV and PDF exports and who reaches them."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client

from portal.metrics import reports, views
from portal.metrics.charts import Series, line_chart, svg
from portal.metrics.population import patients_sync
from portal.models import AuditEvent
from tests.conftest import PERSONAS, World, make_user
from tests.matrix import phi_strings
from tests.metrics.conftest import seed_and_roll

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
PAGE, CSV, PDF = "/metrics/dashboard", "/metrics/dashboard.csv", "/metrics/dashboard.pdf"
NOW = datetime(2024, 7, 15, 14, 0, tzinfo=UTC)


@pytest.fixture
def seeded(world: World) -> Iterator[World]:
    with time_machine.travel(NOW, tick=False):
        seed_and_roll(patients=1500, months=12, departments=2, effect=0.5, seed=3)
        patients_sync()
        yield world


def _signed_in(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def _csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def _number(text: str) -> float:
    return float(text) if text else 0.0


def _html_table(html: str) -> list[list[str]]:
    body = html[html.index("<h2>Weeks</h2>") :]
    rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", body)
    return [re.findall(r"<td>(.*?)</td>", row) for row in rows]


def _charts(html: str) -> list[ET.Element]:
    charts, position = [], 0
    while (start := html.find("<svg", position)) != -1:
        end = html.index("</svg>", start) + len("</svg>")
        charts.append(ET.fromstring(html[start:end]))
        position = end
    return charts


def _pdf_text(document: bytes) -> str:
    """The text drawn in an uncompressed PDF: each kerned ``[(a) -0.2 (b)] TJ`` array joined."""
    pieces = []
    for array in re.findall(rb"\[(.*?)\]\s*TJ", document, re.S):
        joined = b"".join(re.findall(rb"\(((?:\\.|[^\\)])*)\)", array))
        pieces.append(re.sub(rb"\\(.)", rb"\1", joined).decode("latin-1"))
    return " ".join(pieces)


def _texts(chart: ET.Element) -> str:
    return " ".join(text.strip() for element in chart.iter(f"{SVG}text") for text in element.itertext())


def test_filters_change_the_numbers_as_the_report_computes_them(seeded: World) -> None:
    client = _signed_in(seeded, "admin")
    last = reports.latest_day()
    assert last is not None
    everything = _csv_rows(client.get(CSV).content)
    refill = _csv_rows(client.get(CSV, {"topic": "refill"}).content)
    endo = _csv_rows(client.get(CSV, {"department": "endo"}).content)
    short = _csv_rows(client.get(CSV, {"weeks": "4"}).content)
    assert len(everything) == 26 and len(short) == 4
    assert everything[-4:] == short
    total = sum(_number(row["Calls"]) for row in everything)
    assert 0 < sum(_number(row["Calls"]) for row in refill) < total
    assert 0 < sum(_number(row["Calls"]) for row in endo) < total
    # The same figures as the report with the same filters (no figure of the page's own making).
    monday = last - timedelta(days=last.weekday())
    window = reports.Window(monday - timedelta(weeks=25), last)
    expected = reports.report(period="week", window=window, topic="refill")
    assert [row["Week starting"] for row in refill] == [row["period_start"].isoformat() for row in expected]
    assert [row["Calls"] for row in refill] == ["" if row["calls"] is None else str(row["calls"]) for row in expected]
    assert [row["Calls per 1,000 enrolled patients"] for row in refill] == [
        "" if row["calls_per_1000_enrolled"] is None else str(row["calls_per_1000_enrolled"]) for row in expected
    ]
    # A custom period: every week that starts in it, clipped at its edges.
    custom = _csv_rows(client.get(CSV, {"start": "2023-06-05", "end": "2023-07-02"}).content)
    assert [row["Week starting"] for row in custom] == ["2023-06-05", "2023-06-12", "2023-06-19", "2023-06-26"]
    page = client.get(PAGE, {"topic": "refill", "department": "endo"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "all topics" not in html and "Refill, endo" in html
    assert 'href="/metrics/dashboard.csv?weeks=26&amp;topic=refill&amp;department=endo"' in html


def test_charts_are_readable_with_percentages_and_the_comparison_series(seeded: World) -> None:
    html = _signed_in(seeded, "admin").get(PAGE).content.decode()
    assert not [secret for secret in phi_strings(seeded) if secret in html]
    charts = {re.sub(r"\s+", " ", _texts(chart)): chart for chart in _charts(html)}
    enrolled = next(chart for text, chart in charts.items() if "comparison group" in text)
    ids = {group.get("id") for group in enrolled.iter(f"{SVG}g")}
    assert {"series-enrolled", "series-not-enrolled", "series-all-patients"} <= ids
    # The not-enrolled series has a drawn line, not only a legend entry.
    line = next(group for group in enrolled.iter(f"{SVG}g") if group.get("id") == "series-not-enrolled")
    assert len(next(line.iter(f"{SVG}path")).get("d", "")) > 50
    text = _texts(enrolled)
    assert "Calls per 1,000 patients in the group (weekly)" in text and "Week starting" in text
    assert "Enrolled families" in text and "Families not enrolled (comparison)" in text
    # Every chart names its axes with their units; shares are percentages, not fractions.
    units = {
        "Calls by topic": ("Calls per 1,000 person-months (weekly)", "Week starting"),
        "Portal self-service actions": ("Actions per week", "Week starting"),
        "comparison group": ("Calls per 1,000 patients in the group (weekly)", "Week starting"),
        "Share of calls attributed": ("Calls attributed (%)", "Enrolled (treated)"),
    }
    for title, labels in units.items():
        text = next(text for text in charts if title in text)
        assert all(label in text for label in labels), title
    shares = next(text for text in charts if "Share of calls attributed" in text)
    assert "100%" in shares and not re.search(r"\b0\.\d", shares)
    # The table shows percentages, not fractions.
    table = _html_table(html)
    answered = [row[-1] for row in table]
    assert answered and all(value == "–" or re.fullmatch(r"\d+\.\d%", value) for value in answered)
    assert "Messages answered within 24 h (%)" in html


def test_csv_is_the_page_table_and_formula_safe(seeded: World, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _signed_in(seeded, "admin")
    query = {"weeks": "13", "department": "endo"}
    table = _html_table(client.get(PAGE, query).content.decode())
    response = client.get(CSV, query)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    assert 'filename="call-deflection-' in response["Content-Disposition"]
    content = response.content.decode()
    assert not [secret for secret in phi_strings(seeded) if secret in content]
    rows = _csv_rows(response.content)
    assert list(rows[0]) == [column.heading for column in views.COLUMNS]
    assert len(rows) == len(table) == 13
    for html_row, csv_row in zip(table, rows, strict=True):
        for column, shown in zip(views.COLUMNS, html_row, strict=True):
            raw = csv_row[column.heading]
            value: Any = None
            if raw:
                value = raw if column.kind == "date" else int(raw) if column.kind == "count" else float(raw)
            assert views.cell_text(column, value) == shown, (column.heading, raw, shown)
    # Every cell goes through the formula-safe writer.
    hostile = views.Column("period_start", '=HYPERLINK("http://x")', "date")
    monkeypatch.setattr(views, "COLUMNS", (hostile, *views.COLUMNS[1:]))
    header = client.get(CSV, query).content.decode().splitlines()[0]
    assert header.startswith("\"'=HYPERLINK") or header.startswith("'=HYPERLINK")


def test_pdf_is_a_pdf_with_the_charts_and_table_and_no_phi(seeded: World) -> None:
    client = _signed_in(seeded, "admin")
    exports = AuditEvent.objects.filter(action="export").count()
    response = client.get(PDF, {"weeks": "13", "topic": "refill"})
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and response.content.rstrip().endswith(b"%%EOF")
    # Uncompressed, so its text can be checked: the table and axis labels are there, PHI is not.
    text = _pdf_text(response.content)
    assert "Week starting" in text and "Calls by topic" in text and "all departments" in text
    assert "Families not enrolled (comparison)" in text
    assert not [secret for secret in phi_strings(seeded) if secret in text or secret.encode() in response.content]
    client.get(CSV, {"weeks": "13"})
    reasons = list(AuditEvent.objects.filter(action="export").order_by("seq").values_list("reason", flat=True))
    assert len(reasons) == exports + 2
    assert reasons[-2:] == ["dashboard_pdf:weeks=13&topic=refill", "dashboard_csv:weeks=13"]


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({"start": "2024-13-01", "end": "2024-02-01"}, "start"),
        ({"start": "2024-02-01"}, "period"),
        ({"start": "2024-03-01", "end": "2024-02-01"}, "period"),
        ({"start": "2020-01-01", "end": "2024-02-01"}, "period"),
        ({"topic": "gossip"}, "topic"),
        ({"department": "nowhere"}, "department"),
        ({"weeks": "1000"}, "weeks"),
        ({"child": "x"}, "child"),
    ],
)
def test_bad_filters_are_refused_with_a_code(seeded: World, query: dict[str, str], where: str) -> None:
    client = _signed_in(seeded, "admin")
    exports = AuditEvent.objects.filter(action="export").count()
    for url in (CSV, PDF):
        response = client.get(url, query)
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_filters" and body["message"]
        assert where in [error["loc"][1] for error in body["errors"]]
    page = client.get(PAGE, query)
    assert page.status_code == 400 and "The filters could not be applied" in page.content.decode()
    assert AuditEvent.objects.filter(action="export").count() == exports


def test_only_view_metrics_holders_with_mfa_reach_the_page_and_exports(seeded: World) -> None:
    no_mfa = make_user("metrics-no-mfa@example.org", "Nia Nomfa", is_staff=True)
    no_mfa.user_permissions.add(*Permission.objects.filter(codename="view_metrics"))
    seeded.users["staff_without_mfa"] = no_mfa
    for persona in [*PERSONAS, "staff_without_mfa"]:
        client = _signed_in(seeded, persona)
        for url in (PAGE, CSV, PDF):
            denied = AuditEvent.objects.filter(action="deny", entity_type="MetricsDashboard").count()
            response = client.get(url)
            if persona == "admin":
                assert response.status_code == 200, url
                continue
            assert response.status_code == 404, (persona, url)
            assert not [secret for secret in phi_strings(seeded) if secret in response.content.decode()]
            if url != PAGE:
                assert response.json()["code"] == "not_found"
            assert AuditEvent.objects.filter(action="deny", entity_type="MetricsDashboard").count() == denied + 1
    signed_out = Client()
    page = signed_out.get(PAGE)
    assert page.status_code == 302 and page["Location"] == "/sign-in/"
    for url in (CSV, PDF):
        response = signed_out.get(url)
        assert response.status_code == 401 and response.json()["code"] == "not_authenticated"


def test_an_empty_installation_shows_the_form_and_no_figures(world: World) -> None:
    with time_machine.travel(NOW, tick=False):
        client = _signed_in(world, "admin")
        page = client.get(PAGE)
        assert page.status_code == 200 and "No metrics yet" in page.content.decode()
        rows = _csv_rows(client.get(CSV).content)
        assert rows == []
        assert client.get(PDF).content.startswith(b"%PDF-")


def test_a_series_hidden_in_every_period_is_named_with_the_reason() -> None:
    weeks = [datetime(2024, 1, 1, tzinfo=UTC).date() + timedelta(weeks=n) for n in range(3)]
    figure = line_chart(
        "Calls",
        weeks,
        [Series("Enrolled families", [None, None, None], key="enrolled"), Series("Not enrolled", [1.0, 2.0, 3.0])],
        "Calls per 1,000 patients",
    )
    text = _texts(ET.fromstring(svg(figure)))
    assert "Enrolled families (hidden: too few patients)" in text and "Not enrolled (hidden" not in text
