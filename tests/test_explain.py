"""``POST /explain``: per row a base value and one contribution per feature that sum to the answer.

The property is checked on random rows (gaps included) against the model's own answer from
``/predict`` on a real server: base + contributions == prediction within 1e-9, for a linear
regression (from its stored fold) and a logistic regression (in log-odds, whose logistic is the
probability ``/predict`` answers). A linear model on categories is not covered: a 422 says
which models are (the tree ensembles: ``test_explain_trees.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.inference.explain import explain
from scoring.lifecycle.champion import load_version
from scoring.lifecycle.registry import Registry

from ._server import serving
from .conftest import make_settings, register_trained

TIMEOUT = 30
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
# A feature value: around the sample's range, far outside it, or missing.
VALUE = st.one_of(
    st.floats(-0.2, 0.2, allow_nan=False),
    st.floats(-50, 50, allow_nan=False),
    st.none(),
)
ROWS = st.lists(st.fixed_dictionaries({f: VALUE for f in FEATURES}), min_size=1, max_size=20)


def _serve(tmp_path, frame, estimator: str, **params) -> Iterator[tuple[str, Registry]]:
    settings = make_settings(tmp_path, model={"estimator": estimator, "params": params})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, frame)
    with serving(create_app(settings)) as url:
        yield url, registry


@pytest.fixture(scope="module")
def linear(tmp_path_factory, diabetes) -> Iterator[tuple[str, Registry]]:
    yield from _serve(tmp_path_factory.mktemp("linear"), diabetes, "ridge")


@pytest.fixture(scope="module")
def logistic(tmp_path_factory, diabetes) -> Iterator[tuple[str, Registry]]:
    frame = diabetes.assign(target=np.where(diabetes["target"] > 140, "high", "low"))
    yield from _serve(tmp_path_factory.mktemp("logistic"), frame, "logistic_regression")


def logistic_of(x: float) -> float:
    """1 / (1 + e^-x) without overflow for log-odds far from 0."""
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _post(url: str, path: str, body: dict) -> dict:
    response = requests.post(f"{url}{path}", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS)
def test_linear_contributions_sum_to_the_prediction(linear, rows):
    url, _ = linear
    explained = _post(url, "/explain", {"instances": rows})
    predicted = _post(url, "/predict", {"instances": rows})
    assert explained["space"] == "prediction"
    assert explained["model_version"] == predicted["model_version"]
    for row, out, prediction in zip(
        rows, explained["explanations"], predicted["predictions"], strict=True
    ):
        assert list(out["contributions"]) == FEATURES
        total = out["base_value"] + math.fsum(out["contributions"].values())
        assert abs(total - prediction) <= 1e-9, (total, prediction)
        assert abs(out["prediction"] - prediction) <= 1e-9
        for name, value in row.items():
            if value is None:  # a gap is imputed with the median: it moves nothing
                assert out["contributions"][name] == 0.0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS)
def test_logistic_contributions_sum_to_the_log_odds(logistic, rows):
    url, _ = logistic
    explained = _post(url, "/explain", {"instances": rows})
    predicted = _post(url, "/predict", {"instances": rows})
    assert explained["space"] == "log-odds"
    assert "log-odds of class 'low'" in explained["note"]
    for out, label, proba in zip(
        explained["explanations"],
        predicted["predictions"],
        predicted["probabilities"],
        strict=True,
    ):
        total = out["base_value"] + math.fsum(out["contributions"].values())
        assert abs(total - out["prediction"]) <= 1e-9
        assert out["label"] == label
        # the explained log-odds are the model's: their logistic is its probability
        assert logistic_of(out["prediction"]) == pytest.approx(proba["low"], abs=1e-9)


def test_one_row_and_a_version_path(linear):
    url, registry = linear
    row = dict(
        zip(FEATURES, [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.01], strict=True)
    )
    out = _post(url, "/versions/1/explain", {"features": row})
    assert out["model_version"] == "1" and len(out["explanations"]) == 1
    model = load_version(registry, 1)
    X = np.array([[row[f] for f in FEATURES]])
    direct = explain(model, X)
    assert out["explanations"][0]["base_value"] == direct.base
    assert (
        out["explanations"][0]["prediction"]
        == _post(url, "/predict", {"features": row})["prediction"]
    )


def test_a_linear_model_on_categories_is_a_422_saying_which_models_are_explained(
    tmp_path, diabetes
):
    frame = diabetes.assign(
        region=["north", "south"] * (len(diabetes) // 2) + ["north"] * (len(diabetes) % 2)
    )
    for url, _ in _serve(tmp_path, frame, "ridge"):
        row = dict.fromkeys(FEATURES, 0.01) | {"region": "north"}
        response = requests.post(f"{url}/explain", json={"features": row}, timeout=TIMEOUT)
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert "version 1 (ridge) cannot be explained" in message
        assert "linear_regression" in message and "logistic_regression" in message
        assert "random_forest" in message  # the tree ensembles, through shap


def test_a_bad_row_is_the_same_422_as_predict(linear):
    url, _ = linear
    body = {"features": {"age": "old"}}
    explained = requests.post(f"{url}/explain", json=body, timeout=TIMEOUT)
    predicted = requests.post(f"{url}/predict", json=body, timeout=TIMEOUT)
    assert explained.status_code == predicted.status_code == 422
    assert explained.json() == predicted.json()
