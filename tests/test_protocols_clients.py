"""The protocols' own clients against a real server on 127.0.0.1: MLflow's ScoringServerClient,
tritonclient's InferenceServerClient (JSON and binary tensors), and KServe v1 over HTTP.

Each answer must equal what ``/predict`` answers for the same rows, for a regression model and
a classifier (logistic regression on a label derived from the sample).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from tests.conftest import make_settings, register_trained

mlflow_client = pytest.importorskip("mlflow.pyfunc.scoring_server.client")
httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")

ROWS = 25  # rows per request: enough to cover the vectorized path, small enough to stay quick


def same(expected: list) -> object:
    """Equal labels, or floats equal to the last bits (a matrix product sums in another order)."""
    if expected and isinstance(expected[0], float):
        return pytest.approx(expected, rel=1e-12)
    return expected


@dataclass
class Server:
    host: str
    port: int
    features: list[str]
    frame: pd.DataFrame  # ROWS rows of features to score

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def predict(self, headers: dict | None = None) -> list:
        """What /predict answers, one request per row: the reference every protocol matches."""
        out = []
        for record in self.frame.astype(object).where(self.frame.notna(), None).to_dict("records"):
            response = requests.post(
                f"{self.url}/predict", json={"features": record}, headers=headers, timeout=10
            )
            assert response.status_code == 200, response.text
            out.append(response.json())
        return out


def _serve(tmp_path, frame: pd.DataFrame, estimator: str, **server) -> Iterator[Server]:
    from waitress import create_server

    settings = make_settings(tmp_path, model={"estimator": estimator}, server=server)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, frame)
    app = create_app(settings, registry=registry)
    wsgi = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    features = [c for c in frame.columns if c != "target"]
    sample = frame[features].sample(ROWS, random_state=1).reset_index(drop=True)
    try:
        yield Server("127.0.0.1", wsgi.effective_port, features, sample)
    finally:
        # Close every socket from inside the server's own loop, which then ends: closing them
        # from this thread would pull them from under a select() still running there.
        wsgi.trigger.pull_trigger(lambda: [ch.close() for ch in list(wsgi._map.values())])
        thread.join(timeout=10)
        wsgi.task_dispatcher.shutdown()
        assert not thread.is_alive()
        app.extensions["dropscore"].champion.stop()


@pytest.fixture(scope="module")
def regression(tmp_path_factory, diabetes) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("regression"), diabetes, "linear_regression")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, diabetes) -> Iterator[Server]:
    frame = diabetes.assign(target=np.where(diabetes["target"] > 140, "high", "low"))
    yield from _serve(tmp_path_factory.mktemp("classifier"), frame, "logistic_regression")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Iterator[Server]:
    """Numbers with gaps and a text feature: BYTES tensors, and NaN as a missing number."""
    from tests.test_training import toy

    frame = toy("regression")
    frame = frame[frame["colour"].notna()]  # BYTES has no null; a missing number stays in
    yield from _serve(tmp_path_factory.mktemp("mixed"), frame, "ridge")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, diabetes) -> Iterator[Server]:
    yield from _serve(
        tmp_path_factory.mktemp("keyed"),
        diabetes,
        "linear_regression",
        api_keys=["s3cret-key-0123456789"],
    )


# --- MLflow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regression", "classifier", "mixed"])
def test_mlflow_client_matches_predict(kind, request):
    server: Server = request.getfixturevalue(kind)
    client = mlflow_client.ScoringServerClient(server.host, server.port)
    client.wait_server_ready(timeout=10)
    client.ping()
    assert client.get_version()
    expected = [r["prediction"] for r in server.predict()]
    frame = server.frame.astype(object).where(server.frame.notna(), None)  # NaN is not JSON
    from_frame = client.invoke(frame).get_predictions(predictions_format="ndarray")
    from_array = client.invoke(frame.to_numpy()).get_predictions(predictions_format="ndarray")
    assert from_frame.tolist() == same(expected)
    assert from_array.tolist() == same(expected)


def test_mlflow_client_sees_a_bad_request_without_trace_or_data(regression):
    client = mlflow_client.ScoringServerClient(regression.host, regression.port)
    frame = regression.frame.assign(bmi="secret-value-123")
    with pytest.raises(Exception, match="error code 422") as info:
        client.invoke(frame)
    text = str(info.value)
    assert '"error_code": "BAD_REQUEST"' in text
    assert "dataframe_split.data[0][2] (bmi)" in text
    assert "secret-value-123" not in text and "Traceback" not in text


def test_mlflow_csv_and_other_json_shapes(regression):
    expected = [r["prediction"] for r in regression.predict()]
    url = f"{regression.url}/invocations"
    csv = requests.post(
        url, data=regression.frame.to_csv(index=False), headers={"Content-Type": "text/csv"}
    )
    assert csv.json()["predictions"] == same(expected)
    records = regression.frame.to_dict(orient="records")
    for body in (
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": regression.frame.to_dict(orient="list")},
    ):
        assert requests.post(url, json=body).json()["predictions"] == same(expected), body


# --- Open Inference Protocol (tritonclient) -------------------------------------------------


def _triton(server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"{server.host}:{server.port}")


@pytest.mark.parametrize("kind", ["regression", "classifier"])
def test_triton_client_health_and_metadata(kind, request):
    server: Server = request.getfixturevalue(kind)
    client = _triton(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("default") and client.is_model_ready("default", "1")
    assert not client.is_model_ready("default", "2")
    assert not client.is_model_ready("nope")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("default")
    assert [i["name"] for i in meta["inputs"]] == server.features
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    outputs = {o["name"]: o["datatype"] for o in meta["outputs"]}
    if kind == "regression":
        assert outputs == {"predict": "FP64"}
    else:
        assert outputs == {"predict": "BYTES", "predict_proba": "FP64"}
    with pytest.raises(triton_utils.InferenceServerException, match="no model by that name"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("kind", ["regression", "classifier"])
@pytest.mark.parametrize("binary", [True, False])
def test_triton_client_infer_one_matrix_tensor(kind, binary, request):
    server: Server = request.getfixturevalue(kind)
    client = _triton(server)
    matrix = server.frame.to_numpy(dtype=np.float64)
    tensor = httpclient.InferInput("input-0", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix, binary_data=binary)
    outputs = None if binary else [httpclient.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer("default", [tensor], outputs=outputs)
    got = result.as_numpy("predict")
    reference = server.predict()
    expected = [r["prediction"] for r in reference]
    if kind == "regression":
        assert got.tolist() == same(expected)
    else:
        assert [v.decode() if isinstance(v, bytes) else v for v in got.tolist()] == expected
        if binary:  # every output was returned, in binary
            proba = result.as_numpy("predict_proba")
            classes = sorted(reference[0]["probabilities"])
            want = [[r["probabilities"][c] for c in classes] for r in reference]
            np.testing.assert_allclose(proba, want, rtol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_triton_client_infer_one_tensor_per_feature(regression, binary):
    client = _triton(regression)
    inputs = []
    for name in regression.features:
        column = regression.frame[name].to_numpy(dtype=np.float32).reshape(-1, 1)
        tensor = httpclient.InferInput(name, list(column.shape), "FP32")
        tensor.set_data_from_numpy(column, binary_data=binary)
        inputs.append(tensor)
    result = client.infer("default", inputs, model_version="1", request_id="r-7")
    assert result.get_response()["id"] == "r-7"
    expected = [r["prediction"] for r in regression.predict()]
    # FP32 inputs round the features, so the answers agree to float32 precision only
    np.testing.assert_allclose(result.as_numpy("predict"), expected, rtol=1e-5)


def test_triton_client_bytes_for_text_features(mixed):
    client = _triton(mixed)
    meta = client.get_model_metadata("default")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("x1", "FP64"),
        ("x2", "FP64"),
        ("colour", "BYTES"),
    ]
    assert mixed.frame["x1"].isna().any()  # NaN in a binary FP64 tensor is a missing value
    inputs = []
    for name in ("colour", "x2", "x1"):  # any order: tensors are matched by name
        column = mixed.frame[name].to_numpy()
        datatype = "BYTES" if name == "colour" else "FP64"
        tensor = httpclient.InferInput(name, [len(column)], datatype)
        tensor.set_data_from_numpy(column.astype(object if name == "colour" else np.float64))
        inputs.append(tensor)
    got = client.infer("default", inputs).as_numpy("predict")
    assert got.tolist() == same([r["prediction"] for r in mixed.predict()])


def test_triton_client_sees_errors_as_exceptions(regression):
    client = _triton(regression)
    wrong = httpclient.InferInput("input-0", [2, 3], "FP64")
    wrong.set_data_from_numpy(np.ones((2, 3)))
    with pytest.raises(triton_utils.InferenceServerException, match="one tensor per feature"):
        client.infer("default", [wrong])
    matrix = regression.frame.to_numpy(dtype=np.float64)
    ok = httpclient.InferInput("input-0", list(matrix.shape), "FP64")
    ok.set_data_from_numpy(matrix)
    missing = "has no version 9; its versions are 1"
    with pytest.raises(triton_utils.InferenceServerException, match=missing):
        client.infer("default", [ok], model_version="9")


# --- KServe v1 ------------------------------------------------------------------------------


def test_kserve_v1_matches_predict(classifier):
    url = f"{classifier.url}/v1/models/default"
    assert requests.get(url).json() == {"name": "default", "ready": True}
    expected = [r["prediction"] for r in classifier.predict()]
    rows = classifier.frame.to_numpy().tolist()
    assert requests.post(f"{url}:predict", json={"instances": rows}).json() == {
        "predictions": same(expected)
    }
    missing = requests.post(f"{classifier.url}/v1/models/other:predict", json={"instances": rows})
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


# --- auth -----------------------------------------------------------------------------------


def test_keys_guard_the_protocols_but_not_their_probes(keyed):
    key = {"Authorization": "Bearer s3cret-key-0123456789"}
    assert requests.get(f"{keyed.url}/ping").status_code == 200
    assert requests.get(f"{keyed.url}/v2/health/live").status_code == 200
    assert requests.get(f"{keyed.url}/v2/health/ready").status_code == 200
    body = {"instances": keyed.frame.to_numpy().tolist()}
    refused = requests.post(f"{keyed.url}/invocations", json=body)
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
    refused = requests.post(f"{keyed.url}/v1/models/default:predict", json=body)
    assert refused.status_code == 401 and set(refused.json()) == {"error"}
    assert requests.get(f"{keyed.url}/version").status_code == 401
    client = _triton(keyed)
    with pytest.raises(triton_utils.InferenceServerException):
        client.get_model_metadata("default")
    assert client.get_model_metadata("default", headers=key)["name"] == "default"
    expected = [r["prediction"] for r in keyed.predict(headers=key)]
    accepted = requests.post(f"{keyed.url}/invocations", json=body, headers=key)
    assert accepted.json()["predictions"] == same(expected)
