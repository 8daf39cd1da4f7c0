"""``POST /explain`` for tree ensembles, through SHAP: base + contributions = the model's answer.

Each model is trained by the project's trainer on the bundled diabetes sample plus a categorical
column (so one-hot columns must be summed back into their feature), served by a real server, and
its explanations are checked against what ``/predict`` answers for the same random rows (gaps and
unknown categories included): a regressor's prediction, a forest classifier's probability, a
boosting classifier's log-odds (whose logistic is the probability), a multiclass model's
predicted class. Without shap the same request is a 422 saying how to enable it: checked in a
child process whose import system refuses ``shap`` (a meta-path finder), as a server without
the extra is.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.api.app import create_app
from scoring.inference.explain import TREE_TOLERANCE

from ._server import serving
from .conftest import ROOT, make_settings, register_trained

pytest.importorskip("shap", reason="the shap extra: pip install -e '.[test]'")

TIMEOUT = 60
NUMBERS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
FEATURES = [*NUMBERS, "region"]
REGIONS = ["north", "south", "east"]
VALUE = st.one_of(st.floats(-0.2, 0.2, allow_nan=False), st.floats(-50, 50), st.none())
ROW = st.fixed_dictionaries(
    {**{f: VALUE for f in NUMBERS}, "region": st.sampled_from([*REGIONS, "west", None])}
)
ROWS = st.lists(ROW, min_size=1, max_size=8)
EXAMPLES = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _frame(diabetes: pd.DataFrame, target: str = "regression") -> pd.DataFrame:
    """The sample with a categorical column that carries signal, and the target asked for."""
    frame = diabetes.assign(region=[REGIONS[i % 3] for i in range(len(diabetes))])
    frame["target"] = frame["target"] + np.where(frame["region"] == "north", 40.0, 0.0)
    if target == "binary":
        frame["target"] = np.where(frame["target"] > 150, "high", "low")
    elif target == "multiclass":
        frame["target"] = pd.cut(frame["target"], [-1e9, 110, 190, 1e9], labels=["a", "b", "c"])
        frame["target"] = frame["target"].astype(str)
    return frame


def _serve(tmp_path: Path, frame: pd.DataFrame, estimator: str, **params) -> Iterator[str]:
    from ingest.state.db import StateDB
    from scoring.lifecycle.registry import Registry

    config = make_settings(tmp_path, model={"estimator": estimator, "params": params})
    register_trained(config, Registry(config.models_dir, StateDB.at(config.db_path)), frame)
    with serving(create_app(config)) as url:
        yield url


def _post(url: str, path: str, body: dict) -> dict:
    response = requests.post(f"{url}{path}", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def _adds_up(out: dict) -> None:
    assert list(out["contributions"]) == FEATURES  # one per input feature, one-hots summed
    total = out["base_value"] + math.fsum(out["contributions"].values())
    assert abs(total - out["prediction"]) <= TREE_TOLERANCE * max(1.0, abs(out["prediction"]))


@pytest.fixture(scope="module", params=["random_forest", "gradient_boosting"])
def regressor(request, tmp_path_factory, diabetes) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp(request.param)
    yield from _serve(tmp, _frame(diabetes), request.param, n_estimators=30)


@pytest.fixture(scope="module")
def forest_classifier(tmp_path_factory, diabetes) -> Iterator[str]:
    frame = _frame(diabetes, "binary")
    yield from _serve(tmp_path_factory.mktemp("rfc"), frame, "random_forest_classifier")


@pytest.fixture(scope="module")
def boosting_classifier(tmp_path_factory, diabetes) -> Iterator[str]:
    frame = _frame(diabetes, "binary")
    yield from _serve(tmp_path_factory.mktemp("hgbc"), frame, "hist_gradient_boosting_classifier")


@EXAMPLES
@given(rows=ROWS)
def test_a_regressors_contributions_sum_to_its_prediction(regressor, rows):
    explained = _post(regressor, "/explain", {"instances": rows})
    predicted = _post(regressor, "/predict", {"instances": rows})
    assert explained["space"] == "prediction" and "note" not in explained
    for out, prediction in zip(explained["explanations"], predicted["predictions"], strict=True):
        _adds_up(out)
        assert out["prediction"] == pytest.approx(prediction, rel=1e-12, abs=1e-9)


def test_the_categorical_feature_gets_the_one_hot_columns_share(regressor):
    north, east = (dict.fromkeys(NUMBERS, 0.0) | {"region": r} for r in ("north", "east"))
    rows = _post(regressor, "/explain", {"instances": [north, east]})["explanations"]
    # the region moves the target by 40: its contribution says so, with the right sign
    assert rows[0]["contributions"]["region"] > 5 > -5 > rows[1]["contributions"]["region"]
    assert rows[0]["base_value"] == rows[1]["base_value"]


@EXAMPLES
@given(rows=ROWS)
def test_a_forest_classifier_explains_the_second_class_probability(forest_classifier, rows):
    explained = _post(forest_classifier, "/explain", {"instances": rows})
    predicted = _post(forest_classifier, "/predict", {"instances": rows})
    assert explained["space"] == "probability"
    assert "probability of class 'low'" in explained["note"]
    for out, label, proba in zip(
        explained["explanations"], predicted["predictions"], predicted["probabilities"], strict=True
    ):
        _adds_up(out)
        assert out["label"] == label
        assert out["prediction"] == pytest.approx(proba["low"], abs=1e-9)


@EXAMPLES
@given(rows=ROWS)
def test_a_boosting_classifier_explains_log_odds(boosting_classifier, rows):
    explained = _post(boosting_classifier, "/explain", {"instances": rows})
    predicted = _post(boosting_classifier, "/predict", {"instances": rows})
    assert explained["space"] == "log-odds"
    assert "log-odds of class 'low'" in explained["note"]
    for out, proba in zip(explained["explanations"], predicted["probabilities"], strict=True):
        _adds_up(out)
        odds = out["prediction"]
        logistic = 1 / (1 + math.exp(-odds)) if odds >= 0 else math.exp(odds) / (1 + math.exp(odds))
        assert logistic == pytest.approx(proba["low"], abs=1e-9)


def test_a_multiclass_forest_explains_each_rows_predicted_class(tmp_path, diabetes):
    frame = _frame(diabetes, "multiclass")
    rows = frame[FEATURES].head(30).to_dict(orient="records")
    for url in _serve(tmp_path, frame, "random_forest_classifier", n_estimators=30):
        explained = _post(url, "/explain", {"instances": rows})
        predicted = _post(url, "/predict", {"instances": rows})
        assert explained["space"] == "probability"
        assert "each row's predicted class" in explained["note"]
        bases = set()
        for out, label, proba in zip(
            explained["explanations"],
            predicted["predictions"],
            predicted["probabilities"],
            strict=True,
        ):
            _adds_up(out)
            assert out["class"] == out["label"] == label
            assert out["prediction"] == pytest.approx(proba[label], abs=1e-9)
            bases.add((label, out["base_value"]))
        assert len({label for label, _ in bases}) == len(bases)  # one base per class


# The child: shap cannot be imported (as on a server without the extra); a forest is served
# and explained; the answer is printed for the test to read.
WITHOUT_SHAP = """
import importlib.abc, json, sys

class NoShap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "shap" or name.startswith("shap."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, NoShap())
from pathlib import Path
import pandas as pd, requests
from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from tests._server import serving
from tests.conftest import SAMPLE, make_settings, register_trained

config = make_settings(Path(sys.argv[1]), model={"estimator": "random_forest",
                                                 "params": {"n_estimators": 5}})
registry = Registry(config.models_dir, StateDB.at(config.db_path))
register_trained(config, registry, pd.read_csv(SAMPLE))
with serving(create_app(config)) as url:
    row = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.01)
    explained = requests.post(url + "/explain", json={"features": row}, timeout=60)
    predicted = requests.post(url + "/predict", json={"features": row}, timeout=60)
print(json.dumps({"explain": [explained.status_code, explained.json()],
                  "predict": predicted.status_code, "shap": "shap" in sys.modules}))
"""


def test_without_shap_a_forest_is_a_422_saying_how_to_enable_it(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", WITHOUT_SHAP, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    status, body = answer["explain"]
    assert status == 422, body
    message = body["error"]["message"]
    assert "version 1 (random_forest)" in message
    assert "pip install 'dropscore[shap]'" in message
    assert answer["predict"] == 200 and answer["shap"] is False  # the rest of the server works


def test_shap_is_imported_only_inside_a_function():
    """Serve's start never pays for shap (and numba): no module imports it at its top level."""
    top_level = []
    for path in sorted((ROOT / "scoring").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n == "shap" or n.startswith("shap.") for n in names):
                top_level.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert top_level == []
