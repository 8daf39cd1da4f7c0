"""One retrain from start to decision: read the lake, fit, judge against the champion.

``train_and_decide`` runs in the trainer process (``scoring.lifecycle.trainer``): it reads at
most ``[training] max_rows`` rows of the model's columns, fits, compares with the champion on
the same hold-out, and registers the new version as a challenger. The process that started the
run then applies the decision (``outcome.apply``), so the promotion gate is the same whichever way a
retrain begins and the serving process never holds the training data.
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from typing import Any

from ingest.base.logs import bound
from scoring.lifecycle.contract import champion_schema, model_features, schema_change
from scoring.lifecycle.dataset import TrainingData, load_training_data
from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.gate import data_change
from scoring.lifecycle.outcome import Outcome, too_few_rows
from scoring.lifecycle.promotion import Decision, decide
from scoring.lifecycle.registry import Registry, now
from scoring.lifecycle.schema import FeatureSchema, TrainingDataError, normalize_name
from scoring.lifecycle.training import TrainResult, evaluate, holdout_sample, train
from scoring.monitoring.reference import profile_step
from scoring.settings import Settings
from scoring.storage import lake_store

log = logging.getLogger("dropscore.train")

LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "skops", "dropscore")


class TrainingRefused(Exception):
    """A retrain that cannot start (no data, too few rows); the champion keeps serving."""


def train_and_decide(
    settings: Settings,
    registry: Registry,
    *,
    trigger: str,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Train on (a sample of) the training lake, register a challenger and decide its fate."""
    with bound(model=settings.name):
        return _train_and_decide(settings, registry, trigger, progress)


def _train_and_decide(
    settings: Settings,
    registry: Registry,
    trigger: str,
    progress: Callable[[str], None] | None,
) -> Outcome:
    say = progress or (lambda _m: None)
    champion = registry.champion_version()
    old_schema = champion_schema(registry) if champion else None
    features = model_features(settings, old_schema)
    say("reading the training lake")
    data = _read_lake(settings, features)
    if data.dropped_nonfinite:
        log.warning(
            "rows with infinite values left out of training",
            extra={"columns": data.dropped_nonfinite},
        )
        say(f"left out rows with infinite values: {_dropped_words(data)}")
    if len(data.frame) < settings.training.min_rows:
        raise TrainingRefused(_too_few(data, settings))
    model = settings.model if features is None else replace(settings.model, features=features)
    try:
        result = train(data.frame, model, progress=say)
    except TrainingDataError as exc:  # the data's fault; a bad parameter is a failed run
        raise TrainingRefused(str(exc)) from None
    change = schema_change(result.schema, old_schema) if old_schema else None
    champion_metrics = None
    if champion and not change:
        champion_metrics = _champion_metrics(registry, champion, result)
    decision = decide(
        settings.training.promote,
        settings.training.tolerance,
        result.schema.task,
        result.metrics,
        champion_metrics,
        schema_change=change,
    )
    card = _card(settings, result, data, trigger, champion, champion_metrics, decision)
    # the gate's record: how this training data differs from the champion's
    card["decision"]["data_change"] = data_change(
        registry, champion, data.frame, settings.monitoring
    )
    sample = holdout_sample(result.pipeline, result.schema, result.holdout)
    version = registry.register(result.pipeline, card, holdout=sample)
    profile_step(registry, version, data.frame, result)  # the version's drift reference
    log.info(
        "trained",
        extra={
            "version": version,
            "trigger": trigger,
            "rows": len(data.frame),
            "sampled_from": data.sampled_from,
            "promote": decision.promote,
            "reason": decision.reason,
        },
    )
    champion_clean = None if champion_metrics is None else _clean(champion_metrics)
    return Outcome(version, _clean(result.metrics), champion, champion_clean, decision, card)


def _read_lake(settings: Settings, features: list[str] | None) -> TrainingData:
    """Read the model's columns, sampled to max_rows (stratified when it is a classifier)."""
    return load_training_data(
        lake_store(settings, "train"),
        target=normalize_name(settings.model.target),
        features=features,
        max_rows=settings.training.max_rows,
        stratify=ESTIMATORS[settings.model.estimator].task == "classification",
        random_state=settings.model.random_state,
    )


def _dropped_words(data: TrainingData) -> str:
    """Say how many rows each column's infinite values left out."""
    return ", ".join(f"{n:,} in {c}" for c, n in sorted(data.dropped_nonfinite.items()))


def _too_few(data: TrainingData, settings: Settings) -> str:
    """Say why there is too little to train on, naming lake files that were left out."""
    text = too_few_rows(len(data.frame), settings)
    if data.skipped_files:
        left_out = "; ".join(f"{k} {v}" for k, v in sorted(data.skipped_files.items()))
        text += f" (left out: {left_out})"
    return text


def _champion_metrics(
    registry: Registry, version: int, result: TrainResult
) -> dict[str, float] | None:
    """Score the champion on the new model's hold-out; None when its features are gone."""
    try:
        card = registry.card(version)
        schema = FeatureSchema.from_dict(card["schema"])
        pipeline = registry.load_pipeline(version)
        if schema.target != result.schema.target or schema.task != result.schema.task:
            return None
        return evaluate(pipeline, schema, result.holdout)
    except Exception as exc:  # a champion we cannot judge must not block a retrain
        log.warning("champion not evaluated", extra={"version": version, "error": str(exc)})
        return None


def _card(
    settings: Settings,
    result: TrainResult,
    data: TrainingData,
    trigger: str,
    champion: int | None,
    champion_metrics: dict[str, float] | None,
    decision: Decision,
) -> dict[str, Any]:
    target = data.frame[result.schema.target]
    if result.schema.task == "regression":
        summary = {k: _num(v) for k, v in target.describe().items()}
    else:
        summary = {str(k): int(v) for k, v in target.value_counts().items()}
    return {
        "created_at": now(),
        "trigger": trigger,
        "estimator": settings.model.estimator,
        "params": settings.model.params,
        "test_size": settings.model.test_size,
        "random_state": settings.model.random_state,
        # as configured (normalized), so a retrain can tell whether the model settings moved
        "features": [normalize_name(f) for f in settings.model.features],
        "id_columns": [normalize_name(c) for c in settings.model.id_columns],
        "metrics": _clean(result.metrics),
        "compared_with": {"version": champion, "metrics": _clean(champion_metrics or {})}
        if champion
        else None,
        "decision": {"promote": decision.promote, "reason": decision.reason},
        "schema": result.schema.to_dict(),
        "training_data": {
            "rows": len(data.frame),
            "sampled_from": data.sampled_from,
            "max_rows": settings.training.max_rows,
            "skipped_files": data.skipped_files,
            "dropped_nonfinite": data.dropped_nonfinite,
            "train_rows": result.train_rows,
            "holdout_rows": len(result.holdout.frame),
            "file_ids": data.file_ids,
            "lake_files": data.lake_files,
            "target": summary,
        },
        "library_versions": {"python": platform.python_version(), **_versions()},
        "timings": {"train_seconds": round(result.seconds, 3)},
    }


def _versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    """Make metrics JSON-safe: a metric that could not be measured is null, not NaN."""
    return {k: _num(v) for k, v in metrics.items()}
