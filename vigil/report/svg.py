"""Inline SVG charts written by hand: the report stays one file with no script, font or image
fetched from anywhere.

Each function returns markup ready to place in the page (``Markup``: jinja2 does not escape it
again); every text inside is escaped here.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

GRID = "#e3e3e3"
AXIS = "#555"
FONT = "font-family='system-ui, sans-serif' font-size='11'"


@dataclass(frozen=True)
class Series:
    """One curve of a line chart, in data coordinates (both axes 0..1)."""

    name: str
    color: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Bar:
    """One horizontal bar."""

    label: str
    value: float
    color: str
    text: str  # printed after the bar


@dataclass(frozen=True)
class Span:
    """A stretch of time drawn on a timeline lane."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Lane:
    """One timeline row: a label and its spans in one colour, plus point markers."""

    label: str
    color: str
    spans: Sequence[Span]
    markers: Sequence[datetime] = ()


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        # Inline in HTML the parser puts <svg> in the SVG namespace: no xmlns needed.
        f"<svg role='img' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}' {FONT}><title>{escape(title)}</title>"
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' {extra}>{escape(text)}</text>"


def line_chart(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    diagonal: bool = False,
) -> Markup:
    """Curves on the unit square (ROC, precision-recall), with a legend below the plot."""
    left, top, size = 48, 24, 240
    width, height = left + size + 20, top + size + 44 + 16 * len(series)

    def x(value: float) -> float:
        return left + value * size

    def y(value: float) -> float:
        return top + (1 - value) * size

    body = [_text(width / 2, 15, title, "middle", "font-weight='600'")]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(
            f"<line x1='{x(tick):.1f}' y1='{top}' x2='{x(tick):.1f}' y2='{top + size}' "
            f"stroke='{GRID}'/><line x1='{left}' y1='{y(tick):.1f}' x2='{left + size}' "
            f"y2='{y(tick):.1f}' stroke='{GRID}'/>"
        )
        body.append(_text(x(tick), top + size + 14, f"{tick:.1f}", "middle"))
        body.append(_text(left - 6, y(tick) + 4, f"{tick:.1f}", "end"))
    body.append(
        f"<rect x='{left}' y='{top}' width='{size}' height='{size}' fill='none' stroke='{AXIS}'/>"
    )
    if diagonal:
        body.append(
            f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(1)}' y2='{y(1)}' stroke='#999' "
            "stroke-dasharray='3 3'/>"
        )
    body.append(_text(left + size / 2, top + size + 30, x_label, "middle"))
    body.append(
        _text(12, top + size / 2, y_label, "middle", f"transform='rotate(-90 12 {top + size / 2})'")
    )
    for index, curve in enumerate(series):
        points = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in curve.points)
        body.append(
            f"<polyline points='{points}' fill='none' stroke='{curve.color}' stroke-width='2'/>"
        )
        legend_y = top + size + 46 + 16 * index
        body.append(
            f"<rect x='{left}' y='{legend_y - 9}' width='12' height='10' fill='{curve.color}'/>"
        )
        body.append(_text(left + 18, legend_y, curve.name))
    return _svg(width, height, title, body)


def bar_chart(
    title: str, bars: Sequence[Bar], reference_lines: Sequence[tuple[float, str]] = ()
) -> Markup:
    """Horizontal bars on a linear scale from 0, with optional labelled vertical lines."""
    label_width, bar_space, text_space, row = 230, 300, 130, 20
    scale_max = max([b.value for b in bars] + [v for v, _ in reference_lines] + [1e-12])
    width = label_width + bar_space + text_space
    height = 28 + row * len(bars) + 8

    def x(value: float) -> float:
        return label_width + bar_space * value / scale_max

    body = [_text(width / 2, 15, title, "middle", "font-weight='600'")]
    for index, bar in enumerate(bars):
        top = 26 + row * index
        # A non-zero value keeps a visible sliver, so a tiny bar next to a huge one still shows.
        length = max(x(bar.value) - label_width, 2.0 if bar.value > 0 else 0.0)
        body.append(_text(label_width - 6, top + 12, bar.label, "end"))
        body.append(
            f"<rect x='{label_width}' y='{top + 2}' width='{length:.1f}' height='{row - 6}' "
            f"fill='{bar.color}'/>"
        )
        body.append(_text(label_width + length + 6, top + 12, bar.text))
    labelled_at = -100.0
    for value, label in reference_lines:
        body.append(
            f"<line x1='{x(value):.1f}' y1='24' x2='{x(value):.1f}' y2='{height - 6}' "
            "stroke='#999' stroke-dasharray='3 3'/>"
        )
        if x(value) - labelled_at > 24:  # lines squeezed together by a huge bar share one label
            body.append(_text(x(value) + 3, height - 2, label, extra="fill='#666'"))
            labelled_at = x(value)
    return _svg(width, height + 8, title, body)


def timeline(title: str, lanes: Sequence[Lane], start: datetime, end: datetime) -> Markup:
    """Lanes of time spans over ``[start, end)`` with an hourly (or coarser) time axis."""
    label_width, plot_width, row = 250, 720, 18  # room for an EC2 id plus a lane name
    width = label_width + plot_width + 20
    height = 30 + row * len(lanes) + 26
    total = (end - start).total_seconds() or 1.0

    def x(moment: datetime) -> float:
        clipped = min(max(moment, start), end)
        return label_width + plot_width * (clipped - start).total_seconds() / total

    body = [_text(width / 2, 15, title, "middle", "font-weight='600'")]
    step = timedelta(hours=max(1, round(total / 3600 / 12)))
    tick = start.replace(minute=0, second=0, microsecond=0)
    axis_y = 26 + row * len(lanes)
    while tick <= end:
        if tick >= start:
            body.append(
                f"<line x1='{x(tick):.1f}' y1='24' x2='{x(tick):.1f}' y2='{axis_y}' "
                f"stroke='{GRID}'/>"
            )
            body.append(_text(x(tick), axis_y + 14, f"{tick:%H:%M}", "middle"))
        tick += step
    body.append(_text(label_width, axis_y + 26, f"{start:%Y-%m-%d %H:%M} UTC", extra="fill='#666'"))
    for index, lane in enumerate(lanes):
        top = 26 + row * index
        body.append(_text(label_width - 6, top + 12, lane.label, "end"))
        for span in lane.spans:
            left = x(span.start)
            body.append(
                f"<rect x='{left:.1f}' y='{top + 3}' width='{max(x(span.end) - left, 1.5):.1f}' "
                f"height='{row - 6}' fill='{lane.color}'/>"
            )
        for marker in lane.markers:
            body.append(
                f"<circle cx='{x(marker):.1f}' cy='{top + row / 2:.1f}' r='4' fill='#fff' "
                f"stroke='#222' stroke-width='1.5'/>"
            )
    return _svg(width, height + 10, title, body)
