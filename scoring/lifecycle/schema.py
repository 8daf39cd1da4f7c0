"""The feature schema stored with every model, and validation of rows against it.

This is the Flask-free heart of ``/predict``: a client's record becomes a validated 2-D array
in the model's column order, or a ``ValidationFailed`` naming every field that is wrong. Arrays,
not DataFrames, because building a one-row DataFrame costs more than the prediction itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ingest.normalize import normalize_names
from scoring.errors import ValidationFailed

PROVENANCE = ("_file_id", "_row")
MAX_CATEGORIES = 1000  # a column with more distinct text values is an id, not a category


class TrainingDataError(ValueError):
    """The training data cannot make a model (no target, no features, too few rows)."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" or "categorical"
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    target: str
    task: str  # "regression" or "classification"
    classes: tuple[Any, ...] = ()
    index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {f.name: i for i, f in enumerate(self.features)})

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_only(self) -> bool:
        return all(f.kind == "numeric" for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        feats = tuple(
            Feature(f["name"], f["kind"], tuple(f.get("categories", ()))) for f in data["features"]
        )
        return cls(feats, data["target"], data["task"], tuple(data.get("classes", ())))


def normalize_name(name: str) -> str:
    """Normalize one client-supplied column name exactly as the ingest side does."""
    return normalize_names([name])[0]


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    features: Sequence[str] = (),
    id_columns: Sequence[str] = (),
) -> FeatureSchema:
    """Decide each feature's kind from the training data; explicit lists win over inference."""
    target = normalize_name(target)
    if target not in frame.columns:
        raise TrainingDataError(
            f"target column {target!r} is not in the training data; columns are"
            f" {', '.join(c for c in frame.columns if c not in PROVENANCE)}"
        )
    ids = {normalize_name(c) for c in id_columns}
    if features:
        names = [normalize_name(c) for c in features]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise TrainingDataError(
                f"feature columns not in the training data: {', '.join(missing)}"
            )
    else:
        names = [
            c
            for c in frame.columns
            if c not in ids and c != target and c not in PROVENANCE and _usable(frame[c])
        ]
    if not names:
        raise TrainingDataError(
            "no feature columns: the training data holds only the target and ids"
        )
    feats = tuple(_feature(name, frame[name]) for name in names)
    classes: tuple[Any, ...] = ()
    if task == "classification":
        classes = tuple(_plain(v) for v in sorted(frame[target].dropna().unique().tolist()))
    return FeatureSchema(feats, target, task, classes)


def _usable(column: pd.Series) -> bool:
    """Leave out dates and near-unique text (ids) when the user did not list features."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return True
    return column.nunique(dropna=True) <= MAX_CATEGORIES


def _feature(name: str, column: pd.Series) -> Feature:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return Feature(name, "numeric")
    cats = sorted({str(v) for v in column.dropna().unique().tolist()})
    return Feature(name, "categorical", tuple(cats))


def _plain(value: Any) -> Any:
    """Turn numpy scalars into JSON-ready Python values."""
    return value.item() if hasattr(value, "item") else value


def frame_to_array(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Lay a DataFrame out as the model's input array (float when all numeric, else object)."""
    if schema.numeric_only:
        return frame[schema.names].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty((len(frame), len(schema.features)), dtype=object)
    for i, feat in enumerate(schema.features):
        col = frame[feat.name]
        if feat.kind == "numeric":
            out[:, i] = col.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = col.astype(object).where(col.notna(), np.nan).to_numpy()
            out[:, i] = [v if isinstance(v, float) else str(v) for v in values]
    return out


def record_to_array(record: Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
    """Validate a ``{"feature": value}`` record; 422 names every missing, unknown or bad field."""
    if not isinstance(record, Mapping):
        raise ValidationFailed("'features' must be an object of feature names to values")
    values: list[Any] = [None] * len(schema.features)
    seen = [False] * len(schema.features)
    details: list[dict[str, str]] = []
    for key, value in record.items():
        name = schema.index.get(key)
        if name is None:
            name = schema.index.get(normalize_name(str(key)))
        if name is None:
            details.append({"field": str(key), "problem": "unknown feature"})
            continue
        if seen[name]:
            details.append({"field": str(key), "problem": "given twice under different names"})
            continue
        seen[name] = True
        values[name] = _check_value(schema.features[name], value, str(key), details)
    for feat, was_seen in zip(schema.features, seen, strict=True):
        if not was_seen:
            details.append({"field": feat.name, "problem": "missing (send null to impute it)"})
    if details:
        raise ValidationFailed(_summary(details), details)
    return _row(values, schema)


def positional_to_array(row: Any, schema: FeatureSchema) -> np.ndarray:
    """Validate a positional ``X_test`` row in the order ``GET /models/current`` lists."""
    if isinstance(row, list) and len(row) == 1 and isinstance(row[0], list):
        row = row[0]  # [[...]] as the tutorial clients send it
    if not isinstance(row, list):
        raise ValidationFailed("'X_test' must be a list of feature values")
    if len(row) != len(schema.features):
        raise ValidationFailed(
            f"'X_test' has {len(row)} values; the model expects {len(schema.features)}:"
            f" {', '.join(schema.names)}",
            [{"field": "X_test", "problem": f"expected {len(schema.features)} values"}],
        )
    details: list[dict[str, str]] = []
    values = [
        _check_value(feat, value, f"X_test[{i}] ({feat.name})", details)
        for i, (feat, value) in enumerate(zip(schema.features, row, strict=True))
    ]
    if details:
        raise ValidationFailed(_summary(details), details)
    return _row(values, schema)


def _check_value(feat: Feature, value: Any, where: str, details: list[dict[str, str]]) -> Any:
    if value is None:
        return math.nan if feat.kind == "numeric" else np.nan
    if feat.kind == "numeric":
        number = _as_number(value)
        if number is None:
            details.append({"field": where, "problem": f"expected a number, got {value!r}"})
        return number
    if isinstance(value, dict | list):
        details.append({"field": where, "problem": f"expected a category, got {value!r}"})
        return None
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _row(values: list[Any], schema: FeatureSchema) -> np.ndarray:
    dtype = np.float64 if schema.numeric_only else object
    return np.array([values], dtype=dtype)


def _summary(details: list[dict[str, str]]) -> str:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['problem']}{more}"
