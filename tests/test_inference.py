"""The Flask-free inference core: the guarded JSON parser, many-row validation, vectorized
prediction with its non-finite check, OIP tensors (binary included), and bulk rows that
cannot get a finite prediction."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.bulk.batch import score_batch
from scoring.errors import BadRequest, NotFound, ValidationFailed
from scoring.inference.body import parse_json
from scoring.inference.core import NON_FINITE, model_for, predict_many, predict_one
from scoring.inference.payloads import csv_rows, mlflow_rows, predict_rows
from scoring.inference.rows import (
    MAX_DETAILS,
    columns_to_matrix,
    positional_to_matrix,
    records_to_matrix,
)
from scoring.inference.tensors import read_request, tensors_to_matrix
from scoring.lifecycle.champion import ChampionHolder, load_version
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.schema import Feature, FeatureSchema
from scoring.lifecycle.training import train
from scoring.lifecycle.versions import VersionCache

from .conftest import make_settings
from .test_training import toy

NUMERIC = FeatureSchema((Feature("bmi", "numeric"), Feature("bp", "numeric")), "y", "regression")
MIXED = FeatureSchema(
    (Feature("x1", "numeric"), Feature("colour", "categorical", ("red",))), "y", "regression"
)

# --- the JSON body parser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "body is empty"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b'{"a": Infinity}', "Infinity is not a JSON value"),
        (b'{"a": [-Infinity]}', "-Infinity is not a JSON value"),
        (b'{"a": ' + b"9" * 400 + b"}", "longer than 300 digits"),
        (b'{"a": -' + b"9" * 5000 + b"}", "longer than 300 digits"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        (b'{"a": 1', "at line 1 column 8"),
    ],
)
def test_hostile_json_is_a_bad_request(body, fragment):
    with pytest.raises(BadRequest, match=r"not valid JSON|empty") as info:
        parse_json(body)
    assert fragment in info.value.message
    assert "9999" not in info.value.message  # what was sent is never echoed


def test_parser_keeps_what_json_allows():
    assert parse_json(b'{"a": ' + b"9" * 300 + b"}")["a"] == int("9" * 300)
    assert parse_json(b"\xef\xbb\xbf[1.5, null]") == [1.5, None]  # a UTF-8 BOM is fine
    assert parse_json(b"[1e400]") == [math.inf]  # a number: the row checks refuse it, by name


# --- many rows ------------------------------------------------------------------------------


def test_records_fast_and_slow_paths_agree():
    records = [{"bmi": 1, "bp": 2.5}, {"BP": "3", "bmi": None}, {"bmi": 4.0, "bp": 5}]
    X = records_to_matrix(records, NUMERIC, "instances")
    np.testing.assert_array_equal(X, [[1.0, 2.5], [math.nan, 3.0], [4.0, 5.0]])


@pytest.mark.parametrize(
    ("rows", "field", "problem"),
    [
        ([{"bmi": 1, "bp": 2}, {"bmi": True, "bp": 2}], "instances[1].bmi", "got true/false"),
        ([{"bmi": 1, "bp": 2}, {"bmi": 1}], "instances[1].bp", "missing"),
        ([{"bmi": 1, "bp": 2}, [1, 2]], "instances[1]", "expected an object"),
        ([{"bmi": 1, "bp": 1e400}], "instances[0].bp", "expected a finite number"),
        (
            [{"bmi": 1, "bp": 2, "zz" * 100: 3}],
            "instances[0].(a name longer than 64 characters)",
            "unknown",
        ),
    ],
)
def test_records_name_row_and_field(rows, field, problem):
    with pytest.raises(ValidationFailed) as info:
        records_to_matrix(rows, NUMERIC, "instances")
    assert info.value.details[0]["field"] == field
    assert problem in info.value.details[0]["problem"]


def test_positional_rows_name_row_and_position():
    X = positional_to_matrix([[1, None], [2, 3]], NUMERIC, "X_test")
    np.testing.assert_array_equal(X, [[1.0, math.nan], [2.0, 3.0]])
    with pytest.raises(ValidationFailed) as info:
        positional_to_matrix([[1, 2], [1, "x"], [1]], NUMERIC, "X_test")
    assert [d["field"] for d in info.value.details] == ["X_test[1][1] (bp)", "X_test[2]"]
    with pytest.raises(ValidationFailed, match=r"X_test\[0\]\[0\] \(bmi\): expected a finite"):
        positional_to_matrix([[10**300 * 10**10, 1]], NUMERIC, "X_test")


def test_a_million_bad_rows_list_only_the_first_few():
    with pytest.raises(ValidationFailed) as info:
        positional_to_matrix([["x", 1]] * 10_000, NUMERIC, "X_test")
    assert len(info.value.details) == MAX_DETAILS
    assert info.value.message.endswith(f"(and {MAX_DETAILS - 1} more)")


def test_columns_to_matrix():
    X = columns_to_matrix({"x1": np.array([1.0, np.nan]), "Colour": ["red", None]}, 2, MIXED)
    assert math.isnan(X[1, 0]) and X[0, 1] == "red" and math.isnan(X[1, 1])
    with pytest.raises(ValidationFailed) as info:
        columns_to_matrix({"x1": np.array([1.0, np.inf]), "zz": [1, 2]}, 2, MIXED)
    assert [(d["field"], d["problem"]) for d in info.value.details] == [
        ("x1[1]", "expected a finite number"),
        ("zz", "unknown feature"),
        ("colour", "missing"),
    ]


def test_predict_payload_shapes():
    one, single = predict_rows({"X_test": [[1, 2]]}, NUMERIC, 10)
    assert single and one.shape == (1, 2)
    many, single = predict_rows({"X_test": [[1, 2], [3, 4]]}, NUMERIC, 10)
    assert not single and many.shape == (2, 2)
    with pytest.raises(ValidationFailed, match="max_rows_per_request allows 1"):
        predict_rows({"instances": [{"bmi": 1, "bp": 2}] * 2}, NUMERIC, 1)
    with pytest.raises(ValidationFailed, match="no rows"):
        predict_rows({"instances": []}, NUMERIC, 10)


def test_mlflow_shapes_agree():
    expected = [[1.0, 2.0], [3.0, 4.0]]
    bodies = [
        {"dataframe_split": {"columns": ["bmi", "bp"], "data": [[1, 2], [3, 4]]}},
        {"dataframe_split": {"columns": ["bp", "bmi"], "data": [[2, 1], [4, 3]], "index": [0, 1]}},
        {"dataframe_records": [{"bmi": 1, "bp": 2}, {"bmi": 3, "bp": 4}]},
        {"instances": [[1, 2], [3, 4]]},
        {"inputs": {"bmi": [1, 3], "bp": [2, 4]}},
    ]
    for body in bodies:
        np.testing.assert_array_equal(mlflow_rows(body, NUMERIC, 10), expected)
    np.testing.assert_array_equal(csv_rows(b"BP,bmi\n2,1\n4,3\n", NUMERIC, 10), expected)
    with pytest.raises(BadRequest, match="exactly one"):
        mlflow_rows({"instances": [[1, 2]], "inputs": [[1, 2]]}, NUMERIC, 10)
    with pytest.raises(BadRequest, match="CSV"):
        csv_rows(b"\xff\xfe\x00", NUMERIC, 10)


# --- prediction -----------------------------------------------------------------------------


@pytest.fixture(
    scope="module", params=["linear_regression", "random_forest", "logistic_regression"]
)
def toy_model(request, tmp_path_factory) -> LoadedModel:
    from scoring.lifecycle.estimators import ESTIMATORS

    name = request.param
    settings = make_settings(tmp_path_factory.mktemp(name), model={"estimator": name})
    frame = toy(ESTIMATORS[name].task)
    if name == "linear_regression":  # numeric only, so the folded fast path is used
        frame = frame.drop(columns="colour")
    result = train(frame, settings.model)
    card = {"schema": result.schema.to_dict(), "estimator": name}
    return LoadedModel.build("1", result.pipeline, card)


def test_many_rows_equal_one_row_at_a_time(toy_model):
    names = toy_model.schema.names
    records = [
        {"x1": 0.3, "x2": None, "colour": "red"},
        {"x1": -1.0, "x2": 2.0, "colour": None},
        {"x1": None, "x2": 0.1, "colour": "purple"},
    ]
    records = [{k: v for k, v in r.items() if k in names} for r in records]
    out = predict_many(toy_model, records_to_matrix(records, toy_model.schema, "instances"))
    for i, record in enumerate(records):
        one = predict_one(toy_model, records_to_matrix([record], toy_model.schema, "x"))
        if isinstance(one["prediction"], float):
            assert out.values[i] == pytest.approx(one["prediction"], rel=1e-12)
        else:
            assert out.values[i] == one["prediction"]
        if out.probabilities is not None:
            assert out.probability_maps()[i] == pytest.approx(one["probabilities"], rel=1e-12)


@pytest.fixture(scope="module")
def linear(tmp_path_factory) -> LoadedModel:
    """A folded linear model: the one kind whose answer overflows to inf on finite inputs."""
    settings = make_settings(tmp_path_factory.mktemp("linear"))
    result = train(toy("regression").drop(columns="colour"), settings.model)
    card = {"schema": result.schema.to_dict(), "estimator": "linear_regression"}
    model = LoadedModel.build("1", result.pipeline, card)
    assert model.fast is not None
    return model


def test_a_huge_number_in_a_tensor_is_named():
    body = b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 1e400]}]}'
    request = read_request(body, None)
    with pytest.raises(ValidationFailed, match=r"x\[0\]\[1\] \(bp\): expected a finite"):
        tensors_to_matrix(request.inputs, NUMERIC, 10)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_non_finite_prediction_is_a_422(linear):
    toy_model = linear
    X = np.array([[0.1, 0.2], [1e308, 1e308], [-1e308, 1e308]])
    with pytest.raises(ValidationFailed) as info:
        predict_many(toy_model, X)
    assert [d["field"] for d in info.value.details] == ["row 1", "row 2"]
    with pytest.raises(ValidationFailed, match="not a finite number"):
        predict_one(toy_model, X[1:2])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_bulk_rows_without_a_finite_prediction_fail_alone(linear):
    toy_model = linear
    batch = pa.RecordBatch.from_pydict({"x1": [0.1, 1e308, 0.3], "x2": [0.2, 1e308, None]})
    out, failed = score_batch(batch, toy_model, {})
    assert failed == 1
    assert out.column("prediction").is_null().to_pylist() == [False, True, False]
    assert out.column("error").to_pylist() == [None, NON_FINITE, None]


def test_model_for_serves_the_champion_and_names_the_versions_there_are(registry, trained):
    champion = ChampionHolder(registry)
    versions = VersionCache("default", registry, champion, 2)
    try:
        assert model_for(versions).version == str(trained)
        assert model_for(versions, str(trained)) is champion.current()
        with pytest.raises(NotFound, match=f"has no version 99; its versions are {trained}"):
            model_for(versions, "99")
    finally:
        champion.stop()
    assert load_version(registry, trained).version == str(trained)


# --- OIP tensors ----------------------------------------------------------------------------


def _binary_request(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), str(len(text))


def test_binary_tensors_fp32_and_bytes():
    x1 = np.array([1.5, np.nan], dtype="<f4").tobytes()  # NaN in a float tensor: missing
    words = [b"red", b"vert"]
    colour = b"".join(struct.pack("<I", len(w)) + w for w in words)
    body, length = _binary_request(
        {
            "inputs": [
                {"name": "x1", "shape": [2, 1], "datatype": "FP32",
                 "parameters": {"binary_data_size": len(x1)}},
                {"name": "colour", "shape": [2], "datatype": "BYTES",
                 "parameters": {"binary_data_size": len(colour)}},
            ],
            "parameters": {"binary_data_output": True},
        },
        x1,
        colour,
    )  # fmt: skip
    request = read_request(body, length)
    assert request.binary_default and request.outputs is None
    X = tensors_to_matrix(request.inputs, MIXED, 10)
    assert X[0, 0] == 1.5 and math.isnan(X[1, 0]) and X[:, 1].tolist() == ["red", "vert"]


@pytest.mark.parametrize(
    ("header", "blob", "fragment"),
    [
        ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP64",
                      "parameters": {"binary_data_size": 16}}]}, b"\0" * 8, "past the end"),
        ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP64",
                      "parameters": {"binary_data_size": 8}}]}, b"\0" * 8, "cannot hold"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES",
                      "parameters": {"binary_data_size": 6}}]}, b"\xff\0\0\0ab", "ends early"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}, b"x",
         "longer than"),
        ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP64", "data": [1]}]}, b"",
         "shape must be"),
        ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1]}]}, b"",
         "holds 2 values, data has 1"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "INT128", "data": [1]}]}, b"",
         "datatype must be"),
        ({"inputs": []}, b"", "'inputs' is empty"),
    ],
)  # fmt: skip
def test_malformed_tensors_are_bad_requests(header, blob, fragment):
    """Each breaks the protocol itself, whatever the model."""
    body, length = _binary_request(header, blob)
    with pytest.raises(BadRequest, match=fragment):
        read_request(body, length)


@pytest.mark.parametrize("length", ["¹", "-1", " 2", "99", "0x10"])
def test_header_length_must_be_a_plain_length(length):
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        read_request(b'{"inputs": []}', length)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([{"name": "a", "shape": [1, 2], "datatype": "FP64", "data": [1, True]}], "be numbers"),
        ([{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["1", "2"]}], "numeric"),
        ([{"name": "bmi", "shape": [2], "datatype": "BOOL", "data": [True, False]}], "BOOL"),
        ([{"name": "bmi", "shape": [2], "datatype": "FP64", "data": [1, 2]},
          {"name": "bp", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}], "one tensor per"),
    ],
)  # fmt: skip
def test_tensors_that_do_not_fit_the_model_are_422(inputs, fragment):
    """Each of these is a well-formed tensor that this model cannot take."""
    with pytest.raises(ValidationFailed, match=fragment):
        request = read_request(json.dumps({"inputs": inputs}).encode(), None)
        tensors_to_matrix(request.inputs, NUMERIC, 10)


def _request(outputs=None, binary_default=False):
    from scoring.inference.tensors import InferRequest

    return InferRequest(id=None, inputs=[], outputs=outputs, binary_default=binary_default)


def test_outputs_in_json_and_binary():
    from scoring.inference.core import Predictions
    from scoring.inference.tensors import outputs_for

    utils = pytest.importorskip("tritonclient.utils")
    proba = np.array([[0.25, 0.75], [0.5, 0.5]])
    labelled = Predictions("3", ["yes", "nö"], ["no", "yes"], proba)
    specs, blob = outputs_for(labelled, _request(binary_default=True))
    assert [(s["name"], s["datatype"], s["shape"]) for s in specs] == [
        ("predict", "BYTES", [2]),
        ("predict_proba", "FP64", [2, 2]),
    ]
    size = specs[0]["parameters"]["binary_data_size"]
    labels = utils.deserialize_bytes_tensor(blob[:size])  # the client's own decoder
    assert [v.decode() for v in labels] == ["yes", "nö"]
    np.testing.assert_array_equal(np.frombuffer(blob[size:], "<f8").reshape(2, 2), proba)

    numbered = Predictions("3", [0, 1], [0, 1], proba)
    specs, blob = outputs_for(numbered, _request({"predict": None, "predict_proba": False}))
    assert specs[0] == {"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]}
    assert specs[1]["data"] == [0.25, 0.75, 0.5, 0.5] and blob == b""
    specs, blob = outputs_for(numbered, _request({"predict": True}))
    assert len(specs) == 1 and np.frombuffer(blob, "<i8").tolist() == [0, 1]


# --- properties -----------------------------------------------------------------------------

CELLS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parser_returns_a_value_or_a_bad_request(body):
    try:
        parse_json(body)
    except BadRequest as exc:
        assert exc.message.startswith("the request body")


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["bmi", "BP", "bp", "zz"]), CELLS, max_size=4)
        | st.lists(CELLS, max_size=3),
        max_size=6,
    )
)
def test_validation_returns_a_clean_matrix_or_names_the_problem(rows):
    for build in (records_to_matrix, positional_to_matrix):
        try:
            X = build(rows, NUMERIC, "rows")
        except ValidationFailed as exc:
            assert exc.details and len(exc.details) <= MAX_DETAILS
            assert all(set(d) == {"field", "problem"} for d in exc.details)
            assert exc.details[0]["field"].startswith("rows[")
        else:
            assert X.shape == (len(rows), 2) and X.dtype == np.float64
            assert not np.isinf(X).any()  # finite numbers or NaN (missing) only
