"""The dashboard's charts, drawn on the server by matplotlib's SVG backend: they work in a browser, an
email or a PDF with no script. Each series is a group whose id is ``series-<name>`` (``set_gid``; bars
``series-<name>-<position>``), so tests and assistive tools can find it. No pyplot: a Figure per
chart, nothing global, thread-safe."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from matplotlib import dates as mdates
from matplotlib import rc_context
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


def series_id(name: str) -> str:
    return "series-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer)  # type: ignore[no-untyped-call]
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(8.4, 3.3), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    axes.grid(axis="y", color="#e6e6e6")
    return figure, axes


def _name_bars(bars: Any, name: str) -> None:
    """Each bar of a series gets the series' id with its position (ids are unique in a page)."""
    for position, patch in enumerate(bars.patches):
        patch.set_gid(f"{series_id(name)}-{position}")


def _date_axis(axes: Any) -> None:
    locator = mdates.AutoDateLocator(maxticks=9)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def line_chart(title: str, x: list[date], series: list[Series], unit: str, *, percent: bool = False) -> str:
    """Lines over dates (gaps where a value is missing or suppressed); dashed series for references."""
    with rc_context(STYLE):
        figure, axes = _figure(title)
        for index, item in enumerate(series):
            values = [float("nan") if value is None else value for value in item.values]
            (line,) = axes.plot(
                x,
                values,
                label=item.name,
                color=item.color or PALETTE[index % len(PALETTE)],
                linestyle="--" if item.dashed else "-",
                linewidth=1.6,
            )
            line.set_gid(series_id(item.name))
        axes.set_ylabel(unit)
        if percent:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        _date_axis(axes)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return _svg(figure)


def bar_chart(title: str, x: list[date], series: Series, unit: str) -> str:
    with rc_context(STYLE):
        figure, axes = _figure(title)
        values = [0.0 if value is None else value for value in series.values]
        bars = axes.bar(x, values, width=5, color=series.color or PALETTE[0], label=series.name)
        _name_bars(bars, series.name)
        axes.set_ylabel(unit)
        _date_axis(axes)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return _svg(figure)


def event_study_chart(title: str, events: list[dict[str, Any]]) -> str:
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
        axes.set_ylabel("Fewer calls than expected")
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return _svg(figure)


def grouped_bars(title: str, groups: list[str], series: list[Series], *, percent: bool = False) -> str:
    """Bars per group (e.g. match rates: baseline and period for treated and control)."""
    with rc_context(STYLE):
        figure, axes = _figure(title)
        width = 0.8 / max(len(series), 1)
        for index, item in enumerate(series):
            positions = [position + index * width for position in range(len(groups))]
            values = [0.0 if value is None else value for value in item.values]
            bars = axes.bar(positions, values, width=width, label=item.name, color=PALETTE[index % len(PALETTE)])
            _name_bars(bars, item.name)
        axes.set_xticks([position + width * (len(series) - 1) / 2 for position in range(len(groups))], groups)
        if percent:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return _svg(figure)
