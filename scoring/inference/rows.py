"""Client rows checked against a model's feature schema: one row or many, named or positional.

This is the Flask-free heart of every scoring protocol: what a client sent becomes a validated
2-D array in the model's column order, or a ``ValidationFailed`` naming every field that is
wrong (with the row index when there are many). Arrays, not DataFrames, because building a
one-row DataFrame costs more than the prediction itself; many rows of plain numbers take a
fast path that lays them out in one numpy call. Errors say what kind of value was wrong, never
the value itself, so an error body does not echo a client's data back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scoring.errors import ValidationFailed
from scoring.lifecycle.schema import Feature, FeatureSchema, normalize_name
from scoring.value_kinds import kind_of, name_shown


def record_to_array(record: Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
    """Validate a ``{"feature": value}`` record; 422 names every missing, unknown or bad field."""
    if not isinstance(record, Mapping):
        raise ValidationFailed("'features' must be an object of feature names to values")
    X = _empty(1, schema)
    details: list[dict[str, str]] = []
    _fill_record(X, 0, record, schema, "", details)
    _raise(details)
    return X


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
    X = _empty(1, schema)
    details: list[dict[str, str]] = []
    _fill_positional(X, 0, row, schema, "X_test", details)
    _raise(details)
    return X


def records_to_matrix(records: Sequence[Any], schema: FeatureSchema, label: str) -> np.ndarray:
    """Validate many named rows at once; a 422 names each bad row index and field."""
    X = _empty(len(records), schema)
    details: list[dict[str, str]] = []
    names, fast = schema.names, schema.numeric_only
    for r, record in enumerate(records):
        if fast and type(record) is dict and record.keys() == schema.index.keys():
            values = [record[n] for n in names]
            if all(type(v) in _PLAIN for v in values) and _assign(X, r, values):
                continue
        if not isinstance(record, Mapping):
            details.append({"field": f"{label}[{r}]", "problem": "expected an object"})
        else:
            _fill_record(X, r, record, schema, f"{label}[{r}].", details)
        if len(details) >= MAX_DETAILS:
            break
    _check_infinite(X, schema, lambda r, i: f"{label}[{r}].{names[i]}", details)
    _raise(details)
    return X


def positional_to_matrix(rows: Sequence[Any], schema: FeatureSchema, label: str) -> np.ndarray:
    """Validate many positional rows (features in the listed order) into one matrix."""
    k = len(schema.features)
    details: list[dict[str, str]] = []
    X = _empty(len(rows), schema)
    if schema.numeric_only and all(
        type(row) is list and len(row) == k and all(type(v) in _PLAIN for v in row) for row in rows
    ):
        try:
            X = np.array(rows, dtype=np.float64).reshape(len(rows), k)
            rows = []  # all laid out: skip the row-by-row checks
        except (OverflowError, ValueError):
            pass
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != k:
            details.append({"field": f"{label}[{r}]", "problem": f"expected a list of {k} values"})
        else:
            _fill_positional(X, r, row, schema, f"{label}[{r}]", details)
        if len(details) >= MAX_DETAILS:
            break
    _check_infinite(X, schema, lambda r, i: f"{label}[{r}][{i}] ({schema.names[i]})", details)
    _raise(details)
    return X


def columns_to_matrix(
    columns: Mapping[str, Any], rows: int, schema: FeatureSchema, label: str = ""
) -> np.ndarray:
    """Validate one column of values per feature (tensors, CSV, column dicts) into a matrix."""
    X = _empty(rows, schema)
    details: list[dict[str, str]] = []
    placed: list[Any] = [None] * len(schema.features)
    for key, column in columns.items():
        i = _locate(schema, key)
        if i is None:
            details.append({"field": _shown(key), "problem": "unknown feature"})
        elif placed[i] is not None:
            details.append(
                {"field": _shown(key, schema, i), "problem": "given twice under different names"}
            )
        elif len(column) != rows:
            placed[i] = column
            details.append({"field": _shown(key, schema, i), "problem": f"expected {rows} values"})
        else:
            placed[i] = column
            where = f"{label}{_shown(key, schema, i)}"
            _fill_column(X, i, column, schema.features[i], where, details)
    for feat, column in zip(schema.features, placed, strict=True):
        if column is None:
            details.append({"field": feat.name, "problem": "missing"})
    _raise(details)
    return X


MAX_DETAILS = 20  # a 422 for a million bad rows lists the first few, not a million
_PLAIN = (int, float, type(None))  # JSON values a numeric cell takes as they are


def _empty(rows: int, schema: FeatureSchema) -> np.ndarray:
    return np.empty((rows, len(schema.features)), np.float64 if schema.numeric_only else object)


def _assign(X: np.ndarray, r: int, values: list[Any]) -> bool:
    try:
        X[r] = values
    except (OverflowError, ValueError):
        return False
    return True


def _locate(schema: FeatureSchema, key: Any) -> int | None:
    i = schema.index.get(key)
    return schema.index.get(normalize_name(str(key))) if i is None else i


def _shown(key: Any, schema: FeatureSchema | None = None, i: int | None = None) -> str:
    """A client's field name as an error shows it: a plain name as sent, anything else described.

    A name that found feature ``i`` though it is not plain (``" BMI "``) is shown as the
    feature's own name, which says where the problem is without repeating the client's text.
    """
    shown = name_shown(key)
    if shown != key and schema is not None and i is not None:
        return schema.names[i]
    return shown


def _fill_record(
    X: np.ndarray,
    r: int,
    record: Mapping[str, Any],
    schema: FeatureSchema,
    prefix: str,
    details: list[dict[str, str]],
) -> None:
    values: list[Any] = [None] * len(schema.features)
    seen = [False] * len(schema.features)
    before = len(details)
    for key, value in record.items():
        i = _locate(schema, key)
        if i is None:
            details.append({"field": prefix + _shown(key), "problem": "unknown feature"})
        elif seen[i]:
            details.append(
                {
                    "field": prefix + _shown(key, schema, i),
                    "problem": "given twice under different names",
                }
            )
        else:
            seen[i] = True
            where = prefix + _shown(key, schema, i)
            values[i] = _check_value(schema.features[i], value, where, details)
    for feat, was_seen in zip(schema.features, seen, strict=True):
        if not was_seen:
            details.append(
                {"field": prefix + feat.name, "problem": "missing (send null to impute it)"}
            )
    if len(details) == before:
        X[r] = values


def _fill_positional(
    X: np.ndarray,
    r: int,
    row: list[Any],
    schema: FeatureSchema,
    where: str,
    details: list[dict[str, str]],
) -> None:
    before = len(details)
    values = [
        _check_value(feat, value, f"{where}[{i}] ({feat.name})", details)
        for i, (feat, value) in enumerate(zip(schema.features, row, strict=True))
    ]
    if len(details) == before:
        X[r] = values


def _fill_column(
    X: np.ndarray, i: int, column: Any, feat: Feature, where: str, details: list[dict[str, str]]
) -> None:
    if feat.kind == "numeric" and isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
        values = column.astype(np.float64)  # a typed tensor or CSV column: NaN is missing
        bad = np.flatnonzero(np.isinf(values))
        details.extend(
            {"field": f"{where}[{r}]", "problem": "expected a finite number"}
            for r in bad[:MAX_DETAILS]
        )
        X[:, i] = values
        return
    if isinstance(column, np.ndarray):
        column = column.tolist()
    for r, value in enumerate(column):
        X[r, i] = _check_value(feat, value, f"{where}[{r}]", details)
        if len(details) >= MAX_DETAILS:
            return


def _check_infinite(
    X: np.ndarray, schema: FeatureSchema, where: Any, details: list[dict[str, str]]
) -> None:
    """Numbers too large for a float (1e400) became inf on the fast path: name them too."""
    if not schema.numeric_only or details:
        return
    for r, i in np.argwhere(np.isinf(X))[:MAX_DETAILS]:
        details.append({"field": where(int(r), int(i)), "problem": "expected a finite number"})


def _check_value(feat: Feature, value: Any, where: str, details: list[dict[str, str]]) -> Any:
    if value is None:
        return math.nan if feat.kind == "numeric" else np.nan
    if feat.kind == "numeric":
        number = _as_number(value)
        if number is None:
            finite = isinstance(value, int | float) and not isinstance(value, bool)
            problem = (
                "expected a finite number" if finite else f"expected a number, got {kind_of(value)}"
            )
            details.append({"field": where, "problem": problem})
        return number
    if isinstance(value, dict | list | bool):
        details.append({"field": where, "problem": f"expected a category, got {kind_of(value)}"})
        return None
    return value if type(value) is str else str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None  # JSON true/false is not 1/0: a client sending it has the wrong field
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _raise(details: list[dict[str, str]]) -> None:
    if details:
        raise ValidationFailed(_summary(details), details[:MAX_DETAILS])


def _summary(details: list[dict[str, str]]) -> str:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['problem']}{more}"
