"""Inline SVG, the one writer of every chart leakharness draws: a leak-growth plot (bytes lost
against iterations, with the fitted line) and the nightly history's line charts.  Each returns
markup whose every piece of text (signatures, job names: program text) is escaped here, so a
page may take it as it is.
"""

from __future__ import annotations

import html
import math

from ..growth import GrowthFit

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T, PAD_R = 640, 180, 48, 28, 12, 28


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text  # a rounding error's sign says nothing


def growth_plot(fit: GrowthFit, title: str = "", width: int = 120, height: int = 48) -> str:
    """A tiny inline SVG: the measured points and the fitted line, bytes against iterations.

    `title` (a signature: program text) is escaped, as is everything else put in it."""
    pad = 4
    ns = [n for n, _ in fit.points]
    bs = [b for _, b in fit.points]
    x0, x1 = 0, max(ns) or 1
    top = max(max(bs), fit.fixed_bytes + fit.rate_per_op * x1, 1)
    bottom = min(0.0, fit.fixed_bytes)

    def x(n: float) -> str:
        return _num(pad + (n - x0) / (x1 - x0) * (width - 2 * pad))

    def y(b: float) -> str:
        return _num(height - pad - (b - bottom) / (top - bottom) * (height - 2 * pad))

    label = f"{title}: " if title else ""
    label += (f"{_num(fit.rate_per_op)} B per operation + {_num(fit.fixed_bytes)} B once "
              f"(R\u00b2 {fit.r2:.3f})")
    esc = html.escape(label, quote=True)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="growth" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc}">',
        f"<title>{esc}</title>",
        f'<line x1="{x(x0)}" y1="{y(fit.fixed_bytes)}" x2="{x(x1)}" '
        f'y2="{y(fit.fixed_bytes + fit.rate_per_op * x1)}" stroke="#0969da" stroke-width="1.5"/>',
    ]
    for n, b in fit.points:
        if math.isfinite(b):
            parts.append(f'<circle cx="{x(n)}" cy="{y(b)}" r="2.5" fill="#cf222e"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, points: list[str], ticks: list[str], series: dict[str, list[float]],
               unit: str = "") -> str:
    """A line chart: one line per series over the same points (their labels in `points`, for
    the hover text; `ticks` the short labels under the axis), with its legend."""
    count = len(points)
    top = max([v for values in series.values() for v in values] + [0.0])
    top = top if top > 0 else 1.0
    inner_w, inner_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    left, right, upper, bottom = PAD_L, CHART_W - PAD_R, PAD_T, CHART_H - PAD_B

    def x(i: int) -> float:
        return round(PAD_L + (inner_w * i / (count - 1) if count > 1 else inner_w / 2), 1)

    def y(v: float) -> float:
        return round(PAD_T + inner_h - inner_h * v / top, 1)

    out = [f'<svg width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
           f'aria-label="{_esc(title)}">',
           f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#8c959f"/>',
           f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{bottom}" stroke="#8c959f"/>',
           f'<text x="{left - 4}" y="{upper + 8}" text-anchor="end">{_esc(f"{top:g}{unit}")}</text>',
           f'<text x="{left - 4}" y="{bottom}" text-anchor="end">0</text>']
    step = max(1, (count + 7) // 8)  # at most about 8 labels under the axis
    for i in range(0, count, step):
        out.append(f'<text x="{x(i)}" y="{bottom + 16}" text-anchor="middle">{_esc(ticks[i])}</text>')
    legend = []
    for index, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for i, v in enumerate(values):
            label = f"{points[i]}: {name} {v:g}{unit}"
            out.append(f'<circle cx="{x(i)}" cy="{y(v)}" r="3" fill="{color}"><title>{_esc(label)}</title></circle>')
        last = values[-1] if values else 0
        legend.append(f'<span><i style="background: {color}"></i>{_esc(name)} ({_esc(f"{last:g}{unit}")})</span>')
    out.append("</svg>")
    return "".join(out) + f'<div class="legend">{"".join(legend)}</div>'
