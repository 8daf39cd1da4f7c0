"""Three models in one app: a regression, a binary and a three-class classifier, trained for real.

Each is trained by a real retrain (``run_retrain``, the trainer child process) on a lake written
through its own intake; the routes under ``/models/<name>/…`` must answer for that model alone,
today's routes for the default one, the protocols by the same names, and a wrong name must be a
404 naming the models, wherever it appears.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.service.runtime import open_intake
from scoring.settings import Settings, load_settings

from ._server import serving
from .conftest import SAMPLE, assert_error, register_trained, wait_for

NAMES = ("price", "churn", "species")
SPECIES = ("setosa", "versicolor", "virginica")
SETTINGS = """
[paths]
data_dir = "data"

[training]
min_rows = 10
promote = "always"

[ingest]
stable_seconds = 0.1
rescan_seconds = 0.5

[scoring]
on_arrival = false

[models.price]
target = "price"
estimator = "ridge"

[models.churn]
target = "churned"
id_columns = ["customer_id"]
estimator = "logistic_regression"

[models.species]
target = "species"
estimator = "random_forest_classifier"
params = { n_estimators = 15 }
"""


def price_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE).rename(columns={"target": "price"})


def churn_frame(n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    tenure = rng.integers(1, 72, n)
    monthly = rng.uniform(20, 120, n).round(2)
    score = monthly / 40 - tenure / 12 + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "tenure": tenure,
            "monthly": monthly,
            "churned": np.where(score > 0, "yes", "no"),
        }
    )


def species_frame(n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    label = np.arange(n) % 3
    return pd.DataFrame(
        {
            "petal_length": 1.5 + 2.5 * label + rng.normal(0, 0.3, n),
            "petal_width": 0.2 + 0.9 * label + rng.normal(0, 0.15, n),
            "sepal_length": 5.0 + 0.6 * label + rng.normal(0, 0.4, n),
            "species": [SPECIES[i] for i in label],
        }
    )


FRAMES = {"price": price_frame, "churn": churn_frame, "species": species_frame}


def features(name: str) -> list[dict]:
    """A few rows of a model's features, as JSON-able records."""
    frame = FRAMES[name]()
    target = {"price": "price", "churn": "churned", "species": "species"}[name]
    return frame.drop(columns=[target, "customer_id"], errors="ignore").head(5).to_dict("records")


def three_models(root: Path) -> Settings:
    (root / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    return load_settings(root / "settings.toml", env={})


def train_for_real(view: Settings, root: Path) -> None:
    """Take a labelled file into the model's lake through its intake, then retrain it."""
    sample = root / f"{view.name}-sample.csv"
    FRAMES[view.name]().to_csv(sample, index=False)
    _config, _ledger, intake = open_intake(view)
    record = intake.bootstrap(sample)
    assert record is not None and record.state == "normalized", record
    run = run_retrain(view, Registry(view.models_dir, StateDB.at(view.db_path)), "bootstrap")
    assert run.state == "succeeded" and run.promoted, run


@dataclass
class Three:
    settings: Settings
    root: Path


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Three:
    root = tmp_path_factory.mktemp("three")
    settings = three_models(root)
    for view in settings.each_model():
        train_for_real(view, root)
    return Three(settings, root)


@pytest.fixture(scope="module")
def app(three):
    return create_app(three.settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    """The app on a real waitress server on 127.0.0.1; yields its base URL."""
    with serving(app) as url:
        yield url


def test_each_model_predicts_with_its_own_model(client):
    price = client.post("/models/price/predict", json={"features": features("price")[0]})
    assert price.status_code == 200, price.get_data(as_text=True)
    assert isinstance(price.get_json()["prediction"], float)
    assert "probabilities" not in price.get_json()

    churn = client.post("/models/churn/predict", json={"features": features("churn")[0]})
    assert churn.status_code == 200, churn.get_data(as_text=True)
    body = churn.get_json()
    assert body["prediction"] in ("yes", "no")
    assert set(body["probabilities"]) == {"yes", "no"}

    species = client.post("/models/species/predict", json={"instances": features("species")})
    assert species.status_code == 200, species.get_data(as_text=True)
    body = species.get_json()
    assert len(body["predictions"]) == 5 and set(body["predictions"]) <= set(SPECIES)
    assert all(set(p) == set(SPECIES) for p in body["probabilities"])
    assert all(v["model_version"] == "1" for v in (price.get_json(), churn.get_json()))


def test_todays_routes_answer_for_the_default_model(client):
    row = {"features": features("price")[1]}
    assert client.post("/predict", json=row).get_json() == (
        client.post("/models/price/predict", json=row).get_json()
    )
    assert client.get("/models").get_json() == client.get("/models/price/versions").get_json()
    assert client.get("/runs").get_json() == client.get("/models/price/runs").get_json()
    assert client.get("/files").get_json() == client.get("/models/price/files").get_json()
    # the default model's features are not another's: churn's row is refused, by name
    assert_error(client.post("/predict", json={"features": features("churn")[0]}), 422,
                 "invalid_input", "tenure")  # fmt: skip


def test_a_model_refuses_another_models_rows(client):
    response = client.post("/models/churn/predict", json={"features": features("species")[0]})
    assert_error(response, 422, "invalid_input", "missing")


def test_versions_runs_and_files_are_per_model(client):
    for name in NAMES:
        versions = client.get(f"/models/{name}/versions").get_json()
        assert [v["version"] for v in versions["models"]] == ["1"], (name, versions)
        current = client.get(f"/models/{name}/versions/current")
        assert current.status_code == 200 and current.get_json()["version"] == "1"
        card = client.get(f"/models/{name}/versions/1").get_json()
        assert card["card"]["schema"]["target"] == {
            "price": "price", "churn": "churned", "species": "species"
        }[name]  # fmt: skip
        assert client.get(f"/models/{name}/versions/2").status_code == 404
        runs = client.get(f"/models/{name}/runs").get_json()["runs"]
        assert [r["trigger"] for r in runs] == ["bootstrap"], (name, runs)
        assert client.get(f"/models/{name}/runs/{runs[0]['id']}").get_json()["version"] == "1"
        files = client.get(f"/models/{name}/files").get_json()["files"]
        assert [f["original_name"] for f in files] == [f"{name}-sample.csv"], (name, files)
        shown = client.get(f"/models/{name}/files/{files[0]['id']}").get_json()
        assert shown["original_name"] == f"{name}-sample.csv"


def test_catalog_describes_each_model(client):
    body = client.get("/models/species").get_json()
    assert body == {
        "name": "species",
        "ready": True,
        "champion": "1",
        "target": "species",
        "estimator": "random_forest_classifier",
        "inboxes": {"train": "species/inbox/train", "score": "species/inbox/score"},
    }


def test_score_file_per_model(client):
    frame = species_frame().drop(columns="species").head(12)
    response = client.post(
        "/models/species/score-file",
        data={"file": (io.BytesIO(frame.to_csv(index=False).encode()), "flowers.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    out = pd.read_csv(io.BytesIO(response.data))
    assert len(out) == 12
    assert {f"probability_{s}" for s in SPECIES} <= set(out.columns)
    assert set(out["prediction"]) <= set(SPECIES)
    # the same file is not price's to score
    response = client.post(
        "/models/price/score-file",
        data={"file": (io.BytesIO(frame.to_csv(index=False).encode()), "flowers.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422, response.get_data(as_text=True)


def test_models_list_over_every_protocol(client):
    assert client.get("/v1/models").get_json() == {"models": list(NAMES)}
    listed = client.get("/v2/models").get_json()["models"]
    assert [(m["name"], m["version"], m["state"]) for m in listed] == [
        (name, "1", "READY") for name in NAMES
    ]
    index = client.post("/v2/repository/index", json={"ready": True})
    assert [m["name"] for m in index.get_json()] == list(NAMES)
    for name in NAMES:
        assert client.get(f"/v2/models/{name}/ready").status_code == 200
        assert client.get(f"/v1/models/{name}").get_json() == {"name": name, "ready": True}
        meta = client.get(f"/v2/models/{name}").get_json()
        assert meta["name"] == name


def test_kserve_and_oip_predict_by_name(client):
    rows = features("churn")
    kserve = client.post("/v1/models/churn:predict", json={"instances": rows})
    assert kserve.status_code == 200, kserve.get_data(as_text=True)
    direct = client.post("/models/churn/predict", json={"instances": rows}).get_json()
    assert kserve.get_json()["predictions"] == direct["predictions"]


# Every kind of route that names a model, with a name no model has.
WRONG = [
    ("GET", "/models/nope"),
    ("POST", "/models/nope/predict"),
    ("POST", "/models/nope/score-file"),
    ("POST", "/models/nope/train"),
    ("GET", "/models/nope/runs"),
    ("GET", "/models/nope/runs/1"),
    ("GET", "/models/nope/files"),
    ("GET", "/models/nope/files/1"),
    ("GET", "/models/nope/versions"),
    ("GET", "/models/nope/versions/current"),
    ("GET", "/models/nope/versions/1"),
    ("POST", "/models/nope/versions/1/promote"),
]
WRONG_PROTOCOL = [
    ("GET", "/v2/models/nope"),
    ("GET", "/v2/models/nope/ready"),
    ("GET", "/v2/models/nope/versions/1"),
    ("POST", "/v2/models/nope/infer"),
    ("GET", "/v1/models/nope"),
    ("POST", "/v1/models/nope:predict"),
]


@pytest.mark.parametrize(("method", "path"), WRONG)
def test_wrong_name_is_a_404_naming_the_models(client, method, path):
    response = client.open(path, method=method, json={})
    error = assert_error(response, 404, "not_found", "no model by that name", *NAMES)
    assert error["details"] == [{"models": list(NAMES)}]
    assert "nope" not in response.get_data(as_text=True)  # the name sent is never echoed


@pytest.mark.parametrize(("method", "path"), WRONG_PROTOCOL)
def test_wrong_name_in_a_protocol_is_a_404_naming_the_models(client, method, path):
    response = client.open(path, method=method, json={"inputs": [], "instances": []})
    assert response.status_code == 404, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    assert "nope" not in text and all(name in text for name in NAMES), text


def test_train_one_model_answers_where_its_run_is(client, three):
    response = client.post("/models/churn/train", json={"force": True})
    assert response.status_code == 202, response.get_data(as_text=True)
    run_id = response.get_json()["run_id"]
    location = response.headers["Location"]
    assert location == response.get_json()["url"] == f"/models/churn/runs/{run_id}"

    def finished():
        run = client.get(location).get_json()
        return run if run["state"] in ("succeeded", "failed", "skipped") else None

    run = wait_for(finished, timeout=120, what="churn's retrain")
    assert run["state"] == "succeeded" and run["trigger"] == "api", run
    assert run["version"] == "2" and run["promoted"] is True
    # churn moved on; the others did not
    assert client.get("/models/churn/versions/current").get_json()["version"] == "2"
    assert client.get("/models/churn/predict").status_code != 200  # no body: refused, no crash
    for name in ("price", "species"):
        assert client.get(f"/models/{name}/versions/current").get_json()["version"] == "1"
        assert [r["trigger"] for r in client.get(f"/models/{name}/runs").get_json()["runs"]] == [
            "bootstrap"
        ]
    body = client.post("/models/churn/predict", json={"features": features("churn")[0]})
    assert body.get_json()["model_version"] == "2"


def test_a_drop_into_one_inbox_never_reaches_another_model(client, three):
    """The real watcher over every model's inboxes routes a drop to its own model only."""
    from ingest.pipeline.watcher import Watcher

    opened = [open_intake(view) for view in three.settings.each_model()]
    config = opened[0][0]
    lakes = {v.name: sorted(v.layout.lake("train").iterdir()) for v in three.settings.each_model()}
    before = {name: client.get(f"/models/{name}/files").get_json()["files"] for name in NAMES}
    watcher = Watcher(config, *(intake for _c, _l, intake in opened))
    watcher.start()
    try:
        churn = three.settings.for_model("churn")
        inbox = churn.layout.inbox("train")
        part = inbox / "more customers.csv.part"
        churn_frame(40).to_csv(part, index=False)
        part.rename(inbox / "more customers.csv")

        def taken():
            files = client.get("/models/churn/files").get_json()["files"]
            return [f for f in files if f["original_name"] == "more customers.csv"
                    and f["state"] == "normalized"]  # fmt: skip

        wait_for(taken, timeout=60, what="the drop in churn's inbox to be taken")
    finally:
        watcher.stop()
    for name in ("price", "species"):
        assert client.get(f"/models/{name}/files").get_json()["files"] == before[name]
        view = three.settings.for_model(name)
        assert sorted(view.layout.lake("train").iterdir()) == lakes[name]
    assert len(list(churn.layout.lake("train").iterdir())) == len(lakes["churn"]) + 1
    for name in ("price", "species"):  # not a trace of the drop anywhere in another model
        base = three.settings.for_model(name).layout.base
        assert not [p for p in base.rglob("*") if "customers" in p.name], name
    assert [p for p in churn.layout.base.rglob("*") if "customers" in p.name]


def test_health_and_ready_name_every_model(client):
    health = client.get("/health").get_json()
    assert set(health["models"]) == set(NAMES)
    assert all(m["version"] is not None for m in health["models"].values())
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert set(ready.get_json()["models"]) == set(NAMES)


def test_metrics_carry_the_model_label(client):
    for name in NAMES:
        client.post(f"/models/{name}/predict", json={"features": features(name)[0]})
    text = client.get("/metrics").get_data(as_text=True)
    for name in NAMES:
        assert f'model="{name}"' in text, name
    requests_lines = [
        line for line in text.splitlines()
        if line.startswith("dropscore_requests_total{") and 'endpoint="predict.predict"' in line
    ]  # fmt: skip
    assert {n for n in NAMES if any(f'model="{n}"' in line for line in requests_lines)} == set(
        NAMES
    ), requests_lines


def test_metrics_never_grow_a_label_per_unknown_name(client):
    """A name from the URL that no model has is a 404, never a new time series in /metrics."""
    for i in range(5):
        assert client.post(f"/models/ghost{i}/predict", json={}).status_code == 404
        assert client.get(f"/v2/models/ghost{i}/ready").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert "ghost" not in text


def test_openapi_lists_the_model_routes(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in (
        "/models/{model}/predict",
        "/models/{model}/score-file",
        "/models/{model}/train",
        "/models/{model}/runs",
        "/models/{model}/runs/{run_id}",
        "/models/{model}/files",
        "/models/{model}/versions",
        "/models/{model}/versions/current",
        "/models/{model}/versions/{version}",
        "/models/{model}/versions/{version}/promote",
        "/v2/models",
        "/v2/repository/index",
    ):
        assert path in paths, path
    params = paths["/models/{model}/predict"]["post"]["parameters"]
    model = next(p for p in params if p["name"] == "model")
    assert model["in"] == "path" and model["schema"]["enum"] == list(NAMES)


def test_real_server_with_tritonclient_and_requests(server):
    httpclient = pytest.importorskip("tritonclient.http")
    client = httpclient.InferenceServerClient(server.removeprefix("http://"))
    try:
        index = client.get_model_repository_index()
        assert [m["name"] for m in index] == list(NAMES)
        assert all(m["state"] == "READY" for m in index)
        for name in NAMES:
            assert client.is_model_ready(name) is True
        assert client.is_model_ready("nope") is False
        assert client.is_server_ready() is True
    finally:
        client.close()
    for name in NAMES:
        row = features(name)[2]
        answer = requests.post(
            f"{server}/models/{name}/predict", json={"features": row}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    wrong = requests.get(f"{server}/models/nope/runs", timeout=30)
    assert wrong.status_code == 404 and all(n in wrong.json()["error"]["message"] for n in NAMES)
    assert requests.get(f"{server}/v2/models", timeout=30).status_code == 200


def test_ready_waits_for_a_first_model_and_for_every_named_champion(tmp_path):
    """503 until some model answers; a model still waiting for its first data does not block
    the others (a model added by `dropscore init` must not take the service out of a load
    balancer); a champion the registry names but this process cannot load does."""
    settings = three_models(tmp_path)
    views = {view.name: view for view in settings.each_model()}
    app = create_app(settings)
    client = app.test_client()
    models = app.extensions["dropscore"].models
    assert_error(client.get("/ready"), 503, "no_model", *NAMES)
    assert client.get("/v2/health/ready").status_code == 503
    first, second, third = NAMES
    for name in (first, second):
        frame = FRAMES[name]().drop(columns=["customer_id"], errors="ignore")
        register_trained(views[name], models[name].registry, frame)
    ready = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r, timeout=10)
    assert ready.get_json()["models"] == {first: "1", second: "1", third: None}
    assert client.get("/v2/health/ready").status_code == 200
    # the third model's champion exists but cannot be loaded: not ready, naming it
    frame = FRAMES[third]().drop(columns=["customer_id"], errors="ignore")
    version, _ = register_trained(views[third], models[third].registry, frame, promote=False)
    for path in (views[third].models_dir / str(version)).iterdir():
        path.write_bytes(b"not a model")
    models[third].registry.promote(version)
    wait_for(lambda: client.get("/ready").status_code == 503, timeout=10, what="/ready 503")
    assert_error(client.get("/ready"), 503, "no_model", third)
    assert client.get("/v2/health/ready").status_code == 503
