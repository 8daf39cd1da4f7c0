"""A loaded model: the one-row path of ``/predict`` and the many-row path of every protocol.

For the linear estimators on numeric features the whole pipeline (median imputation, standard
scaling, linear model) is one affine map, so it is folded into a weight vector at load time and
checked against ``Pipeline.predict`` on probe rows before it is used. That turns ~500 µs of
scikit-learn input validation per request into a few microseconds of arithmetic; any model the
fold does not cover, or that disagrees on a probe, takes the ordinary pipeline path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.schema import FeatureSchema

log = logging.getLogger("dropscore.model")

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model version: a request keeps the instance it started with."""

    version: str
    pipeline: Any
    schema: FeatureSchema
    card: dict[str, Any]
    fast: Predict | None = None

    @classmethod
    def build(cls, version: str, pipeline: Any, card: dict[str, Any]) -> LoadedModel:
        """Build a servable model from a pipeline and its card."""
        schema = FeatureSchema.from_dict(card["schema"])
        fast = compile_linear(pipeline, schema, card.get("estimator", ""))
        return cls(version, pipeline, schema, card, fast)

    @property
    def classes(self) -> list[Any]:
        """Return the classifier's labels as plain JSON values; empty for regression."""
        return [_plain(c) for c in getattr(self.pipeline, "classes_", [])]

    def predict_row(self, row: np.ndarray) -> dict[str, Any]:
        """Predict one validated row; the response shape of ``POST /predict``."""
        if self.fast is not None:
            value = float(self.fast(row)[0])
        else:
            value = _plain(self.pipeline.predict(row)[0])
        out: dict[str, Any] = {"prediction": value, "model_version": self.version}
        if self.schema.task == "classification" and hasattr(self.pipeline, "predict_proba"):
            proba = self.pipeline.predict_proba(row)[0]
            out["probabilities"] = {
                str(c): float(p) for c, p in zip(self.classes, proba, strict=True)
            }
        return out

    def predict_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict many validated rows in one vectorized call (+ probabilities for classifiers)."""
        if self.fast is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN answers are refused
                values = self.fast(X)
        else:
            values = np.asarray(self.pipeline.predict(X))
        proba = None
        if self.schema.task == "classification" and hasattr(self.pipeline, "predict_proba"):
            proba = np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)
        return values, proba


def compile_linear(pipeline: Any, schema: FeatureSchema, estimator: str) -> Predict | None:
    """Fold impute → scale → linear regression into ``x·w + b``; None when it does not apply."""
    spec = ESTIMATORS.get(estimator)
    if spec is None or not spec.linear or not schema.numeric_only:
        return None
    try:
        numeric = pipeline.named_steps["prep"].named_transformers_["numeric"]
        medians = numeric.named_steps["impute"].statistics_.astype(np.float64)
        scaler = numeric.named_steps["scale"]
        model = pipeline.named_steps["model"]
        coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        weights = coef / scaler.scale_
        bias = float(np.asarray(model.intercept_).reshape(-1)[0]) - float(weights @ scaler.mean_)
    except (AttributeError, KeyError, ValueError):
        return None
    if weights.shape[0] != len(schema.features):
        return None

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), medians, x)
        return x @ weights + bias

    if not _agrees(predict, pipeline, medians, scaler):
        log.warning("fast path disagrees with the pipeline; using the pipeline", extra={})
        return None
    return predict


def _agrees(fast: Predict, pipeline: Any, medians: np.ndarray, scaler: Any) -> bool:
    """Compare both paths on probe rows around the training distribution, NaNs included."""
    rng = np.random.default_rng(0)
    n = medians.shape[0]
    probes = scaler.mean_ + rng.normal(scale=3.0, size=(64, n)) * scaler.scale_
    probes[rng.random(size=probes.shape) < 0.1] = np.nan
    expected = pipeline.predict(probes)
    got = np.array([fast(probes[i : i + 1])[0] for i in range(len(probes))])
    scale = max(1.0, float(np.max(np.abs(expected))))
    return bool(np.all(np.abs(got - expected) <= 1e-9 * scale))


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
