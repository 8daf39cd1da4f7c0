"""The estimators a user can name in ``[model] estimator``, and their task.

The table is plain data: names map to ``"module:Class"`` paths, so checking a name (every
settings load, every CLI command) imports nothing. The class is imported only to build a model
or to check its parameters against its signature, which needs scikit-learn itself.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EstimatorSpec:
    """Where an estimator class lives and what task it serves."""

    path: str  # "module:Class"
    task: str  # "regression" or "classification"
    linear: bool = False  # a linear model: eligible for the compiled one-row path


ESTIMATORS: dict[str, EstimatorSpec] = {
    "linear_regression": EstimatorSpec("sklearn.linear_model:LinearRegression", "regression", True),
    "ridge": EstimatorSpec("sklearn.linear_model:Ridge", "regression", True),
    "lasso": EstimatorSpec("sklearn.linear_model:Lasso", "regression", True),
    "elastic_net": EstimatorSpec("sklearn.linear_model:ElasticNet", "regression", True),
    "random_forest": EstimatorSpec("sklearn.ensemble:RandomForestRegressor", "regression"),
    "gradient_boosting": EstimatorSpec("sklearn.ensemble:GradientBoostingRegressor", "regression"),
    "hist_gradient_boosting": EstimatorSpec(
        "sklearn.ensemble:HistGradientBoostingRegressor", "regression"
    ),
    "logistic_regression": EstimatorSpec(
        "sklearn.linear_model:LogisticRegression", "classification"
    ),
    "random_forest_classifier": EstimatorSpec(
        "sklearn.ensemble:RandomForestClassifier", "classification"
    ),
    "hist_gradient_boosting_classifier": EstimatorSpec(
        "sklearn.ensemble:HistGradientBoostingClassifier", "classification"
    ),
}


# The metric each task is judged by, and whether bigger is better (promotion, dashboard). Here,
# beside the task names, so reading it imports no scikit-learn.
PRIMARY = {"regression": ("r2", True), "classification": ("f1", True)}


def estimator_class(name: str) -> type:
    """Import the estimator class only when a model is really built."""
    module, _, cls = ESTIMATORS[name].path.partition(":")
    return getattr(importlib.import_module(module), cls)


def check_estimator_name(name: str) -> None:
    """Raise ValueError naming a wrong estimator and the allowed ones; imports nothing."""
    if name not in ESTIMATORS:
        raise ValueError(f"estimator = {name!r}: expected one of {', '.join(ESTIMATORS)}")


def check_estimator_params(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming parameters the estimator does not take, before any training.

    Empty params need no check, so the common case does not import scikit-learn.
    """
    check_estimator_name(name)
    if not params:
        return
    allowed = set(inspect.signature(estimator_class(name)).parameters) - {"self"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"params: {', '.join(unknown)} not accepted by {name}; expected some of"
            f" {', '.join(sorted(allowed))}"
        )


def make_estimator(name: str, params: dict[str, Any], random_state: int) -> Any:
    """Build the estimator, seeding it when it takes a seed so training is reproducible."""
    cls = estimator_class(name)
    kwargs = dict(params)
    if "random_state" in inspect.signature(cls).parameters:
        kwargs.setdefault("random_state", random_state)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params for {name}: {exc}") from None
