"""The feature schema stored with every model: names, kinds and categories, inferred once from
the training data. Checking client rows against it lives in ``scoring.inference.rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.pipeline.normalize import normalize_names

if TYPE_CHECKING:  # at run time pandas is imported by the functions that need it (training)
    import pandas as pd

PROVENANCE = ("_file_id", "_row")
MAX_CATEGORIES = 1000  # a column with more distinct text values is an id, not a category


class TrainingDataError(ValueError):
    """The training data cannot make a model (no target, no features, too few rows)."""


@dataclass(frozen=True)
class Feature:
    """One input column the model takes, and for a categorical one its categories."""

    name: str
    kind: str  # "numeric" or "categorical"
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape kept in the model card."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class FeatureSchema:
    """The model's input contract: features in order, target, task, classes."""

    features: tuple[Feature, ...]
    target: str
    task: str  # "regression" or "classification"
    classes: tuple[Any, ...] = ()
    index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {f.name: i for i, f in enumerate(self.features)})

    @property
    def names(self) -> list[str]:
        """Return the feature names in the order the model takes them."""
        return [f.name for f in self.features]

    def lake_columns(
        self, columns: Sequence[str], originals: Mapping[str, str] | None = None
    ) -> LakeColumns:
        """Find each feature's column in a lake-named batch (see ``lake_columns``)."""
        return lake_columns(self.names, columns, originals)

    @property
    def numeric_only(self) -> bool:
        """Tell whether every feature is numeric (no encoding needed)."""
        return all(f.kind == "numeric" for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape kept in the model card."""
        return {
            "target": self.target,
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Rebuild a schema from a model card."""
        feats = tuple(
            Feature(f["name"], f["kind"], tuple(f.get("categories", ()))) for f in data["features"]
        )
        return cls(feats, data["target"], data["task"], tuple(data.get("classes", ())))


def normalize_name(name: str) -> str:
    """Normalize one client-supplied column name exactly as the ingest side does."""
    return normalize_names([name])[0]


@dataclass(frozen=True)
class LakeColumns:
    """Where each of the model's features is in a lake-named batch, and what is not there."""

    found: Mapping[str, str]  # feature name -> the lake column that feeds it
    missing: tuple[str, ...]  # features no column matches
    shared: Mapping[str, tuple[str, ...]]  # a lake column -> the features that would all read it


def lake_columns(
    features: Sequence[str], columns: Sequence[str], originals: Mapping[str, str] | None = None
) -> LakeColumns:
    """Find each feature's lake column: the user's exact header first, then the lake name.

    Ingest renames a file's headers to lake names (``normalize_names``), but a model's features
    need not be lake names (an MLflow signature, a frame trained with its raw columns such as
    ``sepal length (cm)``). ``columns`` are the batch's lake names, ``originals`` maps each to
    the header the user wrote. A feature reads the column whose header is exactly its name,
    else the column named by it, else by its normalized name. Two features reading one column
    (``A`` and ``a`` over a file with only ``a``) are reported in ``shared``: the caller
    refuses rather than score the wrong column.
    """
    originals = originals or {}
    present = set(columns)
    by_header: dict[str, str] = {}
    for column in columns:
        by_header.setdefault(originals.get(column, column), column)
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in features:
        column = by_header.get(name) or (name if name in present else normalize_name(name))
        if column in present:
            found[name] = column
        else:
            missing.append(name)
    readers: dict[str, list[str]] = {}
    for name, column in found.items():
        readers.setdefault(column, []).append(name)
    shared = {column: tuple(names) for column, names in readers.items() if len(names) > 1}
    return LakeColumns(found, tuple(missing), shared)


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    features: Sequence[str] = (),
    id_columns: Sequence[str] = (),
) -> FeatureSchema:
    """Decide each feature's kind from the training data; explicit lists win over inference."""
    target = normalize_name(target)
    if target not in frame.columns:
        raise TrainingDataError(
            f"target column {target!r} is not in the training data; columns are"
            f" {', '.join(c for c in frame.columns if c not in PROVENANCE)}"
        )
    ids = {normalize_name(c) for c in id_columns}
    if features:
        names = [normalize_name(c) for c in features]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise TrainingDataError(
                f"feature columns not in the training data: {', '.join(missing)}"
            )
    else:
        names = [
            c
            for c in frame.columns
            if c not in ids and c != target and c not in PROVENANCE and _usable(frame[c])
        ]
    if not names:
        raise TrainingDataError(
            "no feature columns: the training data holds only the target and ids"
        )
    feats = tuple(_feature(name, frame[name]) for name in names)
    classes: tuple[Any, ...] = ()
    if task == "classification":
        classes = tuple(_plain(v) for v in sorted(frame[target].dropna().unique().tolist()))
    return FeatureSchema(feats, target, task, classes)


def _usable(column: pd.Series) -> bool:
    """Leave out dates and near-unique text (ids) when the user did not list features."""
    import pandas as pd  # not at import: serving a model needs the schema, not pandas

    if pd.api.types.is_datetime64_any_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return True
    return column.nunique(dropna=True) <= MAX_CATEGORIES


def _feature(name: str, column: pd.Series) -> Feature:
    import pandas as pd

    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return Feature(name, "numeric")
    cats = sorted({str(v) for v in column.dropna().unique().tolist()})
    return Feature(name, "categorical", tuple(cats))


def _plain(value: Any) -> Any:
    """Turn numpy scalars into JSON-ready Python values."""
    return value.item() if hasattr(value, "item") else value


def frame_to_array(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Lay a DataFrame out as the model's input array (float when all numeric, else object)."""
    if schema.numeric_only:
        return frame[schema.names].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty((len(frame), len(schema.features)), dtype=object)
    for i, feat in enumerate(schema.features):
        col = frame[feat.name]
        if feat.kind == "numeric":
            out[:, i] = col.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = col.astype(object).where(col.notna(), np.nan).to_numpy()
            out[:, i] = [v if isinstance(v, float) else str(v) for v in values]
    return out
