"""One retrain from start to decision: read the lake, fit, judge against the champion, promote.

The CLI's ``train``, the first start of ``serve`` and (later) the scheduler all call
``train_and_decide``, so the promotion gate is the same whichever way a retrain begins.
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from scoring.lifecycle.dataset import TrainingData, load_training_data
from scoring.lifecycle.promotion import Decision, decide
from scoring.lifecycle.registry import Registry, now
from scoring.lifecycle.schema import FeatureSchema, TrainingDataError, normalize_name
from scoring.lifecycle.training import TrainResult, evaluate, holdout_sample, train
from scoring.settings import Settings

log = logging.getLogger("dropscore.train")

LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "skops", "dropscore")


class TrainingRefused(Exception):
    """A retrain that cannot start (no data, too few rows); the champion keeps serving."""


@dataclass
class Outcome:
    version: int
    metrics: dict[str, float | None]
    champion_version: int | None
    champion_metrics: dict[str, float | None] | None
    decision: Decision
    card: dict[str, Any] = field(repr=False)


def train_and_decide(
    settings: Settings,
    registry: Registry,
    *,
    trigger: str,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Train on the whole training lake, register the version, and promote it by the rule."""
    say = progress or (lambda _m: None)
    say("reading the training lake")
    data = load_training_data(settings.layout.lake("train"))
    if len(data.frame) < settings.training.min_rows:
        raise TrainingRefused(
            f"{len(data.frame)} training rows in the lake; [training] min_rows is"
            f" {settings.training.min_rows}"
        )
    try:
        result = train(data.frame, settings.model, progress=say)
    except TrainingDataError as exc:  # the data's fault; a bad parameter is a failed run
        raise TrainingRefused(str(exc)) from None
    champion = registry.champion_version()
    champion_metrics = _champion_metrics(registry, champion, result) if champion else None
    decision = decide(
        settings.training.promote,
        settings.training.tolerance,
        result.schema.task,
        result.metrics,
        champion_metrics,
    )
    card = _card(settings, result, data, trigger, champion, champion_metrics, decision)
    sample = holdout_sample(result.pipeline, result.schema, result.holdout)
    version = registry.register(result.pipeline, card, holdout=sample)
    if decision.promote:
        registry.promote(version, decision.reason)
    else:
        status = "challenger" if settings.training.promote == "never" else "rejected"
        registry.set_status(version, status, decision.reason)
    log.info(
        "trained",
        extra={
            "version": version,
            "trigger": trigger,
            "rows": len(data.frame),
            "promoted": decision.promote,
            "reason": decision.reason,
        },
    )
    return Outcome(
        version, _clean(result.metrics), champion, champion_metrics, decision, card
    )


def _champion_metrics(
    registry: Registry, version: int, result: TrainResult
) -> dict[str, float | None] | None:
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
