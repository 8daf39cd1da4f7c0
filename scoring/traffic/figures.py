"""One version's figures for one day, summed incrementally so a batch adds to a stored row.

Agreement is kept as sums, never as the rows: classification counts the equal answers;
regression keeps the sums behind the mean absolute difference and Pearson's correlation
(n, Σx, Σy, Σx², Σy², Σxy), so adding a batch is adding numbers, whatever the traffic. Latency
is a histogram (counts per bucket, ``LATENCY_BOUNDS``) so a p99 survives the same addition:
the canary rule compares the versions' p99s.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

SERVED = "served"  # every request a version answered (champion or canary)
SHADOW = "shadow"  # the challenger's predictions beside the champion's
KINDS = (SERVED, SHADOW)
# Upper bounds of the latency buckets, in seconds: 0.25 ms to about 46 s, each √2 times the
# last (a p99 read from them is within ±20%, finer by interpolation), then everything slower.
LATENCY_BOUNDS = (*(0.00025 * 2 ** (k / 2) for k in range(36)), math.inf)


@dataclass
class DayFigures:
    """Sums for one (version, day, kind); every field adds, so two of them merge by addition."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    dropped: int = 0  # shadow: requests not shadowed because the queue was full
    seconds: float = 0.0  # time in the model, summed over requests
    max_seconds: float = 0.0
    compared: int = 0  # shadow: rows compared with the champion
    labelled: int = 0  # shadow, classification: rows compared as labels
    agreed: int = 0  # shadow, classification: rows answered the same
    abs_diff: float = 0.0  # shadow, regression: Σ|challenger − champion|
    sx: float = 0.0  # champion's Σ
    sy: float = 0.0  # challenger's Σ
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    # requests per latency bucket (``LATENCY_BOUNDS``); kept as one JSON column
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS))

    def served(self, rows: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests += 1
        self.rows += rows
        self.seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)
        self.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def batch(self, requests: int, rows: int, seconds: float) -> None:
        """Count requests answered in one call; each is charged its share of the call's time."""
        self.requests += requests
        self.rows += rows
        self.seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds / max(1, requests))
        self.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds / max(1, requests))] += requests

    def compare(self, champion: list[Any], challenger: list[Any], classes: bool) -> None:
        """Add a batch's pairs of answers: equal labels, or the regression sums (vectorized)."""
        self.compared += len(champion)
        if classes:
            self.labelled += len(champion)
            self.agreed += sum(1 for a, b in zip(champion, challenger, strict=True) if a == b)
            return
        x = np.asarray(champion, dtype=np.float64)
        y = np.asarray(challenger, dtype=np.float64)
        self.abs_diff += float(np.abs(y - x).sum())
        self.sx, self.sy = self.sx + float(x.sum()), self.sy + float(y.sum())
        self.sxx += float(x @ x)
        self.syy += float(y @ y)
        self.sxy += float(x @ y)

    def merge(self, other: DayFigures) -> None:
        """Add another batch's sums to these (the maximum stays a maximum)."""
        for f in fields(self):
            if f.name == "max_seconds":
                self.max_seconds = max(self.max_seconds, other.max_seconds)
            elif f.name == "latency":
                self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_row(self) -> dict[str, Any]:
        """Return the sums as the stored row's columns."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["latency"] = json.dumps(self.latency)
        return row

    @classmethod
    def from_row(cls, row: Any) -> DayFigures:
        """Read the sums back from a stored row (a row from before the histogram has none)."""
        found = {f.name: row[f.name] for f in fields(cls) if f.name != "latency"}
        return cls(**found, latency=_histogram(row["latency"]))

    def p99_seconds(self) -> float | None:
        """Estimate the p99 latency from the histogram; None before any request."""
        cumulative, total = [], 0
        for bound, count in zip(LATENCY_BOUNDS, self.latency, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return quantile(cumulative, 0.99)

    def summary(self, kind: str) -> dict[str, Any]:
        """Return what a person reads: counts, mean latency, and (shadow) the agreement."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "rows": self.rows,
            "errors": self.errors,
            "mean_latency_ms": _ms(self.seconds / self.requests) if self.requests else None,
            "max_latency_ms": _ms(self.max_seconds),
            "p99_latency_ms": None if (p99 := self.p99_seconds()) is None else _ms(p99),
        }
        if kind != SHADOW:
            return out
        out["dropped"] = self.dropped
        out["compared_rows"] = self.compared
        if self.labelled:
            out["agreement"] = round(self.agreed / self.labelled, 6)
        else:
            regressed = self.compared
            out["mean_abs_diff"] = self.abs_diff / regressed if regressed else None
            out["correlation"] = self.correlation()
        return out

    def correlation(self) -> float | None:
        """Pearson's r between champion and challenger; None when either is constant."""
        n = self.compared
        vx = n * self.sxx - self.sx * self.sx
        vy = n * self.syy - self.sy * self.sy
        if n < 2 or vx <= 0 or vy <= 0:
            return None
        r = (n * self.sxy - self.sx * self.sy) / math.sqrt(vx * vy)
        return round(max(-1.0, min(1.0, r)), 6)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Interpolate a quantile inside cumulative histogram buckets, as Prometheus does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # past the last finite bucket: its bound is the best we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _histogram(stored: str | None) -> list[int]:
    """Read a stored histogram; a row written before it existed (NULL) has empty buckets."""
    counts = json.loads(stored) if stored else []
    if len(counts) != len(LATENCY_BOUNDS):
        return [0] * len(LATENCY_BOUNDS)
    return [int(c) for c in counts]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
