"""Server-side SVG charts for the dashboard: line charts, horizontal bars with intervals, a histogram.

Plain strings, no plotting library and no script: the page works offline, behind basic auth, in any browser, and
a chart costs microseconds. Every chart is a well-formed standalone ``<svg>`` element (xmlns set, text escaped), so
it can also be saved as a file. Inputs are the snapshot's aggregates, a few hundred points at most.
"""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

# one palette for every chart: series keep their colour across charts (suggested = blue, control = orange)
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2")
FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px"
WIDTH, HEIGHT = 560, 260
MARGIN = {"left": 52, "right": 16, "top": 40, "bottom": 40}  # top: the title row and the legend row


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def _num(x: float) -> str:
    """A coordinate with one decimal: short markup, sub-pixel enough."""
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 5, min_step: float = 0.0) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 5 × a power of ten apart, at least ``min_step``: 1 for
    counts, so that no tick reads "1.5 versions")."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = max((hi - lo) / max(1, n), min_step)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 10))
    return ticks


def fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


def _open(title: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_t(title)}" class="chart" style="{FONT}">',
            f"<title>{_t(title)}</title>",
            f'<text x="{MARGIN["left"]}" y="16" font-weight="600" font-size="12">{_t(title)}</text>']


def _empty(title: str, message: str, width: int = WIDTH, height: int = 120) -> str:
    out = _open(title, width, height)
    out.append(f'<text x="{width / 2:.0f}" y="{height / 2 + 8:.0f}" text-anchor="middle" fill="#888">{_t(message)}</text>')
    return "".join(out) + "</svg>"


def line_chart(title: str, series: Sequence[dict], x_label: str, y_label: str, y_range: tuple[float, float] | None = None,
               width: int = WIDTH, height: int = HEIGHT) -> str:
    """Lines with point markers. ``series``: ``{"name", "points": [(x, y), ...], "color"?, "dashed"?, "line"?}``;
    ``"hollow": [bool per point]`` draws some markers hollow (rejected versions); ``"line": False`` draws markers only.
    None y values break the line."""
    pts = [(x, y) for s in series for x, y in s["points"] if x is not None and y is not None]
    if not pts:
        return _empty(title, "no data yet")
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range if y_range else (min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts))
    counts = all(isinstance(p[0], int) for p in pts)
    xt = nice_ticks(x0 if x0 != x1 else x0 - 1, x1 if x0 != x1 else x1 + 1, min_step=1.0 if counts else 0.0)
    yt = nice_ticks(y0, y1 if y1 > y0 else y0 + 1)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    left, right, top, bottom = MARGIN["left"], width - MARGIN["right"], MARGIN["top"], height - MARGIN["bottom"]

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y0) / ((y1 - y0) or 1) * (bottom - top)

    out = _open(title, width, height)
    out += _axes(xt, yt, sx, sy, left, right, top, bottom, x_label, y_label)
    for i, s in enumerate(series):
        color = s.get("color") or COLORS[i % len(COLORS)]
        dash = ' stroke-dasharray="5,4"' if s.get("dashed") else ""
        if s.get("line", True):
            segment: list[str] = []
            for x, y in list(s["points"]) + [(None, None)]:
                if x is None or y is None:
                    if len(segment) > 1:
                        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{" ".join(segment)}"/>')
                    segment = []
                    continue
                segment.append(f"{_num(sx(x))},{_num(sy(y))}")
        hollow = s.get("hollow") or [False] * len(s["points"])
        for (x, y), h in zip(s["points"], hollow):
            if x is None or y is None:
                continue
            fill = "#fff" if h else color
            out.append(f'<circle cx="{_num(sx(x))}" cy="{_num(sy(y))}" r="3.2" fill="{fill}" stroke="{color}" stroke-width="1.5">'
                       f"<title>{_t(s['name'])}: {_t(fmt_tick(x))}, {y:.3g}</title></circle>")
    out += _legend([(s["name"], s.get("color") or COLORS[i % len(COLORS)]) for i, s in enumerate(series)], right)
    return "".join(out) + "</svg>"


def _axes(xt, yt, sx, sy, left, right, top, bottom, x_label: str, y_label: str) -> list[str]:
    out = []
    for v in yt:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{right}" y1="{_num(y)}" y2="{_num(y)}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end" fill="#555">{_t(fmt_tick(v))}</text>')
    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>')
        out.append(f'<text x="{_num(x)}" y="{bottom + 16}" text-anchor="middle" fill="#555">{_t(fmt_tick(v))}</text>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#888"/>')
    out.append(f'<text x="{(left + right) / 2:.0f}" y="{bottom + 32}" text-anchor="middle" fill="#333">{_t(x_label)}</text>')
    out.append(f'<text transform="translate(14 {(top + bottom) / 2:.0f}) rotate(-90)" text-anchor="middle" fill="#333">{_t(y_label)}</text>')
    return out


def _legend(items: list[tuple[str, str]], right: float) -> list[str]:
    """Legend entries right-aligned under the title (a chart has two or three series)."""
    if len(items) < 2:
        return []
    out, x = [], right
    for name, color in reversed(items):
        w = 14 + 6.2 * len(name)
        x -= w + 10
        out.append(f'<rect x="{x:.0f}" y="21" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14:.0f}" y="30" fill="#333">{_t(name)}</text>')
    return out


def bar_chart(title: str, bars: Sequence[dict], x_label: str, width: int = WIDTH) -> str:
    """Horizontal bars with optional 95% intervals. ``bars``: ``{"name", "value", "low"?, "high"?, "color"?, "note"?}``."""
    bars = [b for b in bars if b.get("value") is not None]
    if not bars:
        return _empty(title, "no data yet")
    notes = [b.get("note") or f"{b['value']:.3g}" for b in bars]
    row, label_w = 22, min(200, 12 + 6.4 * max(len(str(b["name"])) for b in bars))
    left, right, top = label_w + 8, width - min(200, 16 + 6.2 * max(len(n) for n in notes)), MARGIN["top"] - 12
    height = top + row * len(bars) + 40
    hi = max(max(b.get("high") or b["value"], b["value"]) for b in bars)
    lo = min(0.0, min(min(b.get("low") if b.get("low") is not None else b["value"], b["value"]) for b in bars))
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1)

    def sx(v: float) -> float:
        return left + (v - ticks[0]) / ((ticks[-1] - ticks[0]) or 1) * (right - left)

    out = _open(title, width, height)
    bottom = top + row * len(bars)
    for v in ticks:
        out.append(f'<line x1="{_num(sx(v))}" x2="{_num(sx(v))}" y1="{top}" y2="{bottom}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{_num(sx(v))}" y="{bottom + 14}" text-anchor="middle" fill="#555">{_t(fmt_tick(v))}</text>')
    for i, (b, note) in enumerate(zip(bars, notes)):
        y = top + i * row
        color = b.get("color") or COLORS[0]
        x_a, x_b = sx(min(0.0, b["value"])), sx(max(0.0, b["value"]))
        label = str(b["name"]) if len(str(b["name"])) <= 30 else str(b["name"])[:29] + "…"
        out.append(f'<text x="{left - 6:.0f}" y="{y + 15}" text-anchor="end" fill="#333">{_t(label)}</text>')
        out.append(f'<rect x="{_num(x_a)}" y="{y + 4}" width="{_num(max(1.0, x_b - x_a))}" height="{row - 8}" fill="{color}">'
                   f"<title>{_t(b['name'])}: {b['value']:.3g}</title></rect>")
        if b.get("low") is not None and b.get("high") is not None:
            yl = y + row / 2
            out.append(f'<line x1="{_num(sx(b["low"]))}" x2="{_num(sx(b["high"]))}" y1="{yl}" y2="{yl}" stroke="#222" stroke-width="1.2"/>'
                       f'<line x1="{_num(sx(b["low"]))}" x2="{_num(sx(b["low"]))}" y1="{yl - 4}" y2="{yl + 4}" stroke="#222"/>'
                       f'<line x1="{_num(sx(b["high"]))}" x2="{_num(sx(b["high"]))}" y1="{yl - 4}" y2="{yl + 4}" stroke="#222"/>')
        out.append(f'<text x="{right + 6}" y="{y + 15}" fill="#333">{_t(note)}</text>')
    out.append(f'<line x1="{_num(sx(0.0))}" x2="{_num(sx(0.0))}" y1="{top}" y2="{bottom}" stroke="#888"/>')
    out.append(f'<text x="{(left + right) / 2:.0f}" y="{bottom + 30}" text-anchor="middle" fill="#333">{_t(x_label)}</text>')
    return "".join(out) + "</svg>"


def histogram(title: str, counts: Sequence[int], lo: float, hi: float, x_label: str, width: int = WIDTH, height: int = 200) -> str:
    """Equal-width bins over [lo, hi] (``counts`` per bin, left to right)."""
    if not counts or not sum(counts):
        return _empty(title, "no data yet")
    left, right, top, bottom = MARGIN["left"], width - MARGIN["right"], MARGIN["top"], height - MARGIN["bottom"]
    yt = nice_ticks(0, max(counts), 4)
    xt = nice_ticks(lo, hi, 5)

    def sx(v: float) -> float:
        return left + (v - lo) / ((hi - lo) or 1) * (right - left)

    def sy(v: float) -> float:
        return bottom - v / (yt[-1] or 1) * (bottom - top)

    out = _open(title, width, height)
    out += _axes([t for t in xt if lo <= t <= hi], yt, sx, sy, left, right, top, bottom, x_label, "tasks")
    step = (hi - lo) / len(counts)
    for i, c in enumerate(counts):
        a, b = sx(lo + i * step), sx(lo + (i + 1) * step)
        out.append(f'<rect x="{_num(a + 0.5)}" y="{_num(sy(c))}" width="{_num(max(0.5, b - a - 1))}" height="{_num(bottom - sy(c))}" '
                   f'fill="{COLORS[0]}"><title>{lo + i * step:.2f}-{lo + (i + 1) * step:.2f}: {c}</title></rect>')
    return "".join(out) + "</svg>"
