"""The drift page's plots as inline SVG: reference vs current histograms, realized metrics by day.

Pure functions (numbers and names in, escaped markup out) on the dashboard's one plot geometry
and type scale (``svg``) and its round-tick axes (``scales``). A histogram draws each side's
share of its own rows, so a drop of 300 rows and a training set of 300,000 compare bin by bin;
within a side every bar's height is proportional to its count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from scoring.api.pages import svg
from scoring.api.pages.scales import Scale, linear

LABEL_CHARS = 19  # a bin's or category's label under its bars, at most (its full name: hover)
LABELS_ROOM = 96  # viewBox units below the plot for the slanted labels and the legend
SERIES = 4  # versions drawn on the realized-performance plot (the CSS has four series colours)


def histogram(
    labels: Sequence[str],
    reference: Sequence[int],
    current: Sequence[int],
    *,
    title: str,
    note: str | None = None,
) -> str:
    """Draw two bars per bin or category, the reference's beside the current's, as shares.

    Each bar is a ``rect`` with ``data-side`` and ``data-count``; its title gives the label, the
    count and the share, so the numbers behind the picture can be read without guessing.
    """
    n = max(len(labels), 1)
    ref_total, cur_total = sum(reference), sum(current)
    ref_shares = [_share(c, ref_total) for c in reference]
    cur_shares = [_share(c, cur_total) for c in current]
    top = max([*ref_shares, *cur_shares, 0.0]) or 1.0
    axes = svg._Axes(Scale(0.0, float(n), ()), linear(0.0, top, floor=0.0))
    height = svg.H + LABELS_ROOM
    out = [*svg._open(title, height), axes.frame(), *axes.y_ticks()]
    out.append(axes.labels("", "share of rows")[1])
    slot = (svg.W - svg.PAD_L - svg.PAD_R) / n
    bar = slot * 0.4
    base = axes.y(0.0)
    for i, label in enumerate(labels):
        left = axes.x(float(i)) + slot * 0.1
        for k, (side, counts, shares, total) in enumerate(
            (
                ("reference", reference, ref_shares, ref_total),
                ("current", current, cur_shares, cur_total),
            )
        ):
            if i >= len(counts) or total == 0:
                continue
            h = base - axes.y(shares[i])
            out.append(
                f'<rect x="{left + k * bar:.2f}" y="{base - h:.2f}" width="{bar:.2f}" '
                f'height="{h:.2f}" class="hist-{side}" data-side="{side}" '
                f'data-count="{int(counts[i])}"><title>{escape(label)}: {side} '
                f"{int(counts[i])} of {total} ({shares[i]:.1%})</title></rect>"
            )
        x, y = axes.x(i + 0.5), base + 12
        out.append(
            svg.text(
                x,
                y,
                _short(label),
                "tick",
                cls="bin",
                extra=f' text-anchor="end" transform="rotate(-55 {x:.1f} {y:.1f})"',
            )
        )
    legend = [
        (f"reference ({ref_total} rows)", "hist-reference"),
        (f"current ({cur_total} rows)", "hist-current"),
    ]
    out += _legend(legend, height - 10)
    out += axes.note(note)
    return "".join(out) + "</svg>"


def performance(versions: Sequence[Mapping[str, Any]], metric: str) -> str:
    """Draw each version's realized ``metric`` per day, its hold-out value as a dashed line.

    ``versions`` is ``GET /performance``'s list (newest first); the newest ``SERIES`` are drawn,
    each in its own colour, its legend naming the version and its hold-out value.
    """
    from scoring.api.pages.plots import METRIC_RANGE

    shown = list(versions)[:SERIES]
    days = sorted({d["day"] for v in shown for d in v["realized"]})
    values = [
        float(d["metrics"][metric])
        for v in shown
        for d in v["realized"]
        if svg._ok(d["metrics"].get(metric))
    ]
    holdouts = [float(v["holdout"][metric]) for v in shown if svg._ok(v["holdout"].get(metric))]
    everything = values + holdouts
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    pad = (hi - lo) * 0.05
    floor, ceiling = METRIC_RANGE.get(metric, (None, None))
    axes = svg._Axes(
        Scale(-0.5, max(len(days) - 0.5, 0.5), ()),
        linear(lo - pad, hi + pad, floor=floor, ceiling=ceiling),
    )
    at = {day: i for i, day in enumerate(days)}
    height = svg.H + 14 * len(shown) + 6  # the legend under the plot, a line per version
    out = [*svg._open(f"realized {metric} by day", height), axes.frame(), *axes.y_ticks()]
    out += axes.labels("day (UTC)", metric)
    step = max(1, math.ceil(len(days) / 6))
    for i, day in enumerate(days):
        if i % step == 0:
            x, y = axes.x(i), svg.H - svg.PAD_B + 14
            out.append(svg.text(x, y, day[5:], "tick", cls="x", extra=' text-anchor="middle"'))
    legend = []
    for k, version in enumerate(shown):
        series = f"s{k}"
        name = escape(str(version["version"]))
        held = version["holdout"].get(metric)
        if svg._ok(held) and axes.ys.holds(float(held)):
            level = axes.y(float(held))
            out.append(
                f'<line x1="{svg.PAD_L}" y1="{level:.1f}" x2="{svg.W - svg.PAD_R}" '
                f'y2="{level:.1f}" '
                f'class="holdout {series}" data-version="{name}">'
                f"<title>version {name} hold-out {metric}: {float(held):.4g}</title></line>"
            )
        points = [
            (at[d["day"]], float(d["metrics"][metric]), d)
            for d in version["realized"]
            if svg._ok(d["metrics"].get(metric))
        ]
        if len(points) > 1:
            path = " ".join(f"{axes.x(i):.1f},{axes.y(v):.1f}" for i, v, _ in points)
            out.append(f'<polyline points="{path}" class="series {series}"/>')
        for i, v, d in points:
            out.append(
                f'<circle cx="{axes.x(i):.1f}" cy="{axes.y(v):.1f}" r="4" class="{series}" '
                f'data-version="{name}" data-day="{escape(d["day"])}">'
                f"<title>version {name}, {escape(d['day'])}: {metric} {v:.4g} on "
                f"{int(d['rows'])} labelled rows</title></circle>"
            )
        said = f"{float(held):.3g}" if svg._ok(held) else "—"
        legend.append(f"version {version['version']}: realized (points), hold-out {said} (dashed)")
    for k, words in enumerate(legend):
        out.append(svg.text(svg.PAD_L, svg.H + 10 + 14 * k, words, "tick", cls=f"legend s{k}"))
    return "".join(out) + "</svg>"


def _legend(entries: Sequence[tuple[str, str]], baseline: float) -> list[str]:
    """Name each side under the plot, a swatch of its colour before its words."""
    out = []
    for k, (words, cls) in enumerate(entries):
        x = svg.PAD_L + k * (svg.W - svg.PAD_L) / 2
        swatch = f'x="{x:.1f}" y="{baseline - 9:.1f}" width="10" height="10"'
        out.append(f'<rect {swatch} class="{cls}"/>')
        out.append(svg.text(x + 14, baseline, words, "tick", cls="legend-text"))
    return out


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
