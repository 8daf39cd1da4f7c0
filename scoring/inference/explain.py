"""Per-feature contributions of a linear model's answer: base value + contributions = prediction.

A linear pipeline on numeric features is one affine map, ``where(isnan(x), medians, x) · w + b``
(the registry's stored fold, ``scoring.lifecycle.predictor.Fold``). Taking the all-median row
(every value missing) as the base, ``base = medians · w + b`` and feature ``j`` contributes
``(x̃_j - median_j) · w_j``, so the sum is the prediction exactly (to rounding), and a missing
value contributes 0. A binary logistic regression is the same map in log-odds space: the
answer says so, and names the class whose log-odds it explains. Other estimators have no exact
decomposition here: a 422 says which models are covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.errors import ValidationFailed
from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.predictor import Fold, LoadedModel

LOG_ODDS = "log-odds"
PREDICTION = "prediction"


@dataclass(frozen=True)
class Explanations:
    """Each row's explained value, split into a base value and one contribution per feature."""

    version: str
    space: str  # "prediction", or "log-odds" (of ``positive``) for logistic regression
    positive: Any  # the class whose log-odds are explained; None for regression
    base: float
    values: np.ndarray  # (rows,): what is explained, in ``space``
    contributions: np.ndarray  # (rows, features)
    features: list[str]

    def to_dict(self, labels: list[Any] | None = None) -> dict[str, Any]:
        """Return the JSON answer; ``labels`` are a classifier's predicted classes per row."""
        rows = []
        for i, value in enumerate(self.values.tolist()):
            row: dict[str, Any] = {
                "prediction": value,
                "base_value": self.base,
                "contributions": dict(
                    zip(self.features, self.contributions[i].tolist(), strict=True)
                ),
            }
            if labels is not None:
                row["label"] = labels[i]
            rows.append(row)
        out: dict[str, Any] = {"model_version": self.version, "space": self.space}
        if self.space == LOG_ODDS:
            out["note"] = (
                f"values are the log-odds of class {self.positive!r}: base_value +"
                " contributions = prediction (log-odds); the probability is 1 / (1 + e^-prediction)"
            )
        out["explanations"] = rows
        return out


def explain(model: LoadedModel, X: np.ndarray) -> Explanations:
    """Split each validated row's answer into base + one contribution per feature."""
    form, space, positive = _affine(model)
    filled = np.where(np.isnan(X), form.medians, X)
    centred = filled - form.medians
    contributions = centred * form.weights
    base = float(form.medians @ form.weights + form.bias)
    with np.errstate(over="ignore", invalid="ignore"):
        values = form(np.ascontiguousarray(X, dtype=np.float64))
    if not (np.isfinite(values).all() and np.isfinite(contributions).all()):
        raise ValidationFailed(
            "an explanation is not a finite number (inputs far outside the training data?)",
            [{"field": "rows", "problem": "not finite"}],
        )
    names = model.schema.names
    return Explanations(model.version, space, positive, base, values, contributions, names)


def _affine(model: LoadedModel) -> tuple[Fold, str, Any]:
    """The model's affine map and the space it answers in; a 422 for models without one."""
    if isinstance(model.fast, Fold):
        return model.fast, PREDICTION, None
    estimator = str(model.card.get("estimator", ""))
    if estimator == "logistic_regression" and model.schema.numeric_only:
        form = _logistic(model.pipeline, len(model.schema.features))
        if form is not None and len(model.classes) == 2:
            return form, LOG_ODDS, model.classes[1]
    linear = [n for n, spec in ESTIMATORS.items() if spec.linear]
    raise ValidationFailed(
        f"version {model.version} ({estimator or 'unknown estimator'}) cannot be explained:"
        f" contributions are exact only for linear models on numeric features ({', '.join(linear)};"
        " logistic_regression with two classes, in log-odds)",
        [{"field": "model", "problem": f"{estimator or 'unknown'} is not explainable"}],
    )


def _logistic(pipeline: Any, n_features: int) -> Fold | None:
    """Fold impute → scale → binary logistic regression into its log-odds map."""
    try:
        numeric = pipeline.named_steps["prep"].named_transformers_["numeric"]
        medians = numeric.named_steps["impute"].statistics_.astype(np.float64)
        scaler = numeric.named_steps["scale"]
        model = pipeline.named_steps["model"]
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.shape != (1, n_features):
            return None
        weights = coef[0] / scaler.scale_
        bias = float(np.asarray(model.intercept_).reshape(-1)[0]) - float(weights @ scaler.mean_)
    except (AttributeError, KeyError, ValueError):
        return None
    form = Fold(medians, weights, bias)
    probe = np.vstack([medians, scaler.mean_ + scaler.scale_])
    expected = np.asarray(pipeline.decision_function(probe), dtype=np.float64)
    if not np.allclose(form(probe), expected, rtol=1e-9, atol=1e-9):
        return None  # another pipeline layout than the one trained here
    return form
