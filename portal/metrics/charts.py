"""The dashboard's charts, drawn on the server by matplotlib: SVG for the page (no script), and the same
figures in a PDF with the table (``pdf_document``). Each series is a group whose id is
``series-<key or name>`` (``set_gid``; bars ``series-<name>-<position>``), so tests and assistive tools
can find it. Every chart names its axes with their units and has a legend. No pyplot: a Figure per
chart, nothing global, thread-safe."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f", "#17becf")
STYLE: dict[Any, Any] = {"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "metrics", "axes.spines.top": False}


@dataclass
class Series:
    name: str
    values: list[float | None]
    dashed: bool = False
    color: str = ""
    key: str = ""  # the id's stem when the legend's wording differs from it

    @property
    def gid(self) -> str:
        return series_id(self.key or self.name)


def series_id(name: str) -> str:
    return "series-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element (text kept as text, ids stable between runs)."""
    buffer = io.StringIO()
    with rc_context(STYLE):
        FigureCanvasSVG(figure).print_svg(buffer)  # type: ignore[no-untyped-call]
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(8.4, 3.3), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    axes.grid(axis="y", color="#e6e6e6")
    return figure, axes


def _name_bars(bars: Any, gid: str) -> None:
    """Each bar of a series gets the series' id with its position (ids are unique in a page)."""
    for position, patch in enumerate(bars.patches):
        patch.set_gid(f"{gid}-{position}")


def _date_axis(axes: Any, label: str) -> None:
    locator = mdates.AutoDateLocator(maxticks=9)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.set_xlabel(label)


def line_chart(
    title: str, x: list[date], series: list[Series], unit: str, *, percent: bool = False, x_label: str = "Week starting"
) -> Figure:
    """Lines over dates (gaps where a value is missing or suppressed); dashed series for references.
    ``percent``: values are fractions, shown on a percentage axis."""
    with rc_context(STYLE):
        figure, axes = _figure(title)
        for index, item in enumerate(series):
            values = [float("nan") if value is None else value for value in item.values]
            # A series wholly suppressed (small cells) is still named, with why it shows no line.
            hidden = bool(item.values) and all(value is None for value in item.values)
            (line,) = axes.plot(
                x,
                values,
                label=f"{item.name} (hidden: too few patients)" if hidden else item.name,
                color=item.color or PALETTE[index % len(PALETTE)],
                linestyle="--" if item.dashed else "-",
                linewidth=1.6,
            )
            line.set_gid(item.gid)
        axes.set_ylabel(unit)
        if percent:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        _date_axis(axes, x_label)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return figure


def bar_chart(title: str, x: list[date], series: Series, unit: str, *, x_label: str = "Week starting") -> Figure:
    with rc_context(STYLE):
        figure, axes = _figure(title)
        values = [0.0 if value is None else value for value in series.values]
        bars = axes.bar(x, values, width=5, color=series.color or PALETTE[0], label=series.name)
        _name_bars(bars, series.gid)
        axes.set_ylabel(unit)
        _date_axis(axes, x_label)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return figure


def event_study_chart(title: str, events: list[dict[str, Any]]) -> Figure:
    """Effect (relative call reduction) by months since enrolment with its 95% band; leads before 0."""
    with rc_context(STYLE):
        figure, axes = _figure(title)
        centres = [(event["from_month"] + event["to_month"]) / 2 for event in events]
        effects = [event["effect"] for event in events]
        axes.fill_between(
            centres,
            [event["ci_low"] for event in events],
            [event["ci_high"] for event in events],
            color=PALETTE[0],
            alpha=0.2,
            label="95% interval",
        ).set_gid(series_id("interval"))
        (line,) = axes.plot(centres, effects, marker="o", color=PALETTE[0], label="Effect")
        line.set_gid(series_id("effect"))
        axes.axhline(0, color="#444", linewidth=0.8)
        axes.axvline(-1, color="#999", linestyle=":", linewidth=1)
        axes.set_xlabel("Months since enrolment (bins; -1 is the reference)")
        axes.set_ylabel("Fewer calls than expected (%)")
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return figure


def grouped_bars(title: str, groups: list[str], series: list[Series], *, unit: str, percent: bool = False) -> Figure:
    """Bars per group (e.g. match rates: baseline and period for treated and control)."""
    with rc_context(STYLE):
        figure, axes = _figure(title)
        width = 0.8 / max(len(series), 1)
        for index, item in enumerate(series):
            positions = [position + index * width for position in range(len(groups))]
            values = [0.0 if value is None else value for value in item.values]
            bars = axes.bar(positions, values, width=width, label=item.name, color=PALETTE[index % len(PALETTE)])
            _name_bars(bars, item.gid)
        axes.set_xticks([position + width * (len(series) - 1) / 2 for position in range(len(groups))], groups)
        axes.set_ylabel(unit)
        if percent:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return figure


TABLE_ROWS_PER_PAGE = 28


def _table_pages(title: str, caption: str, header: list[str], rows: list[list[str]]) -> list[Figure]:
    """The table on A4-landscape pages, the header repeated on each."""
    pages = []
    chunks = [rows[index : index + TABLE_ROWS_PER_PAGE] for index in range(0, len(rows), TABLE_ROWS_PER_PAGE)]
    for number, chunk in enumerate(chunks or [[]], start=1):
        with rc_context(STYLE):
            figure = Figure(figsize=(11.69, 8.27))
            axes = figure.add_axes((0.03, 0.03, 0.94, 0.86))
            axes.axis("off")
            figure.suptitle(f"{title} ({number}/{max(len(chunks), 1)})", x=0.03, ha="left", fontweight="bold")
            figure.text(0.03, 0.92, caption, fontsize=8)
            if chunk:
                table = axes.table(cellText=chunk, colLabels=header, loc="upper center", cellLoc="right")
                table.auto_set_font_size(False)
                table.set_fontsize(7)
                for (row, _column), cell in table.get_celld().items():
                    cell.set_height(0.03 if row else 0.07)
                    if row == 0:
                        cell.get_text().set_wrap(True)
                        cell.set_facecolor("#f4f4f4")
            else:
                axes.text(0.0, 0.9, "No rows for this selection.")
        pages.append(figure)
    return pages


def pdf_document(*, title: str, caption: str, figures: list[Figure], header: list[str], rows: list[list[str]]) -> bytes:
    """One PDF: a page per chart, then the table. Streams are left uncompressed so the document can
    be checked for what it contains; the metadata names the report only."""
    buffer = io.BytesIO()
    metadata = {"Title": title, "Subject": caption, "Creator": "Family care portal"}
    with rc_context({**STYLE, "pdf.compression": 0}), PdfPages(buffer, metadata=metadata) as pdf:
        for figure in figures:
            figure.set_size_inches(11.69, 5.0)
            pdf.savefig(figure)
        for page in _table_pages(title, caption, header, rows):
            pdf.savefig(page)
    return buffer.getvalue()
