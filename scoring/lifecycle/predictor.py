"""A loaded model: the one-row path of ``/predict`` and the many-row path of every protocol.

For the linear estimators on numeric features the whole pipeline (median imputation, standard
scaling, linear model) is one affine map, so it is folded into a weight vector (a ``Fold``) and
checked against ``Pipeline.predict`` on probe rows before it is used. That turns ~500 µs of
scikit-learn input validation per request into a few microseconds of arithmetic; any model the
fold does not cover, or that disagrees on a probe, takes the ordinary pipeline path.

The fold is plain numbers, so the registry stores it as JSON beside the skops file when a
version is registered (checked then, against the pipeline in hand). A version with a stored
fold is servable without scikit-learn: its pipeline is loaded only when something needs it
(``LoadedModel.pipeline``), which keeps ``serve`` start-up and ``dropscore score`` free of the
scikit-learn and skops imports (seconds, and ~130 MiB of memory).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.schema import FeatureSchema

log = logging.getLogger("dropscore.model")

Predict = Callable[[np.ndarray], np.ndarray]
FOLD_KIND = "affine"  # the only fold there is: x (NaN → median) · weights + bias


@dataclass(frozen=True)
class Fold:
    """Impute → scale → linear model as plain numbers: ``where(isnan(x), medians, x) @ w + b``."""

    medians: np.ndarray
    weights: np.ndarray
    bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Predict validated rows: the same arithmetic whether the fold was stored or just made."""
        # Any NaN makes the sum NaN, so a finite sum proves there is nothing to impute, and
        # the copy ``where`` would make (the costliest step of a bulk batch) can be skipped.
        # Only for a C-ordered x: ``where`` returns one, and the product must see the same
        # layout either way (BLAS may round differently for another).
        if not (x.flags.c_contiguous and np.isfinite(np.sum(x))):
            x = np.where(np.isnan(x), self.medians, x)
        return x @ self.weights + self.bias

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON the registry stores; Python's float repr round-trips every bit."""
        return {
            "kind": FOLD_KIND,
            "medians": [float(v) for v in self.medians],
            "weights": [float(v) for v in self.weights],
            "bias": float(self.bias),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], n_features: int) -> Fold | None:
        """Read a stored fold; None when it is not one this code knows or has the wrong size."""
        try:
            if data.get("kind") != FOLD_KIND:
                return None
            medians = np.asarray(data["medians"], dtype=np.float64)
            weights = np.asarray(data["weights"], dtype=np.float64)
            bias = float(data["bias"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        if medians.shape != (n_features,) or weights.shape != (n_features,):
            return None
        return cls(medians, weights, bias)


class _Lazy:
    """A pipeline loaded on first use, once, by whichever thread asks first."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load: Callable[[], Any] | None = load
        self._value: Any = None
        self._lock = threading.Lock()

    @classmethod
    def holding(cls, value: Any) -> _Lazy:
        """Wrap a pipeline already in memory."""
        lazy = cls(lambda: value)
        lazy._load, lazy._value = None, value
        return lazy

    def get(self) -> Any:
        """Return the pipeline, loading it now if nothing has yet."""
        if self._load is not None:
            with self._lock:
                if self._load is not None:
                    self._value = self._load()
                    self._load = None
        return self._value

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Travel (to a Dask worker) as the loaded pipeline: a lock and a loader do not."""
        return _Lazy.holding, (self.get(),)


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model version: a request keeps the instance it started with."""

    version: str
    source: _Lazy = field(repr=False)
    schema: FeatureSchema
    card: dict[str, Any]
    fast: Predict | None = None

    @classmethod
    def build(cls, version: str, pipeline: Any, card: dict[str, Any]) -> LoadedModel:
        """Build a servable model from a pipeline and its card."""
        schema = FeatureSchema.from_dict(card["schema"])
        fast = compile_linear(pipeline, schema, card.get("estimator", ""))
        return cls(version, _Lazy.holding(pipeline), schema, card, fast)

    @classmethod
    def from_fold(
        cls, version: str, fold: Fold, card: dict[str, Any], load: Callable[[], Any]
    ) -> LoadedModel:
        """Build a model that answers from its stored fold; ``load`` fetches the pipeline later."""
        return cls(version, _Lazy(load), FeatureSchema.from_dict(card["schema"]), card, fold)

    @property
    def pipeline(self) -> Any:
        """Return the scikit-learn pipeline, loading it on first use for a folded model."""
        return self.source.get()

    @property
    def classes(self) -> list[Any]:
        """Return the classifier's labels as plain JSON values; empty for regression."""
        if self.schema.task != "classification":
            return []  # without touching the pipeline, which a folded model may not have loaded
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


def compile_linear(pipeline: Any, schema: FeatureSchema, estimator: str) -> Fold | None:
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
    fold = Fold(medians, weights, bias)
    if not _agrees(fold, pipeline, medians, scaler):
        log.warning("fast path disagrees with the pipeline; using the pipeline", extra={})
        return None
    return fold


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
