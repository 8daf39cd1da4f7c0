"""A version's reference: a compact profile of its training data and hold-out predictions.

Per numeric feature: quantile bin edges (``BINS`` by default) and the count in each bin, nulls,
min, max and standard deviation; per categorical feature: the count of each category (the most
frequent ``MAX_CATEGORIES``, the rest summed as ``other``); the same for the predictions on the
hold-out; and a seeded reservoir sample (at most ``SAMPLE_ROWS`` rows) of the numeric columns
for the two-sample tests. It is stored as JSON beside the version's model file (never pickle)
and is features × bins plus the sample in size, whatever the training data's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scoring.monitoring.sample import SAMPLE_ROWS, Reservoir, row_keys
from scoring.monitoring.stats import bin_counts

PROFILE_FILE = "profile.json"  # its name in the version's folder
FORMAT = 1  # bumped when the JSON shape changes; an unknown one is recomputed, not misread
BINS = 10
MAX_CATEGORIES = 1000  # categories named per feature; the rarer ones are counted as ``other``
PREDICTION = "prediction"  # the name the predictions' column has in reports
NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class NumericProfile:
    """One numeric column of the reference: its bins, nulls, range and a sample of values."""

    edges: tuple[float, ...]  # inner cut points, ascending; len(edges) + 1 bins
    counts: tuple[int, ...]
    nulls: int
    minimum: float | None
    maximum: float | None
    std: float
    sample: tuple[float, ...] = ()  # the sampled rows' finite values
    kind: str = field(default=NUMERIC, init=False)

    @property
    def rows(self) -> int:
        """Every row of the reference, null or not."""
        return sum(self.counts) + self.nulls

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape."""
        return {
            "kind": NUMERIC,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "nulls": self.nulls,
            "min": self.minimum,
            "max": self.maximum,
            "std": self.std,
            "sample": pack(self.sample),
        }


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical column of the reference: how often each category occurs."""

    counts: Mapping[str, int]
    other: int  # rows in categories beyond the MAX_CATEGORIES most frequent
    nulls: int
    kind: str = field(default=CATEGORICAL, init=False)

    @property
    def rows(self) -> int:
        """Every row of the reference, null or not."""
        return sum(self.counts.values()) + self.other + self.nulls

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape."""
        return {
            "kind": CATEGORICAL,
            "counts": dict(self.counts),
            "other": self.other,
            "nulls": self.nulls,
        }


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    """The reference of one version: every feature's profile and the predictions'."""

    rows: int
    features: Mapping[str, ColumnProfile]
    prediction: ColumnProfile | None
    seed: int = 0
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape stored as ``profile.json``."""
        return {
            "format": FORMAT,
            "version": self.version,
            "rows": self.rows,
            "seed": self.seed,
            "features": {name: one.to_dict() for name, one in self.features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile from its JSON; a ValueError when the shape is not this release's."""
        if data.get("format") != FORMAT:
            raise ValueError(f"profile format {data.get('format')!r}, expected {FORMAT}")
        prediction = data.get("prediction")
        return cls(
            rows=int(data["rows"]),
            features={name: column_from_dict(one) for name, one in data["features"].items()},
            prediction=None if prediction is None else column_from_dict(prediction),
            seed=int(data.get("seed", 0)),
            version=str(data.get("version", "")),
        )


def column_from_dict(data: Mapping[str, Any]) -> ColumnProfile:
    """Rebuild one column's profile from its JSON."""
    if data["kind"] == NUMERIC:
        return NumericProfile(
            edges=tuple(float(e) for e in data["edges"]),
            counts=tuple(int(c) for c in data["counts"]),
            nulls=int(data["nulls"]),
            minimum=None if data["min"] is None else float(data["min"]),
            maximum=None if data["max"] is None else float(data["max"]),
            std=float(data["std"]),
            sample=unpack(data.get("sample", "")),
        )
    if data["kind"] == CATEGORICAL:
        return CategoricalProfile(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            other=int(data.get("other", 0)),
            nulls=int(data["nulls"]),
        )
    raise ValueError(f"unknown column kind {data['kind']!r} in a profile")


def numeric_profile(values: np.ndarray, sample: np.ndarray, bins: int = BINS) -> NumericProfile:
    """Profile one numeric column (NaN is a null); ``sample`` is the sampled rows' values."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    nulls = int(np.isnan(values).sum())
    if not len(finite):
        return NumericProfile((), (0,), nulls, None, None, 0.0, ())
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    kept = np.asarray(sample, dtype=np.float64)
    return NumericProfile(
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in bin_counts(edges, finite)),
        nulls=nulls,
        minimum=float(finite.min()),
        maximum=float(finite.max()),
        std=float(finite.std()),
        sample=tuple(float(v) for v in kept[np.isfinite(kept)]),
    )


def categorical_profile(values: np.ndarray) -> CategoricalProfile:
    """Profile one categorical column (None or NaN is a null; categories compared as text)."""
    present = [v for v in values if not _is_null(v)]
    nulls = len(values) - len(present)
    names, counts = np.unique(np.array([str(v) for v in present], dtype=object), return_counts=True)
    order = sorted(zip(names.tolist(), counts.tolist(), strict=True), key=lambda x: (-x[1], x[0]))
    top = dict(order[:MAX_CATEGORIES])
    other = sum(count for _, count in order[MAX_CATEGORIES:])
    return CategoricalProfile({str(k): int(v) for k, v in top.items()}, other, nulls)


def build_profile(
    features: Mapping[str, tuple[str, np.ndarray]],
    prediction: tuple[str, np.ndarray] | None,
    *,
    seed: int = 0,
    bins: int = BINS,
    sample_rows: int = SAMPLE_ROWS,
    version: str = "",
) -> Profile:
    """Profile a training frame's columns (name -> (kind, values)) and hold-out predictions.

    The sample is of rows: the same rows for every numeric column, chosen by ``seed`` alone.
    The predictions (of the hold-out, a different set of rows) get a sample of their own.
    """
    rows = len(next(iter(features.values()))[1]) if features else 0
    numeric = {name: v for name, (kind, v) in features.items() if kind == NUMERIC}
    sampled = _sample(seed, sample_rows, numeric)
    out: dict[str, ColumnProfile] = {}
    for name, (kind, values) in features.items():
        if kind == NUMERIC:
            out[name] = numeric_profile(values, sampled.columns[name], bins)
        else:
            out[name] = categorical_profile(values)
    made: ColumnProfile | None = None
    if prediction is not None:
        kind, values = prediction
        if kind == NUMERIC:
            own = _sample(seed, sample_rows, {PREDICTION: values})
            made = numeric_profile(values, own.columns[PREDICTION], bins)
        else:
            made = categorical_profile(values)
    return Profile(rows, out, made, seed, version)


def pack(values: tuple[float, ...]) -> str:
    """Write sampled floats exactly and compactly: base64 of little-endian float64 (11 chars each,
    where decimal text takes about 19), so a profile of many features stays small."""
    return base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode("ascii")


def unpack(text: str) -> tuple[float, ...]:
    """Read floats written by ``pack``."""
    return tuple(np.frombuffer(base64.b64decode(text), dtype="<f8").tolist())


def _sample(seed: int, size: int, columns: Mapping[str, np.ndarray]) -> Reservoir:
    reservoir = Reservoir(size, list(columns))
    rows = len(next(iter(columns.values()))) if columns else 0
    floats = {name: np.asarray(v, dtype=np.float64) for name, v in columns.items()}
    reservoir.offer(row_keys(seed, 0, rows), floats)
    return reservoir


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
