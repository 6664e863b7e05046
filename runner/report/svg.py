"""Small inline-SVG plots (line, scatter, grouped bars, horizontal bars) for the HTML report.

The report must open offline and stay a single file, so plots are SVG markup built here. Every
piece of text goes through :func:`markupsafe.escape` (run and attack names are user text); the
result is :class:`markupsafe.Markup`, which Jinja2's autoescape then leaves alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#555555", "#000000")
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""
LEGEND_CHARS = 26


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    """One line (or point set) of a plot; ``None`` or NaN values leave a gap."""

    label: str
    x: Sequence[float | None]
    y: Sequence[float | None]
    color: str | None = None
    dash: bool = False
    lo: Sequence[float | None] | None = None  # optional band (e.g. a 95% CI)
    hi: Sequence[float | None] | None = None
    points_only: bool = False
    highlight: Sequence[bool] | None = None  # drawn as larger filled markers (e.g. Pareto front)


def _ok(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (whole numbers only with ``integer``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    if integer:
        step = max(1.0, round(step))
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 10))
        t += step
    if ticks[0] > lo + 1e-12:
        ticks.insert(0, ticks[0] - step)
    if ticks[-1] < hi - 1e-12:
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt(v: float, step: float) -> str:
    if step >= 1 and float(v).is_integer():
        return f"{int(v):,}"
    decimals = max(0, min(6, -math.floor(math.log10(step)) + (0 if step * 10 % 10 == 0 else 1)))
    return f"{v:.{decimals}f}"


def _label(text: str) -> tuple[str, str]:
    full = str(text)
    short = full if len(full) <= LEGEND_CHARS else full[: LEGEND_CHARS - 1] + "…"
    return str(escape(short)), str(escape(full))


class _Frame:
    """Plot area and data-to-pixel mapping shared by the plot kinds."""

    def __init__(self, width, height, xlim, ylim, legend_w, left=58, bottom=46, top=30, xint=False):
        self.w, self.h = width, height
        self.left, self.top = left, top
        self.right = width - 16 - legend_w
        self.bottom = height - bottom
        self.xt, self.yt = nice_ticks(*xlim, integer=xint), nice_ticks(*ylim)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1) * (self.right - self.left)

    def py(self, y: float) -> float:
        return self.bottom - (y - self.y0) / ((self.y1 - self.y0) or 1) * (self.bottom - self.top)


def _open(width: int, height: int, title: str) -> list[str]:
    t = escape(title)
    return [
        f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{t}" {FONT}>',
        f"<title>{t}</title>",
        f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-size="14" '
        f'font-weight="600" fill="#1f2937">{t}</text>',
    ]


def _axes(
    f: _Frame, xlabel: str, ylabel: str, xticks: bool = True, xnames: dict | None = None
) -> list[str]:
    out = []
    ystep = f.yt[1] - f.yt[0] if len(f.yt) > 1 else 1
    for t in f.yt:
        y = f.py(t)
        out.append(
            f'<line x1="{f.left}" y1="{y:.1f}" x2="{f.right}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        out.append(
            f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#4b5563">{_fmt(t, ystep)}</text>'
        )
    if xticks:
        xstep = f.xt[1] - f.xt[0] if len(f.xt) > 1 else 1
        for t in f.xt:
            x = f.px(t)
            if xnames is not None and t not in xnames:
                continue  # named ticks only (e.g. one per release)
            out.append(
                f'<line x1="{x:.1f}" y1="{f.bottom}" x2="{x:.1f}" y2="{f.bottom + 4}" '
                'stroke="#6b7280"/>'
            )
            if xnames is not None:
                raw = str(xnames[t])  # cut before escaping: never inside an entity
                short = raw if len(raw) <= 14 else raw[:13] + "…"
                text = f"<title>{escape(raw)}</title>{escape(short)}"
            else:
                text = _fmt(t, xstep)
            out.append(
                f'<text x="{x:.1f}" y="{f.bottom + 17}" text-anchor="middle" font-size="11" '
                f'fill="#4b5563">{text}</text>'
            )
    out.append(
        f'<line x1="{f.left}" y1="{f.bottom}" x2="{f.right}" y2="{f.bottom}" stroke="#6b7280"/>'
    )
    out.append(f'<line x1="{f.left}" y1="{f.top}" x2="{f.left}" y2="{f.bottom}" stroke="#6b7280"/>')
    cx = (f.left + f.right) / 2
    out.append(
        f'<text x="{cx:.1f}" y="{f.h - 8}" text-anchor="middle" font-size="12" '
        f'fill="#374151">{escape(xlabel)}</text>'
    )
    cy = (f.top + f.bottom) / 2
    out.append(
        f'<text x="14" y="{cy:.1f}" text-anchor="middle" font-size="12" fill="#374151" '
        f'transform="rotate(-90 14 {cy:.1f})">{escape(ylabel)}</text>'
    )
    return out


def _legend(
    f: _Frame, items: list[tuple[str, str, bool, str]], x: float | None = None
) -> list[str]:
    """items: (label, colour, dashed, kind) with kind 'line', 'point' or 'box'."""
    out = []
    lx = (f.right + 14) if x is None else x
    for i, (label, c, dash, kind) in enumerate(items[:14]):
        y = f.top + 6 + i * 18
        short, full = _label(label)
        if kind == "box":
            out.append(f'<rect x="{lx}" y="{y - 5}" width="14" height="10" fill="{c}"/>')
        elif kind == "point":
            out.append(f'<circle cx="{lx + 7}" cy="{y}" r="4" fill="{c}"/>')
        else:
            da = ' stroke-dasharray="5 3"' if dash else ""
            out.append(
                f'<line x1="{lx}" y1="{y}" x2="{lx + 18}" y2="{y}" stroke="{c}" '
                f'stroke-width="2.2"{da}/>'
            )
        out.append(
            f'<text x="{lx + 24}" y="{y + 4}" font-size="11" fill="#374151">'
            f"<title>{full}</title>{short}</text>"
        )
    if len(items) > 14:
        out.append(
            f'<text x="{lx}" y="{f.top + 6 + 14 * 18 + 4}" font-size="11" fill="#6b7280">'
            f"+{len(items) - 14} more</text>"
        )
    return out


def _limits(values: list[float], pad_zero: bool = False) -> tuple[float, float]:
    vals = [v for v in values if _ok(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if pad_zero:
        lo = min(lo, 0.0)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def line_plot(
    series: list[Series],
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 600,
    height: int = 320,
    ylim: tuple[float, float] | None = None,
    legend: bool = True,
    xnames: dict[float, str] | None = None,
) -> Markup:
    """Lines (or points) with optional bands; axes with round ticks, a legend on the right.
    ``xnames``: text for the ticks at those x values (only those are drawn)."""
    legend_w = 170 if legend and series else 0
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in (*s.y, *(s.lo or ()), *(s.hi or ()))]
    xint = bool(xs) and all(isinstance(v, int) and not isinstance(v, bool) for v in xs if _ok(v))
    f = _Frame(width, height, _limits(xs), ylim or _limits(ys), legend_w, xint=xint)
    out = _open(width, height, title) + _axes(f, xlabel, ylabel, xnames=xnames)
    items = []
    for i, s in enumerate(series):
        c = s.color or color(i)
        out += _band(f, s, c)
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(s.x, s.y, strict=False):
            if _ok(x) and _ok(y):
                segments[-1].append((f.px(x), f.py(y)))
            elif segments[-1]:
                segments.append([])
        if not s.points_only:
            out += _polylines(segments, c, s.dash)
        if s.points_only or sum(len(seg) for seg in segments) <= 40:
            out += _markers(f, s, c)
        items.append((s.label, c, s.dash, "point" if s.points_only else "line"))
    if legend and series:
        out += _legend(f, items)
    out.append("</svg>")
    return Markup("".join(out))


def _band(f: _Frame, s: Series, c: str) -> list[str]:
    """The series' interval (``lo`` to ``hi``) as a translucent polygon, where it has one."""
    if s.lo is None or s.hi is None:
        return []
    pts = [
        (x, lo, hi)
        for x, lo, hi in zip(s.x, s.lo, s.hi, strict=False)
        if _ok(x) and _ok(lo) and _ok(hi)
    ]
    if len(pts) <= 1:
        return []
    upper = " ".join(f"{f.px(x):.1f},{f.py(hi):.1f}" for x, _, hi in pts)
    lower = " ".join(f"{f.px(x):.1f},{f.py(lo):.1f}" for x, lo, _ in reversed(pts))
    return [f'<polygon points="{upper} {lower}" fill="{c}" fill-opacity="0.12"/>']


def _polylines(segments: list[list[tuple[float, float]]], c: str, dash: bool) -> list[str]:
    """One line per run of finite points (a gap where a value is missing)."""
    da = ' stroke-dasharray="6 4"' if dash else ""
    out = []
    for seg in segments:
        if len(seg) > 1:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"'
                f'{da} stroke-linejoin="round"/>'
            )
    return out


def _markers(f: _Frame, s: Series, c: str) -> list[str]:
    """A circle with a tooltip per finite point; ``s.highlight`` ones drawn larger."""
    out = []
    flags = list(s.highlight or [])
    tip = escape(s.label)
    k = 0
    for x, y in zip(s.x, s.y, strict=False):
        if not (_ok(x) and _ok(y)):
            k += 1
            continue
        big = k < len(flags) and flags[k]
        r = 4.5 if big else (3 if s.points_only else 2.5)
        fill = c if (big or not s.points_only or not flags) else "white"
        out.append(
            f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="{r}" fill="{fill}" '
            f'stroke="{c}" stroke-width="1.4"><title>{tip}: {x:g}, {y:.4g}</title></circle>'
        )
        k += 1
    return out


def bar_plot(
    categories: list[str],
    groups: list[tuple[str, list[float | None], list[float | None], list[float | None]]],
    title: str,
    ylabel: str,
    width: int = 720,
    height: int = 330,
    ylim: tuple[float, float] = (0.0, 1.0),
) -> Markup:
    """Grouped vertical bars: ``groups`` = [(label, values, ci_low, ci_high)] over ``categories``."""
    legend_w = 190
    f = _Frame(width, height, (0, 1), ylim, legend_w, bottom=58)
    out = _open(width, height, title) + _axes(f, "", ylabel, xticks=False)
    n_cat, n_grp = max(1, len(categories)), max(1, len(groups))
    slot = (f.right - f.left) / n_cat
    bw = min(34.0, slot * 0.8 / n_grp)
    for ci, cat in enumerate(categories):
        x_mid = f.left + slot * (ci + 0.5)
        short, full = _label(cat)
        out.append(
            f'<text x="{x_mid:.1f}" y="{f.bottom + 16}" text-anchor="middle" font-size="11" '
            f'fill="#374151"><title>{full}</title>{short}</text>'
        )
        for gi, (label, vals, lo, hi) in enumerate(groups):
            v = vals[ci] if ci < len(vals) else None
            if not _ok(v):
                continue
            x = x_mid - bw * n_grp / 2 + gi * bw
            y = f.py(v)
            c = color(gi)
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                f'height="{max(0.0, f.bottom - y):.1f}" fill="{c}">'
                f"<title>{escape(label)} · {escape(cat)}: {v:.3f}</title></rect>"
            )
            lv, hv = (lo[ci] if lo else None), (hi[ci] if hi else None)
            if _ok(lv) and _ok(hv):
                xm = x + bw / 2
                out.append(
                    f'<path d="M{xm:.1f},{f.py(lv):.1f}V{f.py(hv):.1f}'
                    f'M{xm - 3:.1f},{f.py(lv):.1f}h6M{xm - 3:.1f},{f.py(hv):.1f}h6" '
                    'stroke="#111827" stroke-width="1.1" fill="none"/>'
                )
    out += _legend(f, [(g[0], color(i), False, "box") for i, g in enumerate(groups)])
    out.append("</svg>")
    return Markup("".join(out))


def hbar_plot(
    labels: list[str], values: list[float], title: str, xlabel: str, width: int = 600
) -> Markup:
    """Horizontal bars (e.g. parameter importances), largest first."""
    row = 24
    height = 60 + row * max(1, len(labels))
    left = 150
    top = 30
    vmax = max([v for v in values if _ok(v)] or [1.0]) or 1.0
    out = _open(width, height, title)
    right = width - 60
    for i, (lab, v) in enumerate(zip(labels, values, strict=False)):
        y = top + i * row
        short, full = _label(lab)
        out.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="#374151"><title>{full}</title>{short}</text>'
        )
        if _ok(v):
            w = (right - left) * v / vmax
            out.append(
                f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                f'fill="{color(0)}"/>'
            )
            out.append(
                f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="11" '
                f'fill="#374151">{v:.3f}</text>'
            )
    out.append(
        f'<text x="{(left + right) / 2:.1f}" y="{height - 8}" text-anchor="middle" '
        f'font-size="12" fill="#374151">{escape(xlabel)}</text>'
    )
    out.append("</svg>")
    return Markup("".join(out))
