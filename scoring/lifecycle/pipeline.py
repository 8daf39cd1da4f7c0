"""Build the preprocessing + estimator pipeline the design fixes.

Columns are selected by position, not name: the pipeline is fed arrays laid out by the
feature schema, which keeps the one-row path free of DataFrames and their cost.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring.lifecycle.estimators import make_estimator
from scoring.lifecycle.schema import FeatureSchema


def build_pipeline(
    schema: FeatureSchema, estimator: str, params: dict[str, Any], random_state: int
) -> Pipeline:
    """Return an unfitted pipeline: impute + scale numbers, impute + one-hot categories."""
    numeric = [i for i, f in enumerate(schema.features) if f.kind == "numeric"]
    categorical = [i for i, f in enumerate(schema.features) if f.kind == "categorical"]
    parts = []
    if numeric:
        parts.append(
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            )
        )
    if categorical:
        categories = [list(schema.features[i].categories) for i in categorical]
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "onehot",
                            OneHotEncoder(
                                categories=categories,
                                handle_unknown="ignore",
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    prep = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("prep", prep), ("model", make_estimator(estimator, params, random_state))])
