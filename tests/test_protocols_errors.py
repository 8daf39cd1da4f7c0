"""Bad input on every protocol: each answers its own JSON error shape, never a 5xx.

Tables of known bad requests, the shared limits (rows, body size), metrics and auth for the
new endpoints, and Hypothesis bodies (arbitrary JSON, protocol-shaped JSON, raw bytes) posted
to /predict, /invocations, /v2/.../infer and /v1/...:predict through the Flask test client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry

from .conftest import ROOT, assert_error, make_settings, register_trained

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = [0.038, 0.05, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]
ENDPOINTS = {
    "/predict": "dropscore",
    "/invocations": "mlflow",
    "/v2/models/default/infer": "oip",
    "/v1/models/default:predict": "oip",
}


def assert_protocol_error(response, protocol: str, status: int, fragment: str = "") -> str:
    """Check the error body of one protocol; return its message."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    if protocol == "dropscore":
        message = assert_error(response, status, body["error"]["code"])["message"]
    elif protocol == "mlflow":
        assert set(body) == {"error_code", "message"}
        assert body["error_code"].isupper()
        message = body["message"]
    else:
        assert set(body) == {"error"} and isinstance(body["error"], str)
        message = body["error"]
    assert message and "Traceback" not in message
    assert fragment in message, message
    return message


def build_app(tmp_path, **server: Any):
    import pandas as pd

    settings = make_settings(tmp_path, server=server)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, pd.read_csv(ROOT / "data/sample/diabetes.csv"))
    return create_app(settings, registry=registry)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_app(tmp_path_factory.mktemp("errors"), max_rows_per_request=50)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def _infer(rows: list[list[Any]]) -> dict:
    return {"inputs": [{"name": "x", "shape": [len(rows), 10], "datatype": "FP64", "data": rows}]}


# The same bad rows in each protocol's own request shape.
SHAPES = {
    "/predict": lambda rows: {"instances": rows},
    "/invocations": lambda rows: {"dataframe_split": {"columns": FEATURES, "data": rows}},
    "/v2/models/default/infer": _infer,
    "/v1/models/default:predict": lambda rows: {"instances": rows},
}


@pytest.mark.parametrize("path", list(ENDPOINTS))
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"", 400, "empty"),
        (b"{nope", 400, "not valid JSON"),
        (b'{"instances": [[NaN]]}', 400, "NaN is not a JSON value"),
        (b"[" * 50_000, 400, "nested too deeply"),
        (b'{"a": ' + b"1" * 400 + b"}", 400, "longer than 300 digits"),
        (b'"\xc3\x28"', 400, "not UTF-8"),
    ],
)
def test_unreadable_bodies(client, path, body, status, fragment):
    response = client.post(path, data=body, content_type="application/json")
    assert_protocol_error(response, ENDPOINTS[path], status, fragment)


@pytest.mark.parametrize("path", list(ENDPOINTS))
@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([ROW, [*ROW[:2], True, *ROW[3:]]], "[1]"),  # true is not 1
        ([ROW, ["x", *ROW[1:]]], "[1]"),
        ([ROW] * 51, "max_rows_per_request allows 50"),
        ([[1e308] * 10, ROW], "not a finite number"),  # the linear map overflows
    ],
)
def test_bad_rows_are_422_in_each_protocol(client, path, rows, fragment):
    response = client.post(path, json=SHAPES[path](rows))
    assert_protocol_error(response, ENDPOINTS[path], 422, fragment)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_single_row_predict_refuses_a_non_finite_answer(client):
    """Ten 1e308 used to answer 200 {"prediction": NaN}: not JSON, and not a prediction."""
    response = client.post("/predict", json={"X_test": [1e308] * 10})
    assert_error(response, 422, "invalid_input", "not a finite number")
    response = client.post("/predict", json={"features": dict(zip(FEATURES, ROW, strict=True))})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "protocol", "fragment"),
    [
        ("get", "/invocations", {}, 405, "mlflow", ""),
        ("post", "/invocations", {"data": "a", "content_type": "text/plain"}, 415, "mlflow", "csv"),
        ("post", "/invocations", {"json": {"instances": [ROW], "inputs": [ROW]}}, 400, "mlflow",
         "exactly one"),
        ("post", "/invocations", {"data": "age\n1\n", "content_type": "text/csv"}, 422, "mlflow",
         "missing"),
        ("get", "/v2/models/other", {}, 404, "oip", "no model by that name"),
        ("get", "/v2/models/default/versions/2", {}, 404, "oip",
         "has no version 2; its versions are 1"),
        ("post", "/v2/models/default/versions/0/infer", {"json": _infer([ROW])}, 404, "oip",
         "has no version 0; its versions are 1"),
        ("post", "/v2/models/default/versions/x1/infer", {"json": _infer([ROW])}, 404, "oip",
         "has no version by that name; its versions are 1"),
        ("get", "/v2/nowhere", {}, 404, "oip", ""),
        ("post", "/v2/models/default/infer", {"json": {"inputs": "x"}}, 400, "oip", "'inputs'"),
        ("post", "/v2/models/default/infer",
         {"json": {**_infer([ROW]), "outputs": [{"name": "nope"}]}}, 422, "oip", "nope"),
        ("post", "/v2/models/default/infer",
         {"json": _infer([ROW]), "headers": {"Content-Encoding": "gzip"}}, 415, "oip", ""),
        ("post", "/v2/models/default/infer",
         {"json": _infer([ROW]), "headers": {"Inference-Header-Content-Length": "99999"}}, 400,
         "oip", "Inference-Header-Content-Length"),
        ("post", "/v1/models/default:predict", {"json": {"rows": [ROW]}}, 422, "oip",
         "'instances'"),
        ("get", "/v1/models/other", {}, 404, "oip", "no model by that name"),
        ("post", "/predict", {"json": {"instances": {"age": [1]}}}, 422, "dropscore", "missing"),
    ],
)  # fmt: skip
def test_error_table(client, method, path, kwargs, status, protocol, fragment):
    response = getattr(client, method)(path, **kwargs)
    assert_protocol_error(response, protocol, status, fragment)


def test_no_model_yet_is_503_in_each_protocol(tmp_path):
    client = create_app(make_settings(tmp_path)).test_client()
    for path, protocol in ENDPOINTS.items():
        assert_protocol_error(client.post(path, json=SHAPES[path]([ROW])), protocol, 503)
    assert client.get("/ping").status_code == 503
    assert client.get("/v2/health/live").status_code == 200
    assert_protocol_error(client.get("/v2/health/ready"), "oip", 503)
    assert_protocol_error(client.get("/v2/models/default/ready"), "oip", 503)


def test_request_size_cap_applies_in_each_protocol(tmp_path):
    client = build_app(tmp_path, max_request_mb=0.001).test_client()  # 1,048 bytes
    for path, protocol in ENDPOINTS.items():
        response = client.post(path, json=SHAPES[path]([ROW] * 20))
        assert_protocol_error(response, protocol, 413)


def test_metrics_count_the_new_endpoints(app, client):
    client.post("/invocations", json={"instances": [ROW, ROW]})
    client.post("/v2/models/default/infer", json=_infer([ROW, ROW, ROW]))
    client.post("/v1/models/default:predict", json={"instances": [ROW]})
    text = client.get("/metrics").get_data(as_text=True)
    for endpoint in ("mlflow.invocations", "oip.infer", "kserve.predict"):
        assert f'endpoint="{endpoint}",method="POST",model="default",status="200"' in text
    for path in ("invocations", "infer", "kserve"):
        assert f'dropscore_rows_scored_total{{model="default",path="{path}"}}' in text


def test_answers_are_strict_json(app):
    """An undefined metric (NaN in a model card) is null, never the NaN literal."""
    with app.app_context():
        text = app.json.dumps({"r2": float("nan"), "m": [float("inf"), 1.5], "n": "NaN"})
    assert json.loads(text) == {"r2": None, "m": [None, 1.5], "n": "NaN"}
    from scoring.api.jsonio import json_response

    with pytest.raises(ValueError, match="not JSON compliant"):
        json_response({"prediction": float("nan")})


def test_many_rows_answer_in_predict(client):
    records = [dict(zip(FEATURES, ROW, strict=True))] * 3
    body = client.post("/predict", json={"instances": records}).get_json()
    assert set(body) == {"predictions", "model_version"} and len(body["predictions"]) == 3
    positional = client.post("/predict", json={"X_test": [ROW] * 3}).get_json()
    assert positional["predictions"] == body["predictions"]
    one = client.post("/predict", json={"X_test": [ROW]}).get_json()
    assert one["prediction"] == pytest.approx(body["predictions"][0], rel=1e-12)


# --- Hypothesis: nothing a client sends is a 5xx --------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**299, -(10**299), 1e308, -1e308])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSONISH = st.recursive(
    SCALARS | st.floats(),  # NaN and inf become the NaN/Infinity literals JSON does not allow
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
NAMES = st.sampled_from([*FEATURES, "BMI ", "zz", ""])
VALUES = SCALARS | st.lists(SCALARS, max_size=2)
RECORD = st.dictionaries(NAMES, VALUES, max_size=12) | st.fixed_dictionaries(
    {name: VALUES for name in FEATURES}
)
ROWLIKE = st.lists(VALUES, min_size=0, max_size=11) | st.just(ROW)
ROWS = st.lists(RECORD, max_size=4) | st.lists(ROWLIKE, max_size=4)
TENSOR = st.fixed_dictionaries(
    {
        "name": NAMES | st.just("x"),
        "shape": st.lists(st.integers(-1, 12), max_size=3),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "FP8"]),
        "data": st.lists(VALUES, max_size=12) | st.lists(ROWLIKE, max_size=3),
    },
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size"]), SCALARS)},
)
SHAPED = {
    "/predict": st.fixed_dictionaries({"features": RECORD})
    | st.fixed_dictionaries({"X_test": ROWLIKE | st.lists(ROWLIKE, max_size=4)})
    | st.fixed_dictionaries({"instances": ROWS | RECORD}),
    "/invocations": st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {"data": st.lists(ROWLIKE, max_size=4)},
                optional={"columns": st.lists(NAMES, max_size=11) | st.just(FEATURES)},
            )
        }
    )
    | st.fixed_dictionaries({"dataframe_records": ROWS})
    | st.fixed_dictionaries({"instances": ROWS})
    | st.fixed_dictionaries({"inputs": ROWS | st.dictionaries(NAMES, st.lists(VALUES))}),
    "/v2/models/default/infer": st.fixed_dictionaries(
        {"inputs": st.lists(TENSOR, max_size=3)},
        optional={"outputs": st.lists(st.fixed_dictionaries({"name": NAMES}), max_size=2)},
    ),
    "/v1/models/default:predict": st.fixed_dictionaries({"instances": ROWS}),
}
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_not_5xx(response, protocol: str) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    body = json.loads(response.get_data(), parse_constant=lambda c: pytest.fail(f"{c} in body"))
    if response.status_code >= 400:
        assert_protocol_error(response, protocol, response.status_code)
    else:
        assert "predictions" in body or "prediction" in body or "outputs" in body


@pytest.mark.parametrize("path", list(ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_fuzz_protocol_shaped_bodies(client, path, data):
    body = data.draw(SHAPED[path])
    text = json.dumps(body, allow_nan=True).encode()
    assert_not_5xx(client.post(path, data=text, content_type="application/json"), ENDPOINTS[path])


@pytest.mark.parametrize("path", list(ENDPOINTS))
@FUZZ
@given(body=JSONISH)
def test_fuzz_arbitrary_json(client, path, body):
    text = json.dumps(body, allow_nan=True).encode()
    assert_not_5xx(client.post(path, data=text, content_type="application/json"), ENDPOINTS[path])


@pytest.mark.parametrize("path", list(ENDPOINTS))
@FUZZ
@given(
    body=st.binary(max_size=64),
    header=st.none()
    | st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=4),
)
def test_fuzz_raw_bytes(client, path, body, header):
    headers = {} if header is None else {"Inference-Header-Content-Length": header}
    response = client.post(path, data=body, content_type="application/json", headers=headers)
    assert_not_5xx(response, ENDPOINTS[path])


@FUZZ
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_csv(client, body):
    response = client.post("/invocations", data=body, content_type="text/csv")
    assert_not_5xx(response, "mlflow")


def test_an_undefined_metric_is_null_in_the_model_listing(tmp_path, diabetes):
    from scoring.lifecycle.training import train

    settings = make_settings(tmp_path)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    result = train(diabetes, settings.model)
    card = {
        "estimator": "linear_regression",
        "metrics": {**result.metrics, "r2": float("nan")},
        "schema": result.schema.to_dict(),
    }
    registry.promote(registry.register(result.pipeline, card))
    client = create_app(settings, registry=registry).test_client()
    for path in ("/models", "/models/current"):
        response = client.get(path)
        assert response.status_code == 200
        assert b"NaN" not in response.get_data()
    assert client.get("/models/current").get_json()["metrics"]["r2"] is None


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"force": NaN}', b"\xff"])
def test_train_reads_its_body_with_the_guarded_parser(client, body):
    """POST /train's optional body: deep nesting used to be a RecursionError and a 500."""
    response = client.post("/train", data=body, content_type="application/json")
    assert_error(response, 400, "bad_request", "not valid JSON")


@pytest.mark.parametrize("value", ["¹", "٣", "-1"])
def test_query_numbers_take_ascii_digits_only(client, value):
    """'¹'.isdigit() is true but int('¹') fails: it was a 500 on GET /files?limit=¹."""
    assert_error(client.get("/files", query_string={"limit": value}), 422, "invalid_input", "limit")
