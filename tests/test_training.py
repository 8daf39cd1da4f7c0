"""Pipeline building, every estimator end to end, metrics, and the promotion rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scoring.inference.rows import record_to_array
from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.promotion import decide

from .conftest import make_settings


def toy(task: str, n: int = 240, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
        }
    )
    frame.loc[::17, "x1"] = np.nan
    frame.loc[::13, "colour"] = None
    signal = 2 * frame["x1"].fillna(0) + (frame["colour"] == "red") * 1.5
    if task == "regression":
        frame["target"] = signal + rng.normal(scale=0.1, size=n)
    else:
        labels = np.array(["no", "yes", "maybe"][:classes])
        frame["target"] = labels[
            np.digitize(signal, np.quantile(signal, [1 / classes, 2 / classes])[: classes - 1])
        ]
    return frame


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_trains_and_predicts(tmp_path, name):
    from scoring.lifecycle.training import train

    spec = ESTIMATORS[name]
    settings = make_settings(tmp_path, model={"estimator": name})
    result = train(toy(spec.task), settings.model)
    expected = (
        {"mae", "mse", "rmse", "r2"}
        if spec.task == "regression"
        else {
            "accuracy",
            "f1",
            "roc_auc",
        }
    )
    assert set(result.metrics) == expected
    assert all(not math.isnan(v) for v in result.metrics.values())
    model = LoadedModel.build(
        "1", result.pipeline, {"schema": result.schema.to_dict(), "estimator": name}
    )
    row = record_to_array({"x1": 0.3, "x2": None, "colour": "purple"}, model.schema)
    out = model.predict_row(row)
    assert out["model_version"] == "1"
    if spec.task == "classification":
        assert out["prediction"] in ("no", "yes")
        assert set(out["probabilities"]) == {"no", "yes"}
        assert sum(out["probabilities"].values()) == pytest.approx(1.0)
    else:
        assert isinstance(out["prediction"], float)


def test_multiclass_metrics(tmp_path):
    from scoring.lifecycle.training import train

    settings = make_settings(tmp_path, model={"estimator": "logistic_regression"})
    result = train(toy("classification", classes=3), settings.model)
    assert result.schema.classes == ("maybe", "no", "yes")
    assert 0 <= result.metrics["roc_auc"] <= 1


def test_regression_metrics_are_consistent(tmp_path, diabetes):
    from scoring.lifecycle.training import train

    settings = make_settings(tmp_path)
    result = train(diabetes, settings.model)
    m = result.metrics
    assert m["rmse"] == pytest.approx(math.sqrt(m["mse"]))
    assert 0.3 < m["r2"] < 0.7  # the classic tutorial's figure for linear regression on diabetes
    assert result.train_rows + len(result.holdout.frame) == len(diabetes)


def test_same_settings_same_model(tmp_path, diabetes):
    from scoring.lifecycle.training import train

    settings = make_settings(
        tmp_path, model={"estimator": "random_forest", "params": {"n_estimators": 5}}
    )
    a = train(diabetes, settings.model).metrics
    b = train(diabetes, settings.model).metrics
    assert a == b


def test_too_few_rows_is_a_clear_error(tmp_path, diabetes):
    from scoring.lifecycle.training import train

    with pytest.raises(ValueError, match="too few labelled rows"):
        train(diabetes.head(1), make_settings(tmp_path).model)


def test_fast_path_matches_pipeline(tmp_path, diabetes):
    from scoring.lifecycle.training import train

    for name in ("linear_regression", "ridge", "lasso", "elastic_net"):
        settings = make_settings(tmp_path, model={"estimator": name})
        result = train(diabetes, settings.model)
        model = LoadedModel.build(
            "1", result.pipeline, {"schema": result.schema.to_dict(), "estimator": name}
        )
        assert model.fast is not None, name
        X = diabetes[result.schema.names].to_numpy()
        X[::7, 2] = np.nan
        for row in X[:50]:
            got = model.predict_row(row.reshape(1, -1))["prediction"]
            assert got == pytest.approx(
                float(result.pipeline.predict(row.reshape(1, -1))[0]), rel=1e-9
            )


def test_fast_path_not_used_for_trees_or_categories(tmp_path):
    from scoring.lifecycle.training import train

    settings = make_settings(
        tmp_path, model={"estimator": "random_forest", "params": {"n_estimators": 3}}
    )
    result = train(toy("regression"), settings.model)
    model = LoadedModel.build(
        "1", result.pipeline, {"schema": result.schema.to_dict(), "estimator": "random_forest"}
    )
    assert model.fast is None
    settings = make_settings(tmp_path)
    result = train(toy("regression"), settings.model)  # has a categorical column
    model = LoadedModel.build(
        "1", result.pipeline, {"schema": result.schema.to_dict(), "estimator": "linear_regression"}
    )
    assert model.fast is None


@pytest.mark.parametrize(
    ("rule", "tolerance", "new", "champion", "promote", "reason"),
    [
        ("always", 0.0, {"r2": 0.1}, {"r2": 0.9}, True, "promotion rule is 'always'"),
        ("never", 0.0, {"r2": 0.9}, {"r2": 0.1}, False, "'never'"),
        ("never", 0.0, {"r2": 0.9}, None, False, "'never'"),
        ("not_worse", 0.0, {"r2": 0.5}, None, True, "no champion yet"),
        ("not_worse", 0.0, {"r2": 0.5}, {"r2": 0.5}, True, "not worse"),
        ("not_worse", 0.0, {"r2": 0.49}, {"r2": 0.5}, False, "worse by 0.0100"),
        ("not_worse", 0.02, {"r2": 0.49}, {"r2": 0.5}, True, "not worse"),
        ("not_worse", 0.0, {"r2": math.nan}, {"r2": 0.5}, False, "could not be measured"),
        ("not_worse", 0.0, {"r2": 0.1}, {"r2": math.nan}, True, "champion's r2"),
    ],
)
def test_promotion_rule(rule, tolerance, new, champion, promote, reason):
    decision = decide(rule, tolerance, "regression", new, champion)
    assert decision.promote is promote
    assert reason in decision.reason


def test_classification_promotes_on_f1():
    assert not decide("not_worse", 0.0, "classification", {"f1": 0.7}, {"f1": 0.8}).promote
