"""Late labels: a labelled drop joined by id to logged requests and scored drops (issue 20, #5).

``background()`` as ``serve`` runs it (the real watcher, scorer and intake hooks) and the API on
a real server: ten ``/predict`` calls are logged, a score drop is scored into the outbox, then
a training drop labels those rows by id; ``GET /performance`` shows realized metrics equal to
scikit-learn's on the joined rows, beside the version's hold-out metrics.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn import metrics as skm

from scoring.api.app import create_app
from scoring.lifecycle.schema import Feature, FeatureSchema
from scoring.models.factory import open_model
from scoring.monitoring.labels import fallen, keys, realized_metrics, text
from scoring.service.runtime import background

from ._server import serving
from .conftest import make_settings, register_trained, wait_for
from .test_first_data import drop, taken


@pytest.fixture
def settings(tmp_path):
    return make_settings(
        tmp_path,
        model={"id_columns": ["id"]},
        ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0},
        monitoring={"log_fraction": 1.0, "log_flush_seconds": 0.2, "min_rows": 5},
    )


def test_a_labelled_drop_gives_realized_metrics_equal_to_sklearns(settings, diabetes):
    frame = diabetes.assign(id=range(len(diabetes)))
    register_trained(settings, open_model(settings).registry, frame)
    features = list(diabetes.columns.drop("target"))
    with background(settings) as bg:
        model = bg.models[settings.name]
        app = create_app(settings, served=bg.models, dataplane=bg.dataplane)
        with serving(app) as url:
            answers = {}
            for i in range(10):
                row = frame.iloc[i][features].to_dict()
                got = requests.post(
                    f"{url}/predict", json={"features": row}, headers={"X-Request-Id": f"r{i}"}
                )
                assert got.status_code == 200, got.text
                answers[f"r{i}"] = got.json()["prediction"]
            scored = frame.iloc[100:130].drop(columns="target").assign(id=lambda f: f.id + 1000)
            drop(settings.layout.inbox("score"), "today.csv", scored)
            record = wait_for(
                lambda: (r := taken(model.ledger, "today.csv")) and r.output_path and r,
                what="the scored drop",
            )
            outbox = pd.read_parquet(model.ledger.resolve(record.output_path))
            answers.update(dict(zip(outbox["id"].astype(str), outbox["prediction"], strict=True)))
            wait_for(lambda: len(model.prediction_log().names()) > 0, what="the logged requests")

            labels = pd.concat([
                frame.iloc[:10].assign(id=[f"r{i}" for i in range(10)]),
                frame.iloc[100:130].assign(id=lambda f: (f.id + 1000).astype(str)),
                frame.iloc[200:210].assign(id=[f"nobody-{i}" for i in range(10)]),  # no answer
            ])  # fmt: skip
            drop(settings.layout.inbox("train"), "labels.csv", labels)

            def realized():
                body = requests.get(f"{url}/models/default/performance").json()
                return body["versions"] and body["versions"][0]["realized"] and body

            body = wait_for(realized, what="realized metrics")
    [version] = body["versions"]
    assert (body["champion"], version["version"], version["primary_metric"]) == ("1", "1", "r2")
    assert version["holdout"]["r2"] is not None  # the metrics it was promoted on
    days = version["realized"]
    if len(days) > 1:
        pytest.skip("the answers straddled midnight UTC: the rows split over two days")
    [day] = days
    joined = labels[labels.id.isin(answers)]
    y = joined["target"].to_numpy(dtype=float)
    pred = np.array([answers[i] for i in joined["id"]], dtype=float)
    assert day["rows"] == 40
    mse = skm.mean_squared_error(y, pred)
    expected = {
        "mae": skm.mean_absolute_error(y, pred),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": skm.r2_score(y, pred),
    }
    assert day["metrics"] == pytest.approx(expected, rel=1e-9)


def test_ids_and_labels_are_spelled_one_way_whatever_their_type():
    import pyarrow as pa

    assert [text(v) for v in (1, 1.0, "1", None, float("nan"), 2.5)] == [
        "1", "1", "1", None, None, "2.5"
    ]  # fmt: skip
    columns = [pa.array([1, 2, None]), pa.array(["a", "b", "c"])]
    assert keys(columns) == ["1|a", "2|b", None]


def test_classification_is_measured_on_class_names_as_text():
    schema = FeatureSchema((Feature("x", "numeric"),), "y", "classification", classes=(0, 1))
    found = realized_metrics(schema, ["1", "0", "1", "1"], ["1", "0", "0", "1"])
    f1 = skm.f1_score([1, 0, 1, 1], [1, 0, 0, 1])
    assert found == pytest.approx({"accuracy": 0.75, "f1": f1})


@pytest.mark.parametrize(
    ("task", "holdout", "realized", "margin", "falls"),
    [
        ("regression", {"r2": 0.5}, {"r2": 0.40}, 0.05, True),
        ("regression", {"r2": 0.5}, {"r2": 0.46}, 0.05, False),
        ("classification", {"f1": 0.9}, {"f1": 0.7}, 0.1, True),
        ("classification", {"f1": 0.9}, {"f1": None}, 0.1, False),
        ("regression", {}, {"r2": 0.1}, 0.05, False),
    ],
)
def test_a_fall_past_the_margin_is_told(task, holdout, realized, margin, falls):
    assert (fallen(task, holdout, realized, margin) is not None) is falls
