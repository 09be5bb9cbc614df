"""Server-rendered SVG charts: no JavaScript, no CDN, no library. Every mark has a <title>, which
browsers show as a tooltip; every chart has an accessible name."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from sessions_app.money import format_cost

WIDTH = 560
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 12, 44
NONE = "\N{EN DASH}"  # shown for a missing value


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= value (an axis maximum)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * 0.999999:
            return float(candidate)
    return float(10 ** (exponent + 1))


def fmt_number(value: float | None) -> str:
    if value is None:
        return NONE
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value == 0:
        return "0"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def fmt_percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%".replace(".0%", "%")


FORMATS: dict[str, Callable[[float | None], str]] = {
    "number": fmt_number,
    "seconds": fmt_seconds,
    "percent": fmt_percent,
    "cost": format_cost,
}


def _frame(chart_id: str, title: str, width: int, height: int, body: list[str]) -> SafeString:
    label = escape(title)
    # Safe: every piece of text inside was escaped where it was built.
    return mark_safe(
        f'<svg class="chart" data-chart="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>' + "".join(body) + "</svg>"
    )


def _axes(ymax: float, fmt: Callable[[float | None], str], labels: Sequence[str], width: int, height: int) -> list[str]:
    """Horizontal grid lines with y values, and up to eight x labels spread evenly."""
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    out = []
    for i in range(5):
        value = ymax * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="ytick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(value))}</text>')
    n = len(labels)
    if n:
        step = max(1, math.ceil(n / 8))
        slot = plot_w / n
        for i in range(0, n, step):
            x = LEFT + slot * (i + 0.5)
            out.append(
                f'<text class="xtick" x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">{escape(labels[i])}</text>'
            )
    return out


def _legend(series: Sequence[Series], width: int, height: int) -> list[str]:
    out, x = [], LEFT
    for s in series:
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{escape(s.color)}"/>')
        out.append(f'<text class="legend" x="{x + 14}" y="{height - 5}">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    return out


def _empty(chart_id: str, title: str, width: int, height: int, message: str) -> SafeString:
    text = f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">{escape(message)}</text>'
    return _frame(chart_id, title, width, height, [text])


def bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: str = "number",
    width: int = WIDTH,
    height: int = HEIGHT,
    empty: str = "No data in this period",
) -> SafeString:
    """Stacked vertical bars, one per label. Whole-number data gets whole-number axis ticks."""
    format_value = FORMATS[fmt]
    totals = [sum((s.values[i] or 0) for s in series) for i in range(len(labels))]
    if not labels or not any(totals):
        return _empty(chart_id, title, width, height, empty)
    ymax = nice_ceiling(max(totals))
    if all(float(v or 0).is_integer() for s in series for v in s.values):
        ymax = float(max(4, math.ceil(ymax / 4) * 4))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.8)
    body = _axes(ymax, format_value, labels, width, height)
    for i, label in enumerate(labels):
        base = 0.0
        x = LEFT + slot * i + (slot - bar_w) / 2
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            h = plot_h * value / ymax
            y = TOP + plot_h - plot_h * (base + value) / ymax
            tip = escape(f"{label} · {s.name}: {format_value(value)}")
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{escape(s.color)}"><title>{tip}</title></rect>'
            )
            base += value
    body.extend(_legend(series, width, height))
    return _frame(chart_id, title, width, height, body)


def line_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: str = "number",
    width: int = WIDTH,
    height: int = HEIGHT,
    empty: str = "No data in this period",
) -> SafeString:
    """One polyline per series; gaps (None) break the line; every point has a dot with a tooltip."""
    format_value = FORMATS[fmt]
    present = [v for s in series for v in s.values if v is not None]
    if not labels or not present:
        return _empty(chart_id, title, width, height, empty)
    ymax = nice_ceiling(max(present)) if max(present) > 0 else 1.0
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(labels)
    body = _axes(ymax, format_value, labels, width, height)
    for s in series:
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        dots = []
        for i, value in enumerate(s.values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * value / ymax
            segment.append(f"{x:.1f},{y:.1f}")
            tip = escape(f"{labels[i]} · {s.name}: {format_value(value)}")
            dots.append(
                f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(s.color)}"><title>{tip}</title></circle>'
            )
        for points in segments:
            if len(points) > 1:
                body.append(
                    f'<polyline class="line" fill="none" stroke="{escape(s.color)}" stroke-width="2" '
                    f'points="{" ".join(points)}"/>'
                )
        body.extend(dots)
    body.extend(_legend(series, width, height))
    return _frame(chart_id, title, width, height, body)


def hbar_chart(
    *,
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float]],
    color: str,
    fmt: str = "number",
    width: int = WIDTH,
    empty: str = "No data in this period",
) -> SafeString:
    """Horizontal bars, one per (label, value) row, labelled on the left, value on the right."""
    format_value = FORMATS[fmt]
    row_h, label_w, value_w = 24, 170, 70
    height = max(60, TOP + row_h * len(rows) + 8)
    if not rows or not any(v for _, v in rows):
        return _empty(chart_id, title, width, 60, empty)
    vmax = max(v for _, v in rows) or 1
    plot_w = width - label_w - value_w
    body = []
    for i, (label, value) in enumerate(rows):
        y = TOP + row_h * i
        w = max(1.0, plot_w * value / vmax)
        short = label if len(label) <= 24 else label[:23] + "\N{HORIZONTAL ELLIPSIS}"
        tip = escape(f"{label}: {format_value(value)}")
        body.append(f'<text class="ylabel" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(short)}</text>')
        body.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{escape(color)}">'
            f"<title>{tip}</title></rect>"
        )
        body.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 14}">{escape(format_value(value))}</text>')
    return _frame(chart_id, title, width, height, body)
