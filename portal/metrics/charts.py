"""Charts as inline SVG, drawn on the server: they work in a browser, an email or a PDF, with no
script and no build step. Every series is a ``<g class="series" data-series="...">``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape, quoteattr

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f", "#17becf")
WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 30, 40


@dataclass
class Series:
    name: str
    values: list[float | None]
    dashed: bool = False
    color: str = ""


def _scale(series: list[Series]) -> float:
    top = max((v for s in series for v in s.values if v is not None), default=0.0)
    return top * 1.1 if top > 0 else 1.0


def _frame(title: str, x: list[date], top: float, unit: str) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={quoteattr(title)} font-family="sans-serif" '
        'font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#444"/>',
    ]
    for step in range(5):
        value = top * step / 4
        y = TOP + plot_h - plot_h * step / 4
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" '
        f'text-anchor="middle">{escape(unit)}</text>'
    )
    every = max(1, len(x) // 8)
    for index, day in enumerate(x):
        if index % every == 0:
            px = LEFT + plot_w * (index + 0.5) / max(len(x), 1)
            parts.append(f'<text x="{px:.1f}" y="{HEIGHT - 20}" text-anchor="middle">{day:%d %b %y}</text>')
    return parts


def _legend(series: list[Series]) -> list[str]:
    parts = []
    for index, item in enumerate(series):
        y = TOP + 14 * index
        dash = ' stroke-dasharray="4 3"' if item.dashed else ""
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 10}" y1="{y}" x2="{WIDTH - RIGHT + 30}" y2="{y}" '
            f'stroke="{item.color}" stroke-width="2"{dash}/>'
            f'<text x="{WIDTH - RIGHT + 34}" y="{y + 4}">{escape(item.name)}</text>'
        )
    return parts


def _colour(series: list[Series]) -> None:
    for index, item in enumerate(series):
        item.color = item.color or PALETTE[index % len(PALETTE)]


def line_chart(title: str, x: list[date], series: list[Series], unit: str) -> str:
    """Lines (gaps where a value is missing or suppressed); dashed series for baselines."""
    _colour(series)
    top = _scale(series)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, x, top, unit)
    for item in series:
        dash = ' stroke-dasharray="4 3"' if item.dashed else ""
        runs: list[list[str]] = [[]]
        for index, value in enumerate(item.values):
            if value is None:
                runs.append([])
                continue
            px = LEFT + plot_w * (index + 0.5) / max(len(x), 1)
            py = TOP + plot_h - plot_h * value / top
            runs[-1].append(f"{px:.1f},{py:.1f}")
        paths = "".join(
            f'<polyline fill="none" stroke="{item.color}" stroke-width="2"{dash} points="{" ".join(run)}"/>'
            for run in runs
            if run
        )
        parts.append(f'<g class="series" data-series={quoteattr(item.name)}>{paths}</g>')
    parts.extend(_legend(series))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, x: list[date], series: Series, unit: str) -> str:
    _colour([series])
    top = _scale([series])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, x, top, unit)
    width = plot_w / max(len(x), 1) * 0.8
    bars = []
    for index, value in enumerate(series.values):
        if value is None:
            continue
        px = LEFT + plot_w * index / max(len(x), 1) + width * 0.125
        h = plot_h * value / top
        bars.append(
            f'<rect x="{px:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
            f'fill="{series.color}"><title>{value:g}</title></rect>'
        )
    parts.append(f'<g class="series" data-series={quoteattr(series.name)}>{"".join(bars)}</g>')
    parts.extend(_legend([series]))
    parts.append("</svg>")
    return "".join(parts)
