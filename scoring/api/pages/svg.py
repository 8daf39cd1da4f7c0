"""Plots as inline SVG strings, drawn on the server: no plotting library, nothing from a CDN.

Every function is pure (numbers in, markup out) and escapes every piece of text it draws, so a
feature or class name can never inject markup into a page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import TypeGuard

W, H = 420, 300
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 28, 44


def _open(title: str, width: int = W, height: int = H) -> list[str]:
    """Start an SVG with an accessible title and the plot's heading."""
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{t}" class="plot"><title>{t}</title>',
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" class="plot-title">{t}</text>',
    ]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _range(values: Sequence[float]) -> tuple[float, float]:
    """Return a non-empty span covering the values, padded a little."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


class _Axes:
    """Map data coordinates to the plot area and draw the frame with a few ticks."""

    def __init__(self, xr: tuple[float, float], yr: tuple[float, float]) -> None:
        self.xr, self.yr = xr, yr

    def x(self, v: float) -> float:
        lo, hi = self.xr
        return PAD_L + (v - lo) / (hi - lo) * (W - PAD_L - PAD_R)

    def y(self, v: float) -> float:
        lo, hi = self.yr
        return H - PAD_B - (v - lo) / (hi - lo) * (H - PAD_T - PAD_B)

    def frame(self, xlabel: str, ylabel: str) -> list[str]:
        out = [
            f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
            f'height="{H - PAD_T - PAD_B}" class="plot-frame"/>'
        ]
        for i in range(5):
            xv = self.xr[0] + (self.xr[1] - self.xr[0]) * i / 4
            yv = self.yr[0] + (self.yr[1] - self.yr[0]) * i / 4
            out.append(
                f'<text x="{self.x(xv):.1f}" y="{H - PAD_B + 14}" text-anchor="middle" '
                f'class="tick">{_fmt(xv)}</text>'
            )
            out.append(
                f'<text x="{PAD_L - 4}" y="{self.y(yv) + 4:.1f}" text-anchor="end" '
                f'class="tick">{_fmt(yv)}</text>'
            )
        out.append(
            f'<text x="{(PAD_L + W - PAD_R) / 2:.0f}" y="{H - 6}" text-anchor="middle" '
            f'class="axis-label">{escape(xlabel)}</text>'
        )
        out.append(
            f'<text x="12" y="{(PAD_T + H - PAD_B) / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2:.0f})" '
            f'class="axis-label">{escape(ylabel)}</text>'
        )
        return out


def _fmt(v: float) -> str:
    """Format a tick compactly: 3 significant digits."""
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.3g}"
    return f"{v:.1e}"


def scatter(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    hline: float | None = None,
) -> str:
    """Draw points, with an optional y = x line (predicted vs actual) or a flat reference."""
    pairs = [(float(a), float(b)) for a, b in zip(xs, ys, strict=False) if _ok(a) and _ok(b)]
    px, py = [p[0] for p in pairs], [p[1] for p in pairs]
    if diagonal:
        both = _range(px + py)
        axes = _Axes(both, both)
    else:
        axes = _Axes(_range(px), _range(py + ([hline] if hline is not None else [])))
    out = _open(title) + axes.frame(xlabel, ylabel)
    if diagonal:
        lo, hi = axes.xr
        out.append(
            f'<line x1="{axes.x(lo):.1f}" y1="{axes.y(lo):.1f}" x2="{axes.x(hi):.1f}" '
            f'y2="{axes.y(hi):.1f}" class="ref"/>'
        )
    if hline is not None:
        out.append(
            f'<line x1="{PAD_L}" y1="{axes.y(hline):.1f}" x2="{W - PAD_R}" '
            f'y2="{axes.y(hline):.1f}" class="ref"/>'
        )
    out += [f'<circle cx="{axes.x(a):.1f}" cy="{axes.y(b):.1f}" r="2.5"/>' for a, b in pairs]
    return "".join(out) + "</svg>"


def line(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    ylabel: str,
    highlight: int | None = None,
) -> str:
    """Draw a metric across categories (versions), points joined, gaps where a value is missing."""
    n = len(labels)
    axes = _Axes((-0.5, max(n - 0.5, 0.5)), _range(_finite(values)))
    out = _open(title) + axes.frame("", ylabel)[:1]  # frame only; x ticks are the labels
    for i in range(5):
        yv = axes.yr[0] + (axes.yr[1] - axes.yr[0]) * i / 4
        out.append(
            f'<text x="{PAD_L - 4}" y="{axes.y(yv) + 4:.1f}" text-anchor="end" '
            f'class="tick">{_fmt(yv)}</text>'
        )
    step = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        if i % step == 0:
            out.append(
                f'<text x="{axes.x(i):.1f}" y="{H - PAD_B + 14}" text-anchor="middle" '
                f'class="tick">{escape(str(label))}</text>'
            )
    points = [(axes.x(i), axes.y(float(v))) for i, v in enumerate(values) if _ok(v)]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" class="series"/>')
    for i, v in enumerate(values):
        if _ok(v):
            cls = ' class="current"' if i == highlight else ""
            out.append(
                f'<circle cx="{axes.x(i):.1f}" cy="{axes.y(float(v)):.1f}" r="4"{cls}>'
                f"<title>{escape(str(labels[i]))}: {_fmt(float(v))}</title></circle>"
            )
    return "".join(out) + "</svg>"


def bars(names: Sequence[str], values: Sequence[float], *, title: str) -> str:
    """Draw signed horizontal bars (coefficients or importances), biggest magnitude first."""
    rows = sorted(
        ((str(n), float(v)) for n, v in zip(names, values, strict=False) if _ok(v)),
        key=lambda r: -abs(r[1]),
    )[:20]
    height = PAD_T + 18 * max(len(rows), 1) + 12
    lo = min([0.0, *[v for _, v in rows]])
    hi = max([0.0, *[v for _, v in rows]])
    span = (hi - lo) or 1.0
    left, right = 150, W - 50

    def x(v: float) -> float:
        return left + (v - lo) / span * (right - left)

    out = _open(title, W, height)
    for i, (name, value) in enumerate(rows):
        y = PAD_T + 18 * i
        x0, x1 = sorted((x(0.0), x(value)))
        out.append(
            f'<text x="{left - 4}" y="{y + 12}" text-anchor="end" class="tick">'
            f"{escape(name[:24])}</text>"
            f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.5):.1f}" height="13" '
            f'class="{"bar-neg" if value < 0 else "bar"}"><title>{escape(name)}: '
            f"{_fmt(value)}</title></rect>"
            f'<text x="{max(x0, x1) + 3:.1f}" y="{y + 12}" class="tick">{_fmt(value)}</text>'
        )
    out.append(
        f'<line x1="{x(0):.1f}" y1="{PAD_T}" x2="{x(0):.1f}" y2="{height - 10}" class="ref"/>'
    )
    return "".join(out) + "</svg>"


def confusion(classes: Sequence[str], matrix: Sequence[Sequence[int]], *, title: str) -> str:
    """Draw a confusion-matrix grid: rows are actual classes, columns predicted, counts inside."""
    n = max(len(classes), 1)
    cell = min(60, (W - 120) // n)
    size = 110 + cell * n
    top = max((max(row) for row in matrix), default=0) or 1
    out = _open(title, size + 10, size + 20)
    for j, name in enumerate(classes):
        out.append(
            f'<text x="{100 + cell * j + cell / 2:.0f}" y="40" text-anchor="middle" '
            f'class="tick">{escape(str(name)[:10])}</text>'
        )
    for i, row in enumerate(matrix):
        y = 48 + cell * i
        out.append(
            f'<text x="94" y="{y + cell / 2 + 4:.0f}" text-anchor="end" class="tick">'
            f"{escape(str(classes[i])[:12])}</text>"
        )
        for j, count in enumerate(row):
            shade = 0.08 + 0.85 * count / top
            out.append(
                f'<rect x="{100 + cell * j}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'class="cell" fill-opacity="{shade:.2f}"/>'
                f'<text x="{100 + cell * j + cell / 2 - 1:.0f}" y="{y + cell / 2 + 4:.0f}" '
                f'text-anchor="middle" class="count">{int(count)}</text>'
            )
    out.append(
        f'<text x="{100 + cell * n / 2:.0f}" y="28" text-anchor="middle" class="axis-label">'
        "predicted</text>"
        f'<text x="12" y="{48 + cell * n / 2:.0f}" class="axis-label" text-anchor="middle" '
        f'transform="rotate(-90 12 {48 + cell * n / 2:.0f})">actual</text>'
    )
    return "".join(out) + "</svg>"


def roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str) -> str:
    """Draw ROC curves (false positive rate → true positive rate), one per class, with y = x."""
    axes = _Axes((0.0, 1.0), (0.0, 1.0))
    out = _open(title) + axes.frame("false positive rate", "true positive rate")
    out.append(
        f'<line x1="{axes.x(0)}" y1="{axes.y(0)}" x2="{axes.x(1)}" y2="{axes.y(1)}" class="ref"/>'
    )
    for k, (name, (fpr, tpr)) in enumerate(curves.items()):
        path = " ".join(f"{axes.x(a):.1f},{axes.y(b):.1f}" for a, b in zip(fpr, tpr, strict=False))
        out.append(
            f'<polyline points="{path}" class="series s{k % 4}">'
            f"<title>{escape(str(name))}</title></polyline>"
        )
        out.append(
            f'<text x="{W - PAD_R - 4}" y="{H - PAD_B - 8 - 14 * k}" text-anchor="end" '
            f'class="legend s{k % 4}">{escape(str(name)[:20])}</text>'
        )
    return "".join(out) + "</svg>"


def _ok(v: float | None) -> TypeGuard[float]:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
