"""Train and evaluate: the pure part of a retrain (frame in, fitted pipeline and metrics out)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.pipeline import build_pipeline
from scoring.lifecycle.schema import FeatureSchema, TrainingDataError, frame_to_array, infer_schema
from scoring.settings import ModelSettings

# The metric promotion compares, and whether bigger is better.


@dataclass
class Holdout:
    """The rows both the new model and the champion are judged on."""

    frame: pd.DataFrame
    y: np.ndarray


@dataclass
class TrainResult:
    """A fitted pipeline with its schema, hold-out metrics and hold-out rows."""

    pipeline: Pipeline
    schema: FeatureSchema
    metrics: dict[str, float]
    holdout: Holdout
    train_rows: int
    seconds: float


def split(frame: pd.DataFrame, model: ModelSettings, target: str, task: str) -> tuple[Any, Any]:
    """Split once, reproducibly, stratified for classes when every class can be split."""
    frame = frame[frame[target].notna()]
    stratify = None
    if task == "classification":
        counts = frame[target].value_counts()
        if len(counts) > 1 and counts.min() >= 2:
            stratify = frame[target]
    return train_test_split(
        frame, test_size=model.test_size, random_state=model.random_state, stratify=stratify
    )


def train(
    frame: pd.DataFrame, model: ModelSettings, *, progress: Callable[[str], None] | None = None
) -> TrainResult:
    """Fit the configured pipeline on a hold-out split and measure it on the held-out rows."""
    started = time.perf_counter()
    task = ESTIMATORS[model.estimator].task
    say = progress or (lambda _msg: None)
    schema = infer_schema(
        frame, target=model.target, task=task, features=model.features, id_columns=model.id_columns
    )
    labelled = int(frame[schema.target].notna().sum())
    if labelled * min(model.test_size, 1 - model.test_size) < 1 or labelled < 3:
        raise TrainingDataError(
            f"too few labelled rows to split ({labelled}) with test_size {model.test_size}"
        )
    train_frame, test_frame = split(frame, model, schema.target, task)
    pipeline = build_pipeline(schema, model.estimator, model.params, model.random_state)
    say(f"fitting {model.estimator} on {len(train_frame)} rows × {len(schema.features)} features")
    pipeline.fit(frame_to_array(train_frame, schema), _labels(train_frame, schema))
    holdout = Holdout(test_frame, _labels(test_frame, schema))
    say(f"evaluating on {len(test_frame)} held-out rows")
    scores = evaluate(pipeline, schema, holdout)
    return TrainResult(
        pipeline, schema, scores, holdout, len(train_frame), time.perf_counter() - started
    )


HOLDOUT_SAMPLE_ROWS = 2000


def holdout_sample(
    pipeline: Pipeline, schema: FeatureSchema, holdout: Holdout, limit: int = HOLDOUT_SAMPLE_ROWS
) -> dict[str, Any]:
    """Keep what the dashboard's plots need: a bounded hold-out sample and the feature weights."""
    rng = np.random.default_rng(0)
    n = len(holdout.frame)
    rows = np.sort(rng.choice(n, size=limit, replace=False)) if n > limit else np.arange(n)
    X = frame_to_array(holdout.frame.iloc[rows], schema)
    out: dict[str, Any] = {"task": schema.task, "rows": len(rows), "holdout_rows": n}
    if schema.task == "regression":
        out["actual"] = [float(v) for v in holdout.y[rows]]
        out["predicted"] = [float(v) for v in pipeline.predict(X)]
    else:
        out["actual"] = [str(v) for v in holdout.y[rows]]
        out["predicted"] = [str(v) for v in pipeline.predict(X)]
        if hasattr(pipeline, "predict_proba"):
            out["classes"] = [str(c) for c in pipeline.classes_]
            out["probabilities"] = [
                [round(float(p), 6) for p in r] for r in pipeline.predict_proba(X)
            ]
    out["weights"] = _weights(pipeline, schema)
    return out


def _weights(pipeline: Pipeline, schema: FeatureSchema) -> dict[str, Any] | None:
    """Return the estimator's coefficients or importances by transformed feature, if it has any."""
    estimator = pipeline[-1]
    try:  # the pipeline was fitted on arrays: name its columns after the schema's features
        out_names = pipeline[:-1].get_feature_names_out(list(schema.names))
        names = [str(n).split("__", 1)[-1] for n in out_names]
    except Exception:  # a transformer without names: weights without labels are useless
        return None
    if hasattr(estimator, "coef_"):
        coef = np.atleast_2d(estimator.coef_)[0]
        kind = "coefficients"
    elif hasattr(estimator, "feature_importances_"):
        coef, kind = estimator.feature_importances_, "importances"
    else:
        return None
    values = [float(v) if math.isfinite(float(v)) else None for v in np.ravel(coef)]
    return {"kind": kind, "names": names[: len(values)], "values": values}


def _labels(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    y = frame[schema.target]
    return y.to_numpy(dtype=np.float64) if schema.task == "regression" else y.to_numpy()


def evaluate(pipeline: Pipeline, schema: FeatureSchema, holdout: Holdout) -> dict[str, float]:
    """Score a fitted pipeline on the hold-out with the task's metrics."""
    missing = [n for n in schema.names if n not in holdout.frame.columns]
    if missing:
        raise ValueError(f"hold-out lacks the model's features: {', '.join(missing)}")
    X = frame_to_array(holdout.frame, schema)
    y = holdout.y
    out = task_metrics(schema.task, schema.classes, y, pipeline.predict(X))
    if schema.task != "regression":
        out["roc_auc"] = _roc_auc(pipeline, X, y)
    return out


def task_metrics(
    task: str, classes: Sequence[Any], y: np.ndarray, pred: np.ndarray
) -> dict[str, float]:
    """Measure answers against labels with the task's metrics: the hold-out's, and the realized
    metrics of labels that arrive later (``scoring.monitoring.labels``) — one definition."""
    if task == "regression":
        mse = float(skm.mean_squared_error(y, pred))
        return {
            "mae": float(skm.mean_absolute_error(y, pred)),
            "mse": mse,
            "rmse": math.sqrt(mse),
            "r2": float(skm.r2_score(y, pred)) if len(y) > 1 else float("nan"),
        }
    if len(classes) == 2:
        f1 = skm.f1_score(y, pred, average="binary", pos_label=classes[-1])
    else:
        f1 = skm.f1_score(y, pred, average="macro")
    return {"accuracy": float(skm.accuracy_score(y, pred)), "f1": float(f1)}


def _roc_auc(pipeline: Pipeline, X: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC when the hold-out has every class in it; NaN (reported as null) otherwise."""
    if not hasattr(pipeline, "predict_proba") or len(np.unique(y)) < 2:
        return float("nan")
    proba = pipeline.predict_proba(X)
    classes = list(pipeline.classes_)
    try:
        if len(classes) == 2:
            return float(skm.roc_auc_score(y, proba[:, 1], labels=classes))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    except ValueError:
        return float("nan")
