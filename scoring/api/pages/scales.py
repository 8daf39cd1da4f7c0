"""Axis scales for the dashboard's plots: round tick values, bounded by what a quantity can be.

A plot's axis says something about the data: it should span what the data span, end on round
numbers ("nice numbers": 0, 0.2, 0.4 …) and never show values the quantity cannot take (an R²
above 1, an accuracy below 0). When a few values would squeeze the rest into a corner, the
scale is logarithmic (positive and skewed) or clipped to the 1st–99th percentile, and says so.
Pure functions over lists of floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

STEPS = (1.0, 2.0, 5.0, 10.0)  # a tick step is one of these times a power of ten
TICKS = 5  # about how many ticks an axis shows
LOG_SPREAD = 100.0  # max / min from which a positive, skewed variable is drawn on a log scale
SKEWED = 2.0  # sample skewness beyond which one tail squeezes the bulk
CLIP_SPREAD = 2.0  # full range / 1st–99th percentile range from which the scale is clipped
CLIP = (0.01, 0.99)  # the quantiles a clipped scale shows
MIN_POINTS = 20  # fewer points than this: every one is shown, on a plain scale


@dataclass(frozen=True)
class Scale:
    """One axis: its domain (lo, hi) in data units, its tick values, and whether it is log10."""

    lo: float
    hi: float
    ticks: tuple[float, ...]
    log: bool = False
    clipped: bool = False

    def frac(self, v: float) -> float:
        """Place a value along the axis: 0 at lo, 1 at hi."""
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        return (v - self.lo) / (self.hi - self.lo)

    def holds(self, v: float) -> bool:
        """Tell whether a value falls inside the domain (a clipped scale leaves some out)."""
        return self.lo <= v <= self.hi

    def label(self, v: float) -> str:
        """Write a tick value with as many decimals as its step needs, and no more."""
        if v == 0:
            return "0"
        step = abs(v) if self.log or len(self.ticks) < 2 else self.ticks[1] - self.ticks[0]
        size = abs(v) if self.log else max(abs(t) for t in self.ticks)
        if size >= 1e5 or size < 1e-3 or (self.log and abs(v) < 1e-3):  # 2e5, 1.5e-4: short
            digits = max(0, math.floor(math.log10(abs(v))) - math.floor(math.log10(step)))
            mantissa, exponent = f"{v:.{digits}e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return f"{v:.{decimals}f}"


def nice_step(span: float, count: int = TICKS) -> float:
    """Pick the round step (1, 2 or 5 times a power of ten) giving about ``count`` ticks."""
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    return min((m * power for m in STEPS), key=lambda step: abs(math.log(step / raw)))


def linear(
    lo: float,
    hi: float,
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    count: int = TICKS,
    clipped: bool = False,
) -> Scale:
    """Span lo..hi with round ticks, widened to the next tick but never past floor or ceiling."""
    if floor is not None:
        lo, hi = max(lo, floor), max(hi, floor)
    if ceiling is not None:
        lo, hi = min(lo, ceiling), min(hi, ceiling)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):  # one value: a little room around it
        room = abs(lo) * 0.1 or 1.0
        lo, hi = lo - room, hi + room
        if floor is not None and lo < floor:
            lo, hi = floor, max(hi, floor + room)
        if ceiling is not None and hi > ceiling:
            lo, hi = min(lo, ceiling - room), ceiling
    step = nice_step(hi - lo, count)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    if floor is not None:
        start = max(start, floor)
    if ceiling is not None:
        end = min(end, ceiling)
    n = math.floor((end - start) / step + 1e-9)
    ticks = tuple(_tidy(start + i * step) for i in range(n + 1))
    return Scale(_tidy(start), _tidy(end), ticks, clipped=clipped)


def logarithmic(lo: float, hi: float) -> Scale:
    """Span lo..hi (both > 0) by whole decades, ticked at 1, 2 and 5 when decades are few."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    last = max(last, first + 1)
    marks = (1.0,) if last - first > 3 else (1.0, 2.0, 5.0)
    ticks = tuple(
        _tidy(m * 10.0**e)
        for e in range(first, last + 1)
        for m in marks
        if m * 10.0**e <= 10.0**last
    )
    return Scale(10.0**first, 10.0**last, ticks, log=True)


def fit(
    values: Sequence[float],
    *,
    shape: Sequence[float] | None = None,
    floor: float | None = None,
    ceiling: float | None = None,
    log: bool = True,
) -> Scale:
    """Choose the scale that shows these values best: linear, log (unless not ``log``), clipped.

    ``shape`` are the values whose distribution decides (the target, for predicted vs actual;
    by default ``values``): positive, skewed and spread over two decades or more, the scale is
    logarithmic, unless more than 1% of ``values`` are ≤ 0 and would fall outside it; skewed
    otherwise, or with tails much wider than the 1st–99th percentile, it is clipped there.
    Either way the plot says so (``describe``).
    """
    if not values:
        return linear(0.0, 1.0, floor=floor, ceiling=ceiling)
    shape = shape if shape else values
    lo, hi = min(values), max(values)
    if len(shape) >= MIN_POINTS and hi > lo:
        skewed = skewness(shape) > SKEWED
        positive = [v for v in values if v > 0]
        few_left_out = len(values) - len(positive) <= CLIP[0] * len(values)  # as clipping would
        spread = min(shape) > 0 and max(shape) / min(shape) >= LOG_SPREAD
        if log and skewed and spread and few_left_out:
            return logarithmic(min(positive), max(positive))
        q_lo, q_hi = quantile(values, CLIP[0]), quantile(values, CLIP[1])
        if q_hi > q_lo and (skewed or (hi - lo) > CLIP_SPREAD * (q_hi - q_lo)):
            return linear(q_lo, q_hi, floor=floor, ceiling=ceiling, clipped=True)
    pad = (hi - lo) * 0.02
    return linear(lo - pad, hi + pad, floor=floor, ceiling=ceiling)


def describe(*scales: Scale, outside: int = 0) -> str | None:
    """Say on the plot how its scales depart from plain ones, and how many points they leave out."""
    notes = []
    if any(s.log for s in scales):
        notes.append("log scale")
    if any(s.clipped for s in scales):
        notes.append("clipped to the 1st–99th percentile")
    if not notes:
        return None
    if outside:
        notes[-1] += f", {outside} point{'s' if outside != 1 else ''} outside"
    return "; ".join(notes)


def quantile(values: Sequence[float], q: float) -> float:
    """Interpolate the q-th quantile (as numpy's default, linear) of unsorted values."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    below = math.floor(at)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (at - below)


def skewness(values: Sequence[float]) -> float:
    """Return the sample skewness (third standardized moment); 0 for constant values."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    if var <= 0:
        return 0.0
    return sum((v - mean) ** 3 for v in values) / n / var**1.5


def _tidy(v: float) -> float:
    """Drop float noise from a computed tick (0.30000000000000004 → 0.3)."""
    return 0.0 if v == 0 else float(f"{v:.12g}")
