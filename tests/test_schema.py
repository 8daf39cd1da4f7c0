"""Row validation: every way a client can get a row wrong is a 422 naming the field."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scoring.errors import ValidationFailed
from scoring.inference.rows import positional_to_array, record_to_array
from scoring.lifecycle.schema import Feature, FeatureSchema, frame_to_array, infer_schema

NUMERIC = FeatureSchema(
    (Feature("bmi", "numeric"), Feature("bp", "numeric")), "target", "regression"
)
MIXED = FeatureSchema(
    (Feature("bmi", "numeric"), Feature("city", "categorical", ("lyon", "paris"))),
    "target",
    "regression",
)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"bmi": 0.5, "bp": 1}, [0.5, 1.0]),
        ({"BMI ": 0.5, "Bp": "2.5"}, [0.5, 2.5]),  # original names and numeric text
        ({"bmi": None, "bp": 1}, [math.nan, 1.0]),  # null is an explicit missing value
    ],
)
def test_valid_records(record, expected):
    row = record_to_array(record, NUMERIC)
    assert row.dtype == np.float64 and row.shape == (1, 2)
    np.testing.assert_array_equal(row[0], expected)


@pytest.mark.parametrize(
    ("record", "details"),
    [
        ({"bmi": 1}, [{"field": "bp", "problem": "missing (send null to impute it)"}]),
        ({"bmi": 1, "bp": 2, "zz": 3}, [{"field": "zz", "problem": "unknown feature"}]),
        (
            {"bmi": "abc", "bp": 2},
            [{"field": "bmi", "problem": "expected a number, got text"}],
        ),
        ({"bmi": [1], "bp": 2}, [{"field": "bmi", "problem": "expected a number, got a list"}]),
        (
            {"bmi": 1e400, "bp": 2},
            [{"field": "bmi", "problem": "expected a finite number"}],
        ),
        (
            {"bmi": True, "bp": 2},
            [{"field": "bmi", "problem": "expected a number, got true/false"}],
        ),
        (
            {"bmi": 1, "BMI": 1, "bp": 2},
            [{"field": "BMI", "problem": "given twice under different names"}],
        ),
    ],
)
def test_invalid_records_name_the_field(record, details):
    with pytest.raises(ValidationFailed) as info:
        record_to_array(record, NUMERIC)
    assert info.value.details == details
    assert info.value.message.startswith(details[0]["field"])


def test_every_problem_is_listed():
    with pytest.raises(ValidationFailed) as info:
        record_to_array({"zz": 1, "bmi": "x"}, NUMERIC)
    fields = [d["field"] for d in info.value.details]
    assert fields == ["zz", "bmi", "bp"]
    assert "(and 2 more)" in info.value.message


def test_features_must_be_an_object():
    with pytest.raises(ValidationFailed, match="must be an object"):
        record_to_array([1, 2], NUMERIC)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1], "'X_test' has 1 values; the model expects 2: bmi, bp"),
        ([1, 2, 3], "'X_test' has 3 values"),
        ("1,2", "'X_test' must be a list"),
        ([1, "x"], "X_test[1] (bp): expected a number, got text"),
    ],
)
def test_invalid_positional_rows(row, message):
    with pytest.raises(ValidationFailed) as info:
        positional_to_array(row, NUMERIC)
    assert message in info.value.message


def test_positional_accepts_nested_single_row():
    np.testing.assert_array_equal(positional_to_array([[1, 2]], NUMERIC)[0], [1.0, 2.0])


def test_mixed_rows_are_object_arrays_with_text_categories():
    row = record_to_array({"bmi": 1, "city": "rome"}, MIXED)
    assert row.dtype == object
    assert row[0, 1] == "rome"  # unknown categories pass: the encoder ignores them
    row = record_to_array({"bmi": None, "city": None}, MIXED)
    assert math.isnan(row[0, 0]) and math.isnan(row[0, 1])
    with pytest.raises(ValidationFailed, match="expected a category"):
        record_to_array({"bmi": 1, "city": {"a": 1}}, MIXED)


def test_infer_schema_kinds_ids_and_dates():
    frame = pd.DataFrame(
        {
            "id": [f"row{i}" for i in range(2000)],
            "when": pd.date_range("2024-01-01", periods=2000),
            "x": np.arange(2000.0),
            "flag": [True, False] * 1000,
            "city": ["a", "b"] * 1000,
            "target": np.arange(2000.0),
            "_row": np.arange(2000),
        }
    )
    schema = infer_schema(frame, target="Target", task="regression")
    assert [(f.name, f.kind) for f in schema.features] == [
        ("x", "numeric"),
        ("flag", "numeric"),
        ("city", "categorical"),
    ]
    assert schema.features[2].categories == ("a", "b")
    explicit = infer_schema(frame, target="target", task="regression", features=["X", "city"])
    assert explicit.names == ["x", "city"]
    with pytest.raises(ValueError, match="feature columns not in the training data: nope"):
        infer_schema(frame, target="target", task="regression", features=["nope"])
    with pytest.raises(ValueError, match="target column 'price' is not in the training data"):
        infer_schema(frame, target="price", task="regression")


def test_schema_round_trips_through_dict():
    assert FeatureSchema.from_dict(MIXED.to_dict()) == MIXED


def test_frame_to_array_matches_record_path():
    frame = pd.DataFrame({"bmi": [1.0, None], "city": ["paris", None]})
    arr = frame_to_array(frame, MIXED)
    assert arr[0, 1] == "paris" and math.isnan(arr[1, 0]) and math.isnan(arr[1, 1])
