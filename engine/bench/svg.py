"""Inline SVG charts with axes, for the HTML report: no script, no external resource.

A Chart maps data to pixels on linear or log axes and collects SVG elements; `svg()`
returns the finished <svg> element with its ticks, grid, labels and legend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

Tick = tuple[float, str]  # (value, label)


def nice_step(span: float, count: int = 5) -> float:
    """A 1-2-5 step that cuts `span` into about `count` parts."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def linear_ticks(low: float, high: float, count: int = 5) -> list[Tick]:
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append((value, fmt(value)))
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[Tick]:
    """Powers of ten, and 2 and 5 times them when the range spans few decades."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    multiples = (1, 2, 5) if len(decades) <= 4 else (1,)
    values = [m * 10**d for d in decades for m in multiples]
    return [(v, fmt(v)) for v in values if low <= v <= high * 1.0001]


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k" if abs(value) >= 10000 else f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:g}"
    return f"{value:.2g}"


@dataclass
class Axis:
    low: float
    high: float
    log: bool = False
    ticks: list[Tick] | None = None  # default: nice ticks for the range
    transform: Callable[[float], float] | None = None  # e.g. percentile -> "nines"

    def unit(self, value: float) -> float:
        """Where a value falls on the axis, 0..1."""
        f = self.transform or (math.log10 if self.log else (lambda v: v))
        low, high = f(self.low), f(self.high)
        if high == low:
            return 0.5
        return (f(max(value, self.low) if self.log else value) - low) / (high - low)

    def tick_marks(self) -> list[Tick]:
        if self.ticks is not None:
            return self.ticks
        return log_ticks(self.low, self.high) if self.log else linear_ticks(self.low, self.high)


@dataclass
class Chart:
    title: str
    x: Axis
    y: Axis
    x_label: str
    y_label: str
    width: int = 560
    height: int = 300
    left: int = 62
    right: int = 16
    top: int = 34
    bottom: int = 46
    elements: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, label)

    def px(self, x: float) -> float:
        return self.left + self.x.unit(x) * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        return self.height - self.bottom - self.y.unit(y) * (self.height - self.top - self.bottom)

    def line(self, points: Sequence[tuple[float, float]], colour: str, label: str = "") -> None:
        if not points:
            return
        path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in points)
        self.elements.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        if label:
            self.legend.append((colour, label))

    def dots(
        self,
        points: Sequence[tuple[float, float]],
        colour: str,
        label: str = "",
        radius: float = 1.6,
        opacity: float = 0.45,
    ) -> None:
        self.elements.append(
            f'<g fill="{colour}" fill-opacity="{opacity}">'
            + "".join(
                f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="{radius}"/>'
                for x, y in points
            )
            + "</g>"
        )
        if label:
            self.legend.append((colour, label))

    def bars(
        self, bars: Sequence[tuple[float, float, float]], colour: str, label: str = ""
    ) -> None:
        """(x from, x to, height) each, from the y axis' low end up."""
        base = self.py(self.y.low)
        parts = []
        for x0, x1, h in bars:
            if h <= 0:
                continue
            left, right, top = self.px(x0), self.px(x1), self.py(h)
            parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left - 0.5, 0.5):.1f}" '
                f'height="{base - top:.1f}"/>'
            )
        self.elements.append(f'<g fill="{colour}">' + "".join(parts) + "</g>")
        if label:
            self.legend.append((colour, label))

    def hline(self, y: float, colour: str, label: str) -> None:
        """A dashed threshold line (an SLO), labelled at its right end."""
        if not self.y.low <= y <= self.y.high:
            return
        py = self.py(y)
        self.elements.append(
            f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{py:.1f}" '
            f'y2="{py:.1f}" stroke="{colour}" stroke-dasharray="5,4" stroke-width="1.2"/>'
            f'<text x="{self.width - self.right - 4}" y="{py - 4:.1f}" text-anchor="end" '
            f'fill="{colour}" font-size="11">{escape(label)}</text>'
        )

    def svg(self) -> str:
        w, h = self.width, self.height
        plot_right, plot_bottom = w - self.right, h - self.bottom
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
            f'width="{w}" height="{h}" font-family="system-ui, sans-serif" font-size="11" '
            f'role="img" aria-label="{escape(self.title)}">',
            f'<text x="{self.left}" y="16" font-size="13" font-weight="600">'
            f"{escape(self.title)}</text>",
        ]
        for value, label in self.y.tick_marks():
            y = self.py(value)
            out.append(
                f'<line x1="{self.left}" x2="{plot_right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="#e3e3e3"/><text x="{self.left - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end" fill="#555">{escape(label)}</text>'
            )
        for value, label in self.x.tick_marks():
            x = self.px(value)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{plot_bottom}" '
                f'stroke="#efefef"/><text x="{x:.1f}" y="{plot_bottom + 15}" '
                f'text-anchor="middle" fill="#555">{escape(label)}</text>'
            )
        out.append(
            f'<rect x="{self.left}" y="{self.top}" width="{plot_right - self.left}" '
            f'height="{plot_bottom - self.top}" fill="none" stroke="#999"/>'
        )
        out.extend(self.elements)
        out.append(
            f'<text x="{(self.left + plot_right) / 2:.0f}" y="{h - 8}" text-anchor="middle" '
            f'fill="#333">{escape(self.x_label)}</text>'
            f'<text transform="translate(14 {(self.top + plot_bottom) / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle" fill="#333">{escape(self.y_label)}</text>'
        )
        x = plot_right
        for colour, label in reversed(self.legend):
            x -= 24 + 6.2 * len(label)
            out.append(
                f'<rect x="{x:.0f}" y="7" width="10" height="10" fill="{colour}"/>'
                f'<text x="{x + 13:.0f}" y="16" fill="#333">{escape(label)}</text>'
            )
        out.append("</svg>")
        return "".join(out)
