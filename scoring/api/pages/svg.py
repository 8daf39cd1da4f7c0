"""Plots as inline SVG strings, drawn on the server: no plotting library, nothing from a CDN.

Every function is pure (numbers in, markup out) and escapes every piece of text it draws, so a
feature or class name can never inject markup into a page.

Every plot is ``W`` units wide and the page draws each at its card's width, so one unit is the
same size in every plot; text sizes come from one type scale (``TYPE``), so a tick label is the
same size beside a confusion matrix as under a scatter. Axes come from ``scales``: round ticks,
bounded by what the quantity can be, log or clipped where the data are skewed (said on the plot).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from types import MappingProxyType
from typing import Any, TypeGuard

from scoring.api.pages.scales import Scale, describe, fit, linear

W, H = 420, 300
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 40, 44  # the top holds the title, then a scale's note

# The type scale, in viewBox units (a plot W units wide): the only font sizes a plot uses.
TYPE: Mapping[str, int] = MappingProxyType({"title": 14, "label": 12, "tick": 11, "note": 10})


def text(x: float, y: float, content: str, role: str, *, cls: str = "", extra: str = "") -> str:
    """Draw escaped text in one of the type scale's sizes (``role``: title, label, tick, note)."""
    classes = f"{role} {cls}".strip()
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{TYPE[role]}" class="{classes}"{extra}>'
        f"{escape(content)}</text>"
    )


def _open(title: str, height: int = H) -> list[str]:
    """Start an SVG with an accessible title and the plot's heading."""
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" '
        f'role="img" aria-label="{t}" class="plot"><title>{t}</title>',
        text(W / 2, 17, title, "title", extra=' text-anchor="middle"'),
    ]


class _Axes:
    """Map data coordinates to the plot area and draw the frame, ticks and axis labels."""

    def __init__(self, xs: Scale, ys: Scale) -> None:
        self.xs, self.ys = xs, ys

    def x(self, v: float) -> float:
        return PAD_L + self.xs.frac(v) * (W - PAD_L - PAD_R)

    def y(self, v: float) -> float:
        return H - PAD_B - self.ys.frac(v) * (H - PAD_T - PAD_B)

    def holds(self, x: float, y: float) -> bool:
        return self.xs.holds(x) and self.ys.holds(y)

    def frame(self) -> str:
        return (
            f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
            f'height="{H - PAD_T - PAD_B}" class="plot-frame"/>'
        )

    def y_ticks(self) -> list[str]:
        anchor = ' text-anchor="end"'
        return [
            text(PAD_L - 4, self.y(v) + 4, self.ys.label(v), "tick", cls="y", extra=anchor)
            for v in self.ys.ticks
        ]

    def x_ticks(self) -> list[str]:
        anchor = ' text-anchor="middle"'
        return [
            text(self.x(v), H - PAD_B + 14, self.xs.label(v), "tick", cls="x", extra=anchor)
            for v in self.xs.ticks
        ]

    def labels(self, xlabel: str, ylabel: str) -> list[str]:
        mid = (PAD_T + H - PAD_B) / 2
        return [
            text(
                (PAD_L + W - PAD_R) / 2,
                H - 6,
                xlabel,
                "label",
                cls="axis-label",
                extra=' text-anchor="middle"',
            ),
            text(
                14,
                mid,
                ylabel,
                "label",
                cls="axis-label",
                extra=f' text-anchor="middle" transform="rotate(-90 14 {mid:.0f})"',
            ),
        ]

    def note(self, words: str | None) -> list[str]:
        """Say in the plot's corner how its scale departs from a plain one."""
        if not words:
            return []
        return [
            text(
                W - PAD_R,
                PAD_T - 6,
                words,
                "note",
                cls="scale-note",
                extra=' text-anchor="end"',
            )
        ]


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
    """Draw points, with a y = x line (predicted vs actual) or a flat reference line.

    With ``diagonal`` both axes share one scale, so the y = x line runs corner to corner.
    """
    pairs = [(float(a), float(b)) for a, b in zip(xs, ys, strict=False) if _ok(a) and _ok(b)]
    px, py = [p[0] for p in pairs], [p[1] for p in pairs]
    if diagonal:
        both = fit(px + py, shape=px)  # the target's shape decides: log or clipped
        axes = _Axes(both, both)
    else:
        # a reference line (residuals around 0) keeps a linear y axis, so the line is on it
        y_scale = fit(py + ([hline] if hline is not None else []), log=hline is None)
        axes = _Axes(fit(px), y_scale)
    inside = [(a, b) for a, b in pairs if axes.holds(a, b)]
    out = [*_open(title), axes.frame(), *axes.x_ticks(), *axes.y_ticks()]
    out += axes.labels(xlabel, ylabel)
    if diagonal:
        lo, hi = axes.xs.lo, axes.xs.hi
        out.append(
            f'<line x1="{axes.x(lo):.1f}" y1="{axes.y(lo):.1f}" x2="{axes.x(hi):.1f}" '
            f'y2="{axes.y(hi):.1f}" class="ref"/>'
        )
    if hline is not None and axes.ys.holds(hline):
        out.append(
            f'<line x1="{PAD_L}" y1="{axes.y(hline):.1f}" x2="{W - PAD_R}" '
            f'y2="{axes.y(hline):.1f}" class="ref"/>'
        )
    out += [f'<circle cx="{axes.x(a):.1f}" cy="{axes.y(b):.1f}" r="2.5"/>' for a, b in inside]
    out += axes.note(describe(axes.xs, axes.ys, outside=len(pairs) - len(inside)))
    return "".join(out) + "</svg>"


def line(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    ylabel: str,
    highlight: int | None = None,
    floor: float | None = None,
    ceiling: float | None = None,
) -> str:
    """Draw a metric across categories (versions), points joined, gaps where a value is missing.

    ``floor`` and ``ceiling`` are what the metric can be (R² ≤ 1, an accuracy in [0, 1]): the
    axis fits the values with round ticks and never runs past them.
    """
    n = len(labels)
    finite = [float(v) for v in values if _ok(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (hi - lo) * 0.05
    ys = linear(lo - pad, hi + pad, floor=floor, ceiling=ceiling)
    xs = Scale(-0.5, max(n - 0.5, 0.5), ())
    axes = _Axes(xs, ys)
    out = [*_open(title), axes.frame(), *axes.y_ticks(), *axes.labels("version", ylabel)]
    step = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        if i % step == 0:
            out.append(
                text(axes.x(i), H - PAD_B + 14, str(label), "tick", extra=' text-anchor="middle"')
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
                f"<title>{escape(str(labels[i]))}: {float(v):.4g}</title></circle>"
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

    out = _open(title, height)
    for i, (name, value) in enumerate(rows):
        y = PAD_T + 18 * i
        x0, x1 = sorted((x(0.0), x(value)))
        out.append(
            text(left - 4, y + 12, name[:24], "tick", extra=' text-anchor="end"')
            + f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.5):.1f}" height="13" '
            f'class="{"bar-neg" if value < 0 else "bar"}"><title>{escape(name)}: '
            f"{value:.4g}</title></rect>" + text(max(x0, x1) + 3, y + 12, f"{value:.3g}", "tick")
        )
    out.append(
        f'<line x1="{x(0):.1f}" y1="{PAD_T}" x2="{x(0):.1f}" y2="{height - 10}" class="ref"/>'
    )
    return "".join(out) + "</svg>"


def contributions(
    names: Sequence[str],
    values: Sequence[float],
    *,
    base: float,
    prediction: float,
    title: str,
    limit: int = 20,
) -> str:
    """Draw one row's explanation: a bar per feature, biggest first, and the sum written out.

    Positive contributions (pushing the answer up from the base) and negative ones are told
    apart by colour and by the sign of their label; the lines under the bars give the base,
    what the drawn bars and the rest add, and the prediction, so the chart reads as a sum.
    """
    rows = sorted(
        ((str(n), float(v)) for n, v in zip(names, values, strict=False) if _ok(v)),
        key=lambda r: -abs(r[1]),
    )
    shown, rest = rows[:limit], rows[limit:]
    step = 18
    height = PAD_T + step * max(len(shown), 1) + 58
    lo = min([0.0, *[v for _, v in shown]])
    hi = max([0.0, *[v for _, v in shown]])
    span = (hi - lo) or 1.0
    left, right = 150, W - 56

    def x(v: float) -> float:
        return left + (v - lo) / span * (right - left)

    out = _open(title, height)
    for i, (name, value) in enumerate(shown):
        y = PAD_T + step * i
        x0, x1 = sorted((x(0.0), x(value)))
        sign = "positive" if value >= 0 else "negative"
        label = f"{value:+.3g}"
        out.append(
            f'<g class="contribution {sign}" data-feature="{escape(name)}">'
            + text(left - 4, y + 12, name[:24], "tick", extra=' text-anchor="end"')
            + f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.5):.1f}" height="13" '
            f'class="{"bar-pos" if value >= 0 else "bar-neg"}"><title>{escape(name)}: '
            f"{value:+.6g}</title></rect>"
            # a rising bar's value after its end; a falling one's right of the zero line, clear
            # of the feature names on the left
            + text((x1 if value >= 0 else x(0.0)) + 3, y + 12, label, "tick", cls="value")
            + "</g>"
        )
    bottom = PAD_T + step * max(len(shown), 1)
    out.append(f'<line x1="{x(0):.1f}" y1="{PAD_T}" x2="{x(0):.1f}" y2="{bottom}" class="ref"/>')
    total = math.fsum(v for _, v in rows)
    lines = [f"base value {base:.6g}", f"+ contributions {total:+.6g}"]
    if rest:
        lines[1] += f" ({len(rest)} smaller not drawn: {math.fsum(v for _, v in rest):+.4g})"
    lines.append(f"= prediction {prediction:.6g}")
    for k, words in enumerate(lines):
        role = "label" if k == 2 else "tick"
        cls = ("base", "sum", "prediction")[k]
        out.append(text(left - 140, bottom + 16 + 14 * k, words, role, cls=cls))
    return "".join(out) + "</svg>"


def confusion(classes: Sequence[str], matrix: Sequence[Sequence[int]], *, title: str) -> str:
    """Draw a confusion-matrix grid: rows are actual classes, columns predicted, counts inside."""
    n = max(len(classes), 1)
    left, top_y = 120, 64
    cell = min(56, (W - left - 20) // n)
    height = top_y + cell * n + 12
    top = max((max(row) for row in matrix), default=0) or 1
    out = _open(title, height)
    for j, name in enumerate(classes):
        out.append(
            text(
                left + cell * j + cell / 2,
                top_y - 6,
                str(name)[:10],
                "tick",
                extra=' text-anchor="middle"',
            )
        )
    for i, row in enumerate(matrix):
        y = top_y + cell * i
        out.append(
            text(
                left - 6, y + cell / 2 + 4, str(classes[i])[:12], "tick", extra=' text-anchor="end"'
            )
        )
        for j, count in enumerate(row):
            shade = 0.08 + 0.85 * count / top
            out.append(
                f'<rect x="{left + cell * j}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'class="cell" fill-opacity="{shade:.2f}"/>'
                + text(
                    left + cell * j + cell / 2 - 1,
                    y + cell / 2 + 4,
                    str(int(count)),
                    "label",
                    cls="count",
                    extra=' text-anchor="middle"',
                )
            )
    mid = top_y + cell * n / 2
    out.append(
        text(
            left + cell * n / 2,
            top_y - 24,
            "predicted",
            "label",
            cls="axis-label",
            extra=' text-anchor="middle"',
        )
        + text(
            14,
            mid,
            "actual",
            "label",
            cls="axis-label",
            extra=f' text-anchor="middle" transform="rotate(-90 14 {mid:.0f})"',
        )
    )
    return "".join(out) + "</svg>"


def roc(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    aucs: Mapping[str, float] | None = None,
) -> str:
    """Draw ROC curves (false positive rate → true positive rate), one per class, with y = x.

    Each curve's legend gives its area under the curve: "AUC 0.87" (binary), or the class and
    its one-vs-rest AUC.
    """
    unit = linear(0.0, 1.0, floor=0.0, ceiling=1.0, count=6)  # 0, 0.2, … 1.0
    axes = _Axes(unit, unit)
    out = [*_open(title), axes.frame(), *axes.x_ticks(), *axes.y_ticks()]
    out += axes.labels("false positive rate", "true positive rate")
    out.append(
        f'<line x1="{axes.x(0)}" y1="{axes.y(0)}" x2="{axes.x(1)}" y2="{axes.y(1)}" class="ref"/>'
    )
    single = len(curves) == 1
    for k, (name, (fpr, tpr)) in enumerate(curves.items()):
        path = " ".join(f"{axes.x(a):.1f},{axes.y(b):.1f}" for a, b in zip(fpr, tpr, strict=False))
        area = (aucs or {}).get(name)
        words = f"AUC {area:.3f}" if area is not None else "AUC —"
        legend = words if single else f"{str(name)[:16]}: {words}"
        out.append(
            f'<polyline points="{path}" class="series s{k % 4}">'
            f"<title>{escape(str(name))}: {escape(words)}</title></polyline>"
        )
        out.append(
            text(
                W - PAD_R - 6,
                H - PAD_B - 8 - 15 * (len(curves) - 1 - k),
                legend,
                "label" if single else "tick",
                cls=f"legend s{k % 4}",
                extra=' text-anchor="end"',
            )
        )
    return "".join(out) + "</svg>"


# The drift page's histograms and realized-metric plot (``pages.drift`` shapes their data).
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

    Each side is drawn as shares of its own rows, so a drop of 300 rows and a training set of
    300,000 compare bin by bin; within a side every bar's height is proportional to its count.
    Each bar is a ``rect`` with ``data-side`` and ``data-count``; its title gives the label, the
    count and the share, so the numbers behind the picture can be read without guessing.
    """
    n = max(len(labels), 1)
    ref_total, cur_total = sum(reference), sum(current)
    ref_shares = [_share(c, ref_total) for c in reference]
    cur_shares = [_share(c, cur_total) for c in current]
    top = max([*ref_shares, *cur_shares, 0.0]) or 1.0
    axes = _Axes(Scale(0.0, float(n), ()), linear(0.0, top, floor=0.0))
    height = H + LABELS_ROOM
    out = [*_open(title, height), axes.frame(), *axes.y_ticks()]
    out.append(axes.labels("", "share of rows")[1])
    slot = (W - PAD_L - PAD_R) / n
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
            text(
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


def performance(
    versions: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    floor: float | None = None,
    ceiling: float | None = None,
) -> str:
    """Draw each version's realized ``metric`` per day, its hold-out value as a dashed line.

    ``versions`` is ``GET /performance``'s list (newest first); the newest ``SERIES`` are drawn,
    each in its own colour, its legend naming the version and its hold-out value; ``floor`` and
    ``ceiling`` are what the metric can be, as for ``line``.
    """
    shown = list(versions)[:SERIES]
    days = sorted({d["day"] for v in shown for d in v["realized"]})
    values = [
        float(d["metrics"][metric])
        for v in shown
        for d in v["realized"]
        if _ok(d["metrics"].get(metric))
    ]
    holdouts = [float(v["holdout"][metric]) for v in shown if _ok(v["holdout"].get(metric))]
    everything = values + holdouts
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    pad = (hi - lo) * 0.05
    axes = _Axes(
        Scale(-0.5, max(len(days) - 0.5, 0.5), ()),
        linear(lo - pad, hi + pad, floor=floor, ceiling=ceiling),
    )
    at = {day: i for i, day in enumerate(days)}
    height = H + 14 * len(shown) + 6  # the legend under the plot, a line per version
    out = [*_open(f"realized {metric} by day", height), axes.frame(), *axes.y_ticks()]
    out += axes.labels("day (UTC)", metric)
    step = max(1, math.ceil(len(days) / 6))
    for i, day in enumerate(days):
        if i % step == 0:
            x, y = axes.x(i), H - PAD_B + 14
            out.append(text(x, y, day[5:], "tick", cls="x", extra=' text-anchor="middle"'))
    legend = []
    for k, version in enumerate(shown):
        series = f"s{k}"
        name = escape(str(version["version"]))
        held = version["holdout"].get(metric)
        if _ok(held) and axes.ys.holds(float(held)):
            level = axes.y(float(held))
            out.append(
                f'<line x1="{PAD_L}" y1="{level:.1f}" x2="{W - PAD_R}" '
                f'y2="{level:.1f}" '
                f'class="holdout {series}" data-version="{name}">'
                f"<title>version {name} hold-out {metric}: {float(held):.4g}</title></line>"
            )
        points = [
            (at[d["day"]], float(d["metrics"][metric]), d)
            for d in version["realized"]
            if _ok(d["metrics"].get(metric))
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
        said = f"{float(held):.3g}" if _ok(held) else "—"
        legend.append(f"version {version['version']}: realized (points), hold-out {said} (dashed)")
    for k, words in enumerate(legend):
        out.append(text(PAD_L, H + 10 + 14 * k, words, "tick", cls=f"legend s{k}"))
    return "".join(out) + "</svg>"


def _legend(entries: Sequence[tuple[str, str]], baseline: float) -> list[str]:
    """Name each side under the plot, a swatch of its colour before its words."""
    out = []
    for k, (words, cls) in enumerate(entries):
        x = PAD_L + k * (W - PAD_L) / 2
        swatch = f'x="{x:.1f}" y="{baseline - 9:.1f}" width="10" height="10"'
        out.append(f'<rect {swatch} class="{cls}"/>')
        out.append(text(x + 14, baseline, words, "tick", cls="legend-text"))
    return out


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _ok(v: float | None) -> TypeGuard[float]:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
