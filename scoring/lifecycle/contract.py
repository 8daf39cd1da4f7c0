"""The model's input contract: which columns a model takes, and who may change them.

What clients must send is decided by settings (``[model] features``) and the champion, never by
whichever drop arrived last. So a training drop that lacks the target or a feature, or holds text
in a feature the champion takes as a number, is quarantined on arrival, extra columns stay in the
lake without becoming features, and a challenger whose input schema differs from the champion's
waits for a person to promote it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa

from ingest.base.errors import IngestError, TypeConflictError
from ingest.lake.store import type_kind
from ingest.pipeline.intake import Intake
from ingest.state.ledger import FileRecord
from scoring.errors import DropscoreError
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.schema import FeatureSchema, normalize_name
from scoring.settings import Settings

log = logging.getLogger("dropscore.train")

Hook = Callable[[FileRecord], None]


class MissingTrainingColumns(IngestError):
    """A training drop lacks the target or a feature column the model is trained on."""

    code = "missing_training_columns"


def champion_schema(registry: Registry) -> FeatureSchema | None:
    """Return the champion's input schema, or None when there is no readable champion."""
    version = registry.champion_version()
    if version is None:
        return None
    try:
        return FeatureSchema.from_dict(registry.card(version)["schema"])
    except (DropscoreError, KeyError, TypeError) as exc:
        log.warning("champion schema unreadable", extra={"version": version, "error": str(exc)})
        return None


def model_features(settings: Settings, champion: FeatureSchema | None) -> list[str] | None:
    """The features a new model takes: configured, else the champion's; None for a first model."""
    if settings.model.features:
        return [normalize_name(f) for f in settings.model.features]
    if champion is not None and champion.target == normalize_name(settings.model.target):
        return champion.names
    return None


def schema_change(new: FeatureSchema, champion: FeatureSchema) -> str | None:
    """Say how a challenger's inputs differ from the champion's, or None when clients can't tell.

    Names, their order (positional ``X_test``) and kinds are the contract; categories are not,
    since an unknown category is ignored by the one-hot encoder.
    """
    if (new.target, new.task) != (champion.target, champion.task):
        return (
            f"it predicts {new.target!r} ({new.task}), the champion {champion.target!r}"
            f" ({champion.task})"
        )
    added = [n for n in new.names if n not in champion.index]
    removed = [n for n in champion.names if n not in new.index]
    if added or removed:
        parts = [f"adds {', '.join(added)}"] * bool(added)
        parts += [f"drops {', '.join(removed)}"] * bool(removed)
        return "its features " + " and ".join(parts)
    if new.names != champion.names:
        return "its features are in another order: " + ", ".join(new.names)
    kinds = [
        f"{f.name} is {f.kind}, was {champion.features[champion.index[f.name]].kind}"
        for f in new.features
        if f.kind != champion.features[champion.index[f.name]].kind
    ]
    return "; ".join(kinds) if kinds else None


def missing_columns(columns: list[str], target: str, features: list[str] | None) -> list[str]:
    """The target and features a training drop lacks, target first."""
    return [c for c in (target, *(features or ())) if c not in columns]


def train_drop_check(settings: Settings, intake: Intake, registry: Registry) -> Hook:
    """Build the intake hook that quarantines a training drop lacking the target or a feature."""
    target = normalize_name(settings.model.target)

    def hook(record: FileRecord) -> None:
        if record.kind != "train" or record.state != "normalized" or not record.lake_path:
            return
        path = intake.ledger.resolve(record.lake_path)
        if path is None:
            return
        schema = intake.config.lake_store(record.kind).schema(path.name)
        columns = schema.names
        champion = champion_schema(registry)
        features = model_features(settings, champion)
        missing = missing_columns(columns, target, features)
        if missing:
            intake.reject_normalized(record, _refusal(missing, target, features, columns))
            return
        clash = kind_clash(schema, champion)
        if clash is not None:
            intake.reject_normalized(record, clash)

    return hook


def kind_clash(schema: pa.Schema, champion: FeatureSchema | None) -> TypeConflictError | None:
    """Refuse text in a column the champion takes as a number, whatever the lake holds.

    A feature's kind is the champion's, not the latest file's: were the lake's files of that
    column removed, a text drop would otherwise make the next model treat it as a category.
    """
    if champion is None:
        return None
    for feature in champion.features:
        if feature.kind != "numeric" or feature.name not in schema.names:
            continue
        if type_kind(schema.field(feature.name).type) == "string":
            return TypeConflictError(
                f"column '{feature.name}' holds text in this file but the model takes it as a "
                "number; fix the values that are not numbers (or leave them empty), or rename "
                "the column if it means something else",
                column=feature.name,
                expected="numbers",
            )
    return None


def _refusal(
    missing: list[str], target: str, features: list[str] | None, columns: list[str]
) -> MissingTrainingColumns:
    """Word the quarantine reason so a person can fix the file."""
    parts = []
    if target in missing:
        parts.append(f"the target column {target!r}")
    lacking = [c for c in missing if c != target]
    if lacking:
        parts.append(f"the model's feature columns {', '.join(lacking)}")
    own = ", ".join(c for c in columns if not c.startswith("_"))
    return MissingTrainingColumns(
        f"this training file lacks {' and '.join(parts)}; its columns are {own}",
        expected=", ".join([target, *(features or [])]),
    )


def chain(*hooks: Hook | None) -> Hook:
    """Run several on_normalized hooks in turn (each ignores the kinds it does not handle)."""
    present = [h for h in hooks if h is not None]

    def hook(record: FileRecord) -> None:
        for each in present:
            each(record)

    return hook
