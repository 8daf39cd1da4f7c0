"""A version's reference profile: made at training, stored with the version, or made on first need.

The profile is a file in the version's folder (``profile.json``, through the ``ArtifactStore``)
rather than a table in the state database: it is written once and never changed, belongs to the
version the way its card, hold-out sample and fold do (removed with it, moved with the artifacts
to an object store), and is read by whichever process scores with the version. A version
trained before profiles were kept gets one the first time it is needed, from the lake files its
card says it was trained on (``training_data.file_ids``), read with the same sampling settings;
``ArtifactStore.add`` keeps the first profile written when two processes race.

When no profile can be had (the card does not say what the version was trained on, those files
left the lake), ``reference`` says why instead of failing: the drift record then carries that
reason as its verdict's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring.monitoring.profile import (
    CATEGORICAL,
    NUMERIC,
    PROFILE_FILE,
    Profile,
    build_profile,
)

if TYPE_CHECKING:
    import pandas as pd

    from scoring.lifecycle.artifacts import ArtifactStore
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.schema import FeatureSchema
    from scoring.lifecycle.training import TrainResult
    from scoring.models.model import Model

log = logging.getLogger("dropscore.drift")


@dataclass(frozen=True)
class Reference:
    """A version's profile, or why it has none."""

    profile: Profile | None
    reason: str | None = None  # set when profile is None
    made_now: bool = False  # computed from the lake by this call (not read)


def training_profile(frame: pd.DataFrame, result: TrainResult, version: int) -> Profile:
    """Profile the frame a retrain read and its new model's predictions on the hold-out."""
    from scoring.lifecycle.schema import frame_to_array

    holdout = result.holdout.frame
    predicted = np.empty(0)
    if len(holdout):
        predicted = np.asarray(result.pipeline.predict(frame_to_array(holdout, result.schema)))
    return profile_of(frame, result.schema, predicted, seed=0, version=version)


def profile_of(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    predictions: np.ndarray,
    *,
    seed: int,
    version: int,
) -> Profile:
    """Profile the schema's features in ``frame`` and the given hold-out predictions."""
    import pandas as pd

    columns: dict[str, tuple[str, np.ndarray]] = {}
    for feature in schema.features:
        values = frame[feature.name]
        if feature.kind == NUMERIC:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            columns[feature.name] = (NUMERIC, numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            columns[feature.name] = (CATEGORICAL, values.astype(object).to_numpy())
    if schema.task == "regression":
        prediction = (NUMERIC, np.asarray(predictions, dtype=np.float64))
    else:
        prediction = (CATEGORICAL, np.asarray([str(v) for v in predictions], dtype=object))
    return build_profile(columns, prediction, seed=seed, version=str(version))


def store_profile(artifacts: ArtifactStore, version: int, profile: Profile) -> None:
    """Keep a version's profile beside its model file (the first one written stays)."""
    from scoring.lifecycle.artifacts import json_bytes

    artifacts.add(version, PROFILE_FILE, json_bytes(profile.to_dict()))


def profile_step(
    registry: Registry, version: int, frame: pd.DataFrame, result: TrainResult
) -> None:
    """Profile a just-registered version at training; a failure is logged, never the run's.

    Without a stored profile the version gets one from the lake on first need.
    """
    try:
        store_profile(registry.artifacts, version, training_profile(frame, result, version))
    except Exception as exc:  # drift is a view of the model: it must not fail a retrain
        log.warning("no drift profile at training", extra={"version": version, "error": str(exc)})


def reference(model: Model, version: int) -> Reference:
    """Read a version's profile, making and storing it from the lake when it has none yet."""
    artifacts = model.artifacts
    try:
        if artifacts.has(version, PROFILE_FILE):
            return Reference(Profile.from_dict(artifacts.read_json(version, PROFILE_FILE)))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable, or an older shape
        log.warning(
            "drift profile unreadable; made again", extra={"version": version, "error": str(exc)}
        )
    try:
        made = _from_lake(model, version)
    except Exception as exc:  # the lake or the model file: say why, never fail the scoring
        log.warning("no drift profile", extra={"version": version, "error": str(exc)})
        return Reference(None, f"version {version}'s profile could not be made: {exc}")
    if isinstance(made, str):
        return Reference(None, made)
    try:
        store_profile(artifacts, version, made)
    except OSError as exc:  # a read-only models folder: compare anyway, make it again next time
        log.warning("drift profile not stored", extra={"version": version, "error": str(exc)})
    log.info("drift profile made from the lake", extra={"version": version, "rows": made.rows})
    return Reference(made, made_now=True)


def _from_lake(model: Model, version: int) -> Profile | str:
    """Profile a version from the lake files it was trained on; a reason when it cannot be."""
    from scoring.lifecycle.dataset import FILE_ID, load_training_data
    from scoring.lifecycle.schema import FeatureSchema, frame_to_array
    from scoring.lifecycle.training import split

    card: dict[str, Any] = model.registry.card(version)
    data = card.get("training_data") or {}
    file_ids = data.get("file_ids")
    if not file_ids:
        return (
            f"version {version} has no profile and its card does not say which lake files it"
            " was trained on, so there is nothing to compare with"
        )
    schema = FeatureSchema.from_dict(card["schema"])
    loaded = load_training_data(
        model.lake("train"),
        target=schema.target,
        features=schema.names,
        max_rows=data.get("max_rows"),
        stratify=schema.task == "classification",
        random_state=int(card.get("random_state", 0)),
    )
    frame = loaded.frame
    if FILE_ID in frame:
        frame = frame[frame[FILE_ID].isin(file_ids)]
    if frame.empty:
        return f"the lake files version {version} was trained on are no longer in the lake"
    settings = model.settings.model
    test_size = float(card.get("test_size", settings.test_size))
    split_model = type(settings)(test_size=test_size, random_state=int(card.get("random_state", 0)))
    try:
        _, holdout = split(frame, split_model, schema.target, schema.task)
        predicted = model.registry.load_pipeline(version).predict(frame_to_array(holdout, schema))
    except ValueError:  # too few rows to split again: a profile of the features alone
        predicted = np.empty(0)
    return profile_of(frame, schema, np.asarray(predicted), seed=0, version=version)
