"""MLflow's scoring protocol for each model, on a real server with MLflow's own client.

``/invocations`` serves the default model and ``/models/<name>/invocations`` each named one;
an error at the plain path names the model that answered and where the others are (a named
model's columns sent there used to read as if that model refused its own columns). A Parquet
body is read with the same limits and row checks as JSON and CSV, and a corrupt one is a 400
in MLflow's error shape.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.champion import load_version
from scoring.lifecycle.registry import Registry

from ._server import serving
from .conftest import make_settings, register_trained

mlflow_client = pytest.importorskip("mlflow.pyfunc.scoring_server.client")

TIMEOUT = 30
PARQUET = "application/vnd.apache.parquet"


@dataclass
class Served:
    url: str
    default: pd.DataFrame  # rows of the default model's features
    fair: pd.DataFrame  # rows of fair's features
    registries: dict[str, Registry]

    def expected(self, name: str, frame: pd.DataFrame, version: int | None = None) -> list:
        registry = self.registries[name]
        model = load_version(registry, version or registry.champion_version() or 0)
        X = frame[model.schema.names].to_numpy(dtype=np.float64)
        return model.predict_matrix(X)[0].tolist()

    def client(self, prefix: str = "") -> mlflow_client.ScoringServerClient:
        """MLflow's client, pointed at the server (and a path prefix, as behind a proxy)."""
        host, port = self.url.removeprefix("http://").split(":")
        client = mlflow_client.ScoringServerClient(host, int(port))
        client.url_prefix += prefix
        return client


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("mlflow-models")
    settings = make_settings(
        root,
        model={"estimator": "ridge"},
        models={"fair": {"target": "target", "estimator": "linear_regression"}},
        server={"max_rows_per_request": 40, "max_json_mb": 0.2},
    )
    default = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, default, diabetes)
    view = settings.for_model("fair")
    fair = Registry(view.models_dir, StateDB.at(view.db_path))
    renamed = diabetes.rename(columns={c: f"f_{c}" for c in diabetes.columns if c != "target"})
    register_trained(view, fair, renamed.iloc[:200])
    register_trained(view, fair, renamed)
    with serving(create_app(settings)) as url:
        yield Served(
            url,
            diabetes.drop(columns="target").sample(10, random_state=2).reset_index(drop=True),
            renamed.drop(columns="target").sample(10, random_state=2).reset_index(drop=True),
            {"default": default, "fair": fair},
        )


def parquet_of(frame: pd.DataFrame, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, **options)
    return sink.getvalue()


def test_each_model_answers_at_its_own_invocations(served):
    plain = served.client()
    plain.wait_server_ready(timeout=TIMEOUT)
    got = plain.invoke(served.default).get_predictions(predictions_format="ndarray")
    assert got.tolist() == pytest.approx(served.expected("default", served.default), rel=1e-12)

    fair = served.client("/models/fair")
    fair.ping()
    got = fair.invoke(served.fair).get_predictions(predictions_format="ndarray")
    assert got.tolist() == pytest.approx(served.expected("fair", served.fair), rel=1e-12)


def test_a_version_of_a_named_model(served):
    response = requests.post(
        f"{served.url}/models/fair/invocations?version=1",
        json={"dataframe_records": served.fair.to_dict("records")},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    expected = served.expected("fair", served.fair, 1)
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(served.expected("fair", served.fair), rel=1e-12)


def test_another_models_columns_at_the_plain_path_name_who_answered(served):
    """The issue: fair's columns at /invocations read '422 … unknown feature (and 15 more)'."""
    with pytest.raises(Exception, match="error code 422") as info:
        served.client().invoke(served.fair)
    text = str(info.value)
    assert "model 'default' (version 1): " in text
    assert "this server also serves 'fair', at /models/fair/invocations" in text


def test_a_named_models_error_names_it_and_not_the_others(served):
    response = requests.post(
        f"{served.url}/models/fair/invocations",
        json={"dataframe_records": served.default.to_dict("records")},
        timeout=TIMEOUT,
    )
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["message"].startswith("model 'fair' (version 2): ")
    assert "also serves" not in body["message"]


def test_an_unknown_model_or_version_is_a_404_in_mlflows_shape(served):
    response = requests.post(
        f"{served.url}/models/nope/invocations", json={"instances": []}, timeout=TIMEOUT
    )
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "no model by that name; this server has: default, fair" in response.json()["message"]
    missing = requests.post(
        f"{served.url}/models/fair/invocations?version=8", json={"instances": []}, timeout=TIMEOUT
    )
    assert missing.status_code == 404
    assert "has no version 8; its versions are 1, 2" in missing.json()["message"]
    assert requests.get(f"{served.url}/models/nope/ping", timeout=TIMEOUT).status_code == 404
    # a segment no model name can be (upper case) still answers in MLflow's shape
    for method, path in (("get", "/models/AAA/ping"), ("post", "/models/AAA/invocations")):
        response = requests.request(method, f"{served.url}{path}", timeout=TIMEOUT)
        assert response.status_code == 404, path
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", path
    long = requests.get(f"{served.url}/models/{'a' * 5000}/ping", timeout=TIMEOUT)
    assert long.status_code == 404 and len(long.json()["message"]) < 200  # not echoed whole


@pytest.mark.parametrize("path", ["/invocations", "/models/fair/invocations"])
def test_a_parquet_body_is_scored_like_json(served, path):
    name = "fair" if "fair" in path else "default"
    frame = served.fair if name == "fair" else served.default
    with_gap = frame.copy()
    with_gap.iloc[0, 2] = np.nan
    response = requests.post(
        f"{served.url}{path}",
        data=parquet_of(with_gap),
        headers={"Content-Type": PARQUET},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    records = with_gap.astype(object).where(with_gap.notna(), None).to_dict("records")
    as_json = requests.post(
        f"{served.url}{path}", json={"dataframe_records": records}, timeout=TIMEOUT
    )
    assert response.json() == as_json.json()


def test_a_corrupt_parquet_body_is_a_400_in_mlflows_shape(served):
    good = parquet_of(served.default)
    for body in (b"PAR1 not really", good[: len(good) // 2], b"\x00" * 64):
        response = requests.post(
            f"{served.url}/invocations", data=body, headers={"Content-Type": PARQUET}, timeout=30
        )
        assert response.status_code == 400, response.text
        assert response.json() == {
            "error_code": "BAD_REQUEST",
            "message": "model 'default' (version 1): the Parquet body cannot be read: send one"
            " Parquet file; this server also serves 'fair', at /models/fair/invocations",
        }


def test_parquet_rows_are_checked_like_any_rows(served):
    def post(frame: pd.DataFrame) -> requests.Response:
        return requests.post(
            f"{served.url}/invocations",
            data=parquet_of(frame),
            headers={"Content-Type": PARQUET},
            timeout=TIMEOUT,
        )

    too_many = post(pd.concat([served.default] * 5))  # 50 rows; the limit is 40
    assert too_many.status_code == 422
    assert "max_rows_per_request allows 40" in too_many.json()["message"]
    text = post(served.default.assign(bmi="secret-value-123"))
    assert text.status_code == 422 and "bmi" in text.json()["message"]
    assert "secret-value-123" not in text.text
    unknown = post(served.default.assign(extra=1.0))
    assert unknown.status_code == 422 and "extra" in unknown.json()["message"]


def test_a_parquet_body_that_unpacks_past_the_body_limit_is_a_413(served):
    """A small compressed body must not unpack into more than a request may hold."""
    frame = pd.DataFrame({c: np.zeros(40) for c in served.default.columns})
    wide = frame.assign(pad=["x" * 20_000] * 40)  # ~800 KB of text, compressed to almost none
    body = parquet_of(wide, use_dictionary=False, compression="zstd")
    assert len(body) < 0.2 * 1024 * 1024
    response = requests.post(
        f"{served.url}/invocations", data=body, headers={"Content-Type": PARQUET}, timeout=30
    )
    assert response.status_code == 413, response.text
    assert "max_json_mb" in response.json()["message"]
