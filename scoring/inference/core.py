"""Predict a validated matrix and check the answers: the one place every protocol predicts.

Many rows are one vectorized call (the folded linear map, or the pipeline once), never a loop
of single-row predicts. A prediction that is not a finite number (inputs far outside what the
model saw overflow a linear model) is a 422 naming the rows, because strict JSON cannot carry it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from scoring.errors import ValidationFailed
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.versions import VersionCache

NON_FINITE = "the prediction is not a finite number (inputs far outside the training data?)"


@dataclass(frozen=True)
class Predictions:
    """What a model answered for many rows, in plain Python values ready for JSON."""

    version: str
    values: list[Any]
    classes: list[Any] | None = None  # classifiers: the order of each probability row
    probabilities: np.ndarray | None = None  # shape (rows, classes)

    def probability_maps(self) -> list[dict[str, float]]:
        """One ``{class: p}`` per row, as ``/predict`` answers for classifiers."""
        if self.probabilities is None or self.classes is None:
            return []
        names = [str(c) for c in self.classes]
        return [dict(zip(names, row, strict=True)) for row in self.probabilities.tolist()]


def model_for(versions: VersionCache, version: int | str | None = None) -> LoadedModel:
    """Find the version a request names of a model (found by name by the caller): the champion
    when it names none, else that version, loaded on demand; 404 names the versions there are."""
    if version is None:
        return versions.champion.current()
    return versions.get(version)


def predict_one(model: LoadedModel, row: np.ndarray) -> dict[str, Any]:
    """Predict one validated row on the single-row fast path; ``/predict``'s answer shape."""
    out = model.predict_row(row)
    value = out["prediction"]
    probabilities = out.get("probabilities", {}).values()
    if not _finite(value) or not all(_finite(p) for p in probabilities):
        raise ValidationFailed(NON_FINITE, [{"field": "prediction", "problem": NON_FINITE}])
    return out


def predict_many(model: LoadedModel, X: np.ndarray) -> Predictions:
    """Predict every row of a validated matrix in one call, refusing non-finite answers."""
    values, proba = model.predict_matrix(X)
    bad = np.zeros(len(values), dtype=bool)
    if values.dtype.kind == "f":
        bad |= ~np.isfinite(values)
    if proba is not None:
        bad |= ~np.isfinite(proba).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValidationFailed(
            f"row {int(rows[0])}: {NON_FINITE}"
            + (f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""),
            [{"field": f"row {int(r)}", "problem": NON_FINITE} for r in rows[:20]],
        )
    classes = model.classes if proba is not None else None
    return Predictions(model.version, values.tolist(), classes, proba)


def server_version() -> str:
    """The installed dropscore version, which /version and GET /v2 report to clients."""
    try:
        return version("dropscore")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def check_rows(rows: int, limit: int) -> None:
    """Refuse an empty request or one over ``[server] max_rows_per_request``."""
    if rows == 0:
        raise ValidationFailed("the request holds no rows", [{"field": "rows", "problem": "empty"}])
    if rows > limit:
        raise ValidationFailed(
            f"the request holds {rows} rows; [server] max_rows_per_request allows {limit}",
            [{"field": "rows", "problem": f"more than {limit}"}],
        )


def _finite(value: Any) -> bool:
    if value is None:
        return False  # the pipeline path turns a non-finite float into None
    return not isinstance(value, float) or math.isfinite(value)
