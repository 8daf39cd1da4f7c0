"""Every registered version answers when a call names it, on a real server with two models.

``fair`` has three versions: 1 (archived), 2 (the champion) and 3 (rejected), each trained on
other rows so their answers differ. A call naming a version (``/versions/<v>/predict``,
``?version=``, OIP's ``/versions/<v>/infer``) must be answered by that version, a version the
model lacks must be a 404 naming the versions there are, and a query parameter the route does
not take must be refused, never ignored.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.champion import ChampionHolder, load_version
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.versions import VersionCache
from scoring.settings import Settings

from ._server import serving
from .conftest import make_settings, register_trained

httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")

TIMEOUT = 30


def fair_frame(diabetes: pd.DataFrame) -> pd.DataFrame:
    """The sample under other column names, so a row of one model is not a row of the other."""
    return diabetes.rename(columns={c: f"f_{c}" for c in diabetes.columns if c != "target"})


@dataclass
class Two:
    url: str
    settings: Settings
    fair: Registry
    rows: list[dict]  # a few rows of fair's features
    default_rows: list[dict]

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}{path}", timeout=TIMEOUT, **kwargs)

    def expected(self, version: int) -> list[float]:
        """What the version itself predicts for ``rows``, loaded here outside the server."""
        model = load_version(self.fair, version)
        X = pd.DataFrame(self.rows)[model.schema.names].to_numpy(dtype=np.float64)
        return model.predict_matrix(X)[0].tolist()


def two_models(tmp_path, diabetes) -> tuple[Settings, Registry]:
    settings = make_settings(
        tmp_path,
        model={"estimator": "ridge"},
        models={"fair": {"target": "target", "estimator": "linear_regression"}},
    )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    view = settings.for_model("fair")
    fair = Registry(view.models_dir, StateDB.at(view.db_path))
    frame = fair_frame(diabetes)
    register_trained(view, fair, frame.iloc[:150])  # 1, archived once 2 is promoted
    register_trained(view, fair, frame)  # 2, the champion
    register_trained(view, fair, frame.iloc[150:300], promote=False)  # 3
    fair.set_status(3, "rejected", "worse than the champion")
    return settings, fair


@pytest.fixture(scope="module")
def two(tmp_path_factory, diabetes) -> Iterator[Two]:
    settings, fair = two_models(tmp_path_factory.mktemp("two"), diabetes)
    frame = fair_frame(diabetes).drop(columns="target")
    app = create_app(settings)
    with serving(app) as url:
        yield Two(
            url,
            settings,
            fair,
            frame.sample(5, random_state=3).to_dict("records"),
            diabetes.drop(columns="target").head(3).to_dict("records"),
        )


def test_the_statuses_are_what_the_tests_assume(two):
    assert [(m.version, m.status) for m in two.fair.list()] == [
        (1, "archived"), (2, "champion"), (3, "rejected"),
    ]  # fmt: skip
    # each version answers differently, so answering with the wrong one cannot pass
    assert len({tuple(two.expected(v)) for v in (1, 2, 3)}) == 3


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_version_in_the_path_answers(two, version):
    response = two.post(f"/models/fair/versions/{version}/predict", json={"instances": two.rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == str(version)
    assert body["predictions"] == pytest.approx(two.expected(version), rel=1e-12)
    one = two.post(f"/models/fair/versions/{version}/predict", json={"features": two.rows[0]})
    assert one.json()["model_version"] == str(version)
    assert one.json()["prediction"] == pytest.approx(two.expected(version)[0], rel=1e-12)


@pytest.mark.parametrize("version", [1, 3])
def test_the_version_query_parameter_is_answered_not_ignored(two, version):
    """The issue: ``?version=1`` was answered by the champion, version 2, with a 200."""
    response = two.post(f"/models/fair/predict?version={version}", json={"instances": two.rows})
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == str(version)
    assert response.json()["predictions"] == pytest.approx(two.expected(version), rel=1e-12)


def test_without_a_version_the_champion_answers(two):
    response = two.post("/models/fair/predict", json={"instances": two.rows})
    assert response.json()["model_version"] == "2"


def test_the_default_models_plain_routes_take_versions_too(two):
    expected = two.post("/predict", json={"features": two.default_rows[0]}).json()
    response = two.post("/versions/1/predict", json={"features": two.default_rows[0]})
    assert response.status_code == 200, response.text
    assert response.json() == expected
    wrong = two.post("/versions/2/predict", json={"features": two.default_rows[0]})
    assert wrong.status_code == 404
    assert (
        "model 'default' has no version 2; its versions are 1" in wrong.json()["error"]["message"]
    )


def test_an_unknown_version_is_a_404_naming_the_versions(two):
    for path in ("/models/fair/versions/9/predict", "/models/fair/predict?version=9"):
        response = two.post(path, json={"features": two.rows[0]})
        assert response.status_code == 404, (path, response.text)
        error = response.json()["error"]
        assert error["message"] == "model 'fair' has no version 9; its versions are 1, 2, 3"
        assert error["details"] == [{"model": "fair", "versions": ["1", "2", "3"]}]


def test_a_bad_or_conflicting_version_is_a_422(two):
    bad = two.post("/models/fair/predict?version=two", json={"features": two.rows[0]})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "version"
    both = two.post("/models/fair/versions/1/predict?version=3", json={"features": two.rows[0]})
    assert both.status_code == 422
    assert "names version 1 and ?version= names 3" in both.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "protocol"),
    [
        ("post", "/predict?verison=1", "dropscore"),
        ("post", "/models/fair/predict?model_version=1", "dropscore"),
        ("get", "/models?verbose=1", "dropscore"),
        ("post", "/v2/models/fair/infer?version=1", "oip"),
        ("post", "/invocations?model=fair", "mlflow"),
    ],
)
def test_a_query_parameter_a_route_does_not_take_is_refused(two, method, path, protocol):
    response = requests.request(
        method, f"{two.url}{path}", json={"features": two.default_rows[0]}, timeout=TIMEOUT
    )
    assert response.status_code == 422, response.text
    body = response.json()
    message = {
        "dropscore": lambda: body["error"]["message"],
        "oip": lambda: body["error"],
        "mlflow": lambda: body["message"],
    }[protocol]()
    name = path.partition("?")[2].partition("=")[0]
    assert f"does not take the query parameter {name}" in message, message


def test_the_refusal_repeats_no_client_text_but_a_plain_name(two):
    for sent in ("<script>evil</script>", "x" * 80):
        response = requests.post(
            f"{two.url}/predict", params={sent: "1"}, json={"features": two.default_rows[0]},
            timeout=TIMEOUT,
        )  # fmt: skip
        assert response.status_code == 422, response.text
        assert sent not in response.text and "script" not in response.text
        assert "(a name " in response.json()["error"]["message"]  # described, not repeated
    for sent in ("evilversion", "<b>2</b>"):
        response = two.post(f"/models/fair/predict?version={sent}", json={"features": two.rows[0]})
        assert response.status_code == 422 and sent not in response.text


def test_a_declared_query_parameter_still_works(two):
    csv = pd.DataFrame(two.rows).to_csv(index=False)
    response = two.post(
        "/models/fair/score-file?format=jsonl&version=3",
        data=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "3"
    scored = pd.read_json(io.StringIO(response.text), lines=True)
    assert scored["prediction"].tolist() == pytest.approx(two.expected(3), rel=1e-12)


def test_score_file_under_a_version_path(two):
    csv = pd.DataFrame(two.rows).to_csv(index=False)
    response = two.post(
        "/models/fair/versions/1/score-file", data=csv, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    scored = pd.read_csv(io.StringIO(response.text))
    assert scored["prediction"].tolist() == pytest.approx(two.expected(1), rel=1e-12)


# --- Open Inference Protocol, with tritonclient ---------------------------------------------


def _inputs(rows: list[dict]) -> list:
    frame = pd.DataFrame(rows)
    inputs = []
    for name in frame.columns:
        column = frame[name].to_numpy(dtype=np.float64)
        tensor = httpclient.InferInput(name, [len(column)], "FP64")
        tensor.set_data_from_numpy(column, binary_data=True)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_triton_infers_with_the_version_it_names(two, version):
    client = httpclient.InferenceServerClient(two.url.removeprefix("http://"))
    assert client.is_model_ready("fair", version)
    result = client.infer("fair", _inputs(two.rows), model_version=version)
    assert result.get_response()["model_version"] == version
    got = result.as_numpy("predict").tolist()
    assert got == pytest.approx(two.expected(int(version)), rel=1e-12)
    assert client.get_model_metadata("fair", version)["versions"] == [version]


def test_triton_names_the_versions_when_one_is_missing(two):
    client = httpclient.InferenceServerClient(two.url.removeprefix("http://"))
    assert not client.is_model_ready("fair", "7")
    with pytest.raises(triton_utils.InferenceServerException, match="its versions are 1, 2, 3"):
        client.infer("fair", _inputs(two.rows), model_version="7")


def test_triton_get_model_config(two):
    client = httpclient.InferenceServerClient(two.url.removeprefix("http://"))
    config = client.get_model_config("fair")
    assert config["name"] == "fair"
    assert config["platform"] == "sklearn" and config["backend"] == "dropscore"
    assert config["max_batch_size"] == 0
    names = list(pd.DataFrame(two.rows).columns)
    assert config["input"] == [{"name": n, "data_type": "TYPE_FP64", "dims": [-1]} for n in names]
    assert config["output"] == [{"name": "predict", "data_type": "TYPE_FP64", "dims": [-1]}]
    assert config["parameters"]["version"] == {"string_value": "2"}
    old = client.get_model_config("fair", "1")
    assert old["parameters"]["version"] == {"string_value": "1"}
    with pytest.raises(triton_utils.InferenceServerException, match="its versions are 1, 2, 3"):
        client.get_model_config("fair", "5")


def test_triton_config_of_a_classifier(tmp_path, diabetes):
    frame = diabetes.assign(target=np.where(diabetes["target"] > 140, "high", "low"))
    settings = make_settings(tmp_path, model={"estimator": "logistic_regression"})
    register_trained(settings, Registry(settings.models_dir, StateDB.at(settings.db_path)), frame)
    with serving(create_app(settings)) as url:
        config = httpclient.InferenceServerClient(url.removeprefix("http://")).get_model_config(
            "default"
        )
    assert config["output"] == [
        {"name": "predict", "data_type": "TYPE_STRING", "dims": [-1]},
        {"name": "predict_proba", "data_type": "TYPE_FP64", "dims": [-1, 2]},
    ]


# --- the cache of versions ------------------------------------------------------------------


@pytest.fixture
def forests(tmp_path, diabetes) -> Iterator[tuple[Registry, ChampionHolder]]:
    """Four random-forest versions (loaded from skops files: slow enough to overlap)."""
    settings = make_settings(
        tmp_path, model={"estimator": "random_forest", "params": {"n_estimators": 5}}
    )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    for i in range(4):
        register_trained(settings, registry, diabetes.iloc[i * 50 :], promote=i == 3)
    champion = ChampionHolder(registry)
    yield registry, champion
    champion.stop()


def test_concurrent_first_calls_load_a_version_once(forests):
    registry, champion = forests
    cache = VersionCache("default", registry, champion, 2)
    start = threading.Barrier(8)
    got: list = []

    def call() -> None:
        start.wait(timeout=TIMEOUT)
        got.append(cache.get(1))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert len(got) == 8 and all(m is got[0] for m in got)
    assert cache.loads == 1


def test_the_cache_keeps_the_recent_versions_and_never_the_champion(forests):
    registry, champion = forests
    cache = VersionCache("default", registry, champion, 2)
    assert cache.get(4) is champion.current()  # the holder's instance, never loaded again
    first = cache.get(1)
    cache.get(2)
    assert cache.get(1) is first  # used again: now the most recent
    cache.get(3)  # evicts 2, the least recently used
    assert cache.cached() == ["1", "3"]
    assert cache.get("4") is champion.current()
    assert cache.loads == 3
    cache.get(2)
    assert cache.loads == 4 and cache.cached() == ["3", "2"]
