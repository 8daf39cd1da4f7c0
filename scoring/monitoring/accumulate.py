"""Accumulate the current data against a reference, batch by batch, in bounded memory.

A ``DriftAccumulator`` keeps per numeric feature the counts in the reference's bins, nulls,
the values outside the training range and the range seen; per categorical feature the count
of each category (at most ``MAX_CATEGORIES`` named); and a seeded reservoir of the numeric
columns for KS and Wasserstein. Memory is features × bins plus the reservoir, whatever the
rows. ``merge`` adds another accumulator's counts (a Dask task's partial, a window's), and
``report`` turns the counts into a ``DriftReport`` with the statistics of ``stats``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.monitoring import stats
from scoring.monitoring.profile import (
    CATEGORICAL,
    MAX_CATEGORIES,
    NUMERIC,
    PREDICTION,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
)
from scoring.monitoring.report import ColumnDrift, DriftReport, Thresholds, judge
from scoring.monitoring.sample import SAMPLE_ROWS, Reservoir, row_keys

SHOWN_CATEGORIES = 20  # categories a report's histogram and unseen list name


@dataclass
class _Numeric:
    """The current data's counts for one numeric column, in the reference's bins."""

    edges: np.ndarray
    low: float  # the training range: values outside it are counted
    high: float
    counts: np.ndarray
    nulls: int = 0
    outside: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        # Every scored row of every feature passes here, so as few passes over it as can be:
        # min and max first (NaN and infinity show in them), then the copy without nulls, the
        # range checks only when a value lies outside it, and one comparison per bin edge.
        n = len(values)
        if not n:
            return
        low, high = values.min(), values.max()
        if not (np.isfinite(low) and np.isfinite(high)):
            values = values[np.isfinite(values)]
            if not len(values):
                self.nulls += n
                return
            low, high = values.min(), values.max()
        self.nulls += n - len(values)
        self.counts += stats.bin_counts(self.edges, values)
        if low < self.low:
            self.outside += int(np.count_nonzero(values < self.low))
        if high > self.high:
            self.outside += int(np.count_nonzero(values > self.high))
        self.minimum = min(self.minimum, float(low))
        self.maximum = max(self.maximum, float(high))

    def merge(self, other: _Numeric) -> None:
        self.counts += other.counts
        self.nulls += other.nulls
        self.outside += other.outside
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def values(self) -> int:
        return int(self.counts.sum())


@dataclass
class _Categorical:
    """The current data's count of each category of one column (at most MAX_CATEGORIES named)."""

    counts: Counter[str] = field(default_factory=Counter)
    other: int = 0
    nulls: int = 0

    def add(self, counts: Mapping[str, int], nulls: int) -> None:
        self.nulls += nulls
        for name, count in counts.items():
            if name in self.counts or len(self.counts) < MAX_CATEGORIES:
                self.counts[name] += count
            else:
                self.other += count

    def merge(self, other: _Categorical) -> None:
        self.add(other.counts, other.nulls)
        self.other += other.other


class DriftAccumulator:
    """The current data's summary against one profile: update per batch, merge, report."""

    def __init__(self, profile: Profile, sample_rows: int = SAMPLE_ROWS) -> None:
        self.profile = profile
        self.rows = 0
        self.seen: set[str] = set()  # the profile's features some batch carried
        self.columns: dict[str, _Numeric | _Categorical] = {
            name: _state(one) for name, one in profile.features.items()
        }
        self.prediction = None if profile.prediction is None else _state(profile.prediction)
        numeric = [n for n, one in profile.features.items() if isinstance(one, NumericProfile)]
        if isinstance(profile.prediction, NumericProfile):
            numeric.append(PREDICTION)
        self.sample = Reservoir(sample_rows, numeric)

    def update(
        self, features: Mapping[str, Any], predictions: Any | None = None, start: int | None = None
    ) -> None:
        """Add one batch: feature columns by name (Arrow or numpy) and the predictions.

        ``start`` is the batch's first row in the whole data (this accumulator's row count by
        default); a worker handed a batch from the middle says where it starts, so the rows
        its sample keeps are the ones accumulating the whole data in order would keep.
        """
        n = _length(features, predictions)
        if n == 0:
            return
        offset = self.rows if start is None else start
        keys = row_keys(self.profile.seed, offset, n) if self.sample.columns else None
        wanted = None if keys is None else self.sample.wanted(keys)  # None: every row
        # as positions: few rows enter a long drop's sample, and gathering them by position
        # costs a pass over the mask once, not once per column
        chosen = None if wanted is None else np.flatnonzero(wanted)
        sampled: dict[str, np.ndarray] = {}
        for name, state in self.columns.items():
            if name not in features:
                continue
            self.seen.add(name)
            sampled.update(_add(name, state, features[name], chosen))
        if self.prediction is not None and predictions is not None:
            sampled.update(_add(PREDICTION, self.prediction, predictions, chosen))
        if keys is not None:
            keys = keys if chosen is None else keys[chosen]
            missing = {name: np.full(len(keys), np.nan) for name in self.sample.columns}
            self.sample.offer(keys, {**missing, **sampled})
        self.rows += n

    def merge(self, other: DriftAccumulator) -> None:
        """Add another accumulator's counts and sample (a partial of the same profile)."""
        for name, state in self.columns.items():
            state.merge(other.columns[name])  # type: ignore[arg-type]  # same profile, same kind
        if self.prediction is not None and other.prediction is not None:
            self.prediction.merge(other.prediction)  # type: ignore[arg-type]
        self.sample.merge(other.sample)
        self.seen |= other.seen
        self.rows += other.rows

    def report(self, thresholds: Thresholds) -> DriftReport:
        """Compare what was accumulated with the reference and give each column its verdict."""
        columns = []
        for name, reference in self.profile.features.items():
            if name not in self.seen:
                columns.append(
                    ColumnDrift(name, reference.kind, None, reason="absent from the data")
                )
                continue
            columns.append(self._column(name, reference, self.columns[name], thresholds))
        prediction = None
        if self.profile.prediction is not None and self.prediction is not None:
            prediction = self._column(
                PREDICTION, self.profile.prediction, self.prediction, thresholds
            )
        return judge(columns, prediction, self.rows, thresholds)

    def _column(
        self,
        name: str,
        reference: ColumnProfile,
        current: _Numeric | _Categorical,
        thresholds: Thresholds,
    ) -> ColumnDrift:
        if isinstance(reference, NumericProfile) and isinstance(current, _Numeric):
            sample = self.sample.values(name) if name in self.sample.columns else np.empty(0)
            return numeric_drift(name, reference, current, sample, self.rows, thresholds)
        assert isinstance(reference, CategoricalProfile) and isinstance(current, _Categorical)
        return categorical_drift(name, reference, current, self.rows, thresholds)


def numeric_drift(
    name: str,
    reference: NumericProfile,
    current: _Numeric,
    sample: np.ndarray,
    rows: int,
    thresholds: Thresholds,
) -> ColumnDrift:
    """Compare one numeric column's counts and sample with its reference."""
    before, after, change = stats.null_rates(reference.nulls, reference.rows, current.nulls, rows)
    base: dict[str, Any] = {
        "null_rate_reference": before,
        "null_rate_current": after,
        "null_rate_change": change,
    }
    if reference.minimum is None:
        return ColumnDrift(name, NUMERIC, None, reason="the reference has no values", stats=base)
    if current.values == 0:
        return ColumnDrift(name, NUMERIC, None, reason="no values in the data", stats=base)
    ref_counts = np.asarray(reference.counts)
    found: dict[str, Any] = {
        "psi": stats.psi(ref_counts, current.counts),
        "js": stats.js_distance(ref_counts, current.counts),
        **base,
        "out_of_range_share": stats.out_of_range_share(current.outside, current.values),
        "min_reference": reference.minimum,
        "max_reference": reference.maximum,
        "min_current": current.minimum,
        "max_current": current.maximum,
    }
    ref_sample = np.asarray(reference.sample)
    if len(ref_sample) and len(sample):
        statistic, pvalue, distance = stats.two_sample(ref_sample, sample)
        found.update(ks_statistic=statistic, ks_pvalue=pvalue, wasserstein=distance)
        found["wasserstein_norm"] = (
            found["wasserstein"] / reference.std if reference.std > 0 else None
        )
    histogram = {
        "edges": list(reference.edges),
        "reference": [int(c) for c in ref_counts],
        "current": [int(c) for c in current.counts],
    }
    why = _past(found, thresholds)
    return ColumnDrift(name, NUMERIC, bool(why), why, None, _clean(found), histogram)


def categorical_drift(
    name: str,
    reference: CategoricalProfile,
    current: _Categorical,
    rows: int,
    thresholds: Thresholds,
) -> ColumnDrift:
    """Compare one categorical column's category counts with its reference."""
    before, after, change = stats.null_rates(reference.nulls, reference.rows, current.nulls, rows)
    found: dict[str, Any] = {
        "null_rate_reference": before,
        "null_rate_current": after,
        "null_rate_change": change,
    }
    present = sum(current.counts.values()) + current.other
    if not reference.counts:
        return ColumnDrift(
            name, CATEGORICAL, None, reason="the reference has no values", stats=found
        )
    if present == 0:
        return ColumnDrift(name, CATEGORICAL, None, reason="no values in the data", stats=found)
    names, ref, cur = stats.aligned(reference.counts, current.counts)
    ref = np.append(ref, reference.other)  # the rarer categories of each side, as one bin
    cur = np.append(cur, current.other)
    unseen = stats.unseen_categories(reference.counts, current.counts)
    found["psi"] = stats.psi(ref, cur)
    found["js"] = stats.js_distance(ref, cur)
    found["unseen_categories"] = dict(list(unseen.items())[:SHOWN_CATEGORIES])
    found["unseen_rows"] = sum(unseen.values())
    found["unseen_share"] = sum(unseen.values()) / present
    shown = sorted(range(len(names)), key=lambda i: (-int(ref[i]) - int(cur[i]), names[i]))
    shown = shown[:SHOWN_CATEGORIES]
    histogram = {
        "categories": [names[i] for i in shown],
        "reference": [int(ref[i]) for i in shown],
        "current": [int(cur[i]) for i in shown],
    }
    why = _past(found, thresholds)
    if why and unseen:
        why.append(f"categories never seen in training: {', '.join(list(unseen)[:5])}")
    return ColumnDrift(name, CATEGORICAL, bool(why), why, None, _clean(found), histogram)


def _past(found: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """Say which statistics are past their thresholds (none: the column did not drift)."""
    why = []
    if _finite(found.get("psi")) and found["psi"] > thresholds.psi:
        why.append(f"psi {found['psi']:.3f} > {thresholds.psi}")
    if _finite(found.get("js")) and found["js"] > thresholds.js:
        why.append(f"js {found['js']:.3f} > {thresholds.js}")
    if _finite(found.get("ks_pvalue")) and found["ks_pvalue"] < thresholds.ks_pvalue:
        why.append(f"ks p-value {found['ks_pvalue']:.2g} < {thresholds.ks_pvalue}")
    return why


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _clean(found: Mapping[str, Any]) -> dict[str, Any]:
    """Make the statistics JSON: a NaN or infinity becomes None."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in found.items()
    }


def _state(reference: ColumnProfile) -> _Numeric | _Categorical:
    if isinstance(reference, NumericProfile):
        edges = np.asarray(reference.edges, dtype=np.float64)
        low = reference.minimum if reference.minimum is not None else -math.inf
        high = reference.maximum if reference.maximum is not None else math.inf
        return _Numeric(edges, low, high, np.zeros(len(edges) + 1, dtype=np.int64))
    return _Categorical()


def _add(
    name: str, state: _Numeric | _Categorical, values: Any, chosen: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Add one column's batch to its state; return the ``chosen`` rows' floats when numeric
    (the rows that may enter the sample, by position; None: all)."""
    if isinstance(state, _Numeric):
        floats = as_floats(values)
        state.add(floats)
        return {name: floats if chosen is None else floats[chosen]}
    counts, nulls = category_counts(values)
    state.add(counts, nulls)
    return {}


def as_floats(values: Any) -> np.ndarray:
    """Read a column as float64, nulls and text that is no number as NaN (counted as nulls)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        kind = values.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            values = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
            return np.array([_number(v) for v in values.to_pylist()], dtype=np.float64)
        if not pa.types.is_float64(kind):  # a float64 column needs no cast (every batch pays it)
            values = values.cast(pa.float64())
        return float64_values(values)
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64, copy=False)
    return np.array([_number(v) for v in array.tolist()], dtype=np.float64)


def float64_values(values: pa.Array) -> np.ndarray:
    """Read a float64 array's values from its buffers, nulls as NaN.

    pyarrow's ``to_numpy`` gives the same array but imports pandas on its first call (its
    pandas shim: about 0.3 CPU-s of every ``dropscore score`` run, for nothing pandas does).
    """
    validity, data = values.buffers()
    if data is None:  # an empty array may have no buffer
        return np.empty(0, dtype=np.float64)
    floats = np.frombuffer(data, dtype=np.float64, count=len(values), offset=values.offset * 8)
    if values.null_count == 0 or validity is None:
        return floats
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    present = bits[values.offset : values.offset + len(values)].astype(bool)
    return np.where(present, floats, np.nan)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def category_counts(values: Any) -> tuple[dict[str, int], int]:
    """Count a column's categories (as text) and its nulls."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        nulls = values.null_count
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        counted = pc.value_counts(text.drop_null()).to_pylist()
        return {str(one["values"]): int(one["counts"]) for one in counted}, nulls
    present = [v for v in np.asarray(values, dtype=object).tolist() if not _null(v)]
    nulls = len(values) - len(present)
    return dict(Counter(str(v) for v in present)), nulls


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _length(features: Mapping[str, Any], predictions: Any | None) -> int:
    for values in features.values():
        return len(values)
    return 0 if predictions is None else len(predictions)
