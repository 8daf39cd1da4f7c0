"""Drift on live traffic, in windows, and the reaction it triggers (issue 20, points 3 and 6).

A real server answers ``/predict``; the windows' thread judges what it answered against the
version's stored profile and records each closed window; ``GET /models/<name>/drift`` shows
the timeline. With ``retrain_on_drift`` a drifted window queues one ``drift`` run through the
real runner, and a second drifted window within the cooldown queues none.
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from scoring.api.app import create_app
from scoring.models.factory import open_model
from scoring.monitoring.live import LIVE_KEY
from scoring.monitoring.reaction import in_cooldown
from scoring.monitoring.reference import store_profile, training_profile

from ._server import serving
from .conftest import make_settings, register_trained, wait_for

WINDOW = {"window_rows": 200, "window_seconds": 3600, "min_rows": 100}


def _served(tmp_path, diabetes: pd.DataFrame, profile: bool = True, **monitoring):
    settings = make_settings(tmp_path, monitoring={**WINDOW, **monitoring})
    model = open_model(settings)
    version, result = register_trained(settings, model.registry, diabetes)
    if profile:
        store_profile(model.artifacts, version, training_profile(diabetes, result, version))
    return model, create_app(settings)


def _send(url: str, rows: pd.DataFrame, per_request: int = 50) -> None:
    for start in range(0, len(rows), per_request):
        chunk = rows.iloc[start : start + per_request].to_dict(orient="records")
        got = requests.post(f"{url}/predict", json={"instances": chunk}, timeout=30)
        assert got.status_code == 200, got.text


def _windows(url: str, count: int) -> list[dict]:
    def found():
        timeline = requests.get(f"{url}/models/default/drift", timeout=30).json()["timeline"]
        windows = [e for e in timeline if e["source"] == "window"]
        return len(windows) >= count and windows

    return wait_for(found, timeout=60, what=f"{count} closed window(s)")


def test_a_window_of_training_like_rows_is_stable_and_a_shifted_one_drifted(tmp_path, diabetes):
    # 400 rows: in windows of 200 the sampling noise alone takes a feature's JS past 0.1
    _model, app = _served(tmp_path, diabetes, window_rows=400)
    features = diabetes.drop(columns="target")
    shifted = features.iloc[:400].assign(bmi=lambda f: f.bmi + 3 * f.bmi.std())
    with serving(app) as url:
        _send(url, features.iloc[:400])
        [first] = _windows(url, 1)
        _send(url, shifted)
        newest, _ = _windows(url, 2)
        app.extensions[LIVE_KEY].stop()
    assert (first["verdict"], first["rows"], first["model_version"]) == ("stable", 400, "1")
    assert newest["verdict"] == "drifted"
    assert newest["drifted_features"][0] == "bmi"
    record = requests_free_record(app, newest["id"])
    assert record["source"] == "window" and record["rows"] == 400


def requests_free_record(app, record_id: int) -> dict:
    """Read one whole record through the API's own route (the test client: the server is gone)."""
    got = app.test_client().get(f"/models/default/drift/{record_id}")
    assert got.status_code == 200, got.text
    return got.json


def test_a_version_without_a_profile_gets_a_not_compared_window_saying_why(tmp_path, diabetes):
    _model, app = _served(tmp_path, diabetes, profile=False)
    with serving(app) as url:
        _send(url, diabetes.drop(columns="target").iloc[:200])
        [window] = _windows(url, 1)
        app.extensions[LIVE_KEY].stop()
    assert window["verdict"] == "not_compared"
    assert "profile" in requests_free_record(app, window["id"])["reason"]


def test_a_drifted_window_queues_one_drift_run_and_not_again_within_the_cooldown(
    tmp_path, diabetes
):
    model, app = _served(tmp_path, diabetes, retrain_on_drift=True, cooldown_minutes=60)
    features = diabetes.drop(columns="target")
    shifted = features.assign(bmi=lambda f: f.bmi + 3 * f.bmi.std())
    with serving(app) as url:
        _send(url, shifted.iloc[:200])
        [first] = _windows(url, 1)
        run = wait_for(lambda: (r := model.runs.last()) and r.done and r, what="the drift run")
        _send(url, shifted.iloc[200:400])
        second, _ = _windows(url, 2)
        app.extensions[LIVE_KEY].stop()
    assert (first["verdict"], second["verdict"]) == ("drifted", "drifted")
    assert run.trigger == "drift"
    assert [r.trigger for r in model.runs.list()] == ["drift"]  # the second: in the cooldown


def test_without_retrain_on_drift_a_drifted_window_queues_nothing(tmp_path, diabetes):
    model, app = _served(tmp_path, diabetes)
    shifted = diabetes.drop(columns="target").assign(bmi=lambda f: f.bmi + 3 * f.bmi.std())
    with serving(app) as url:
        _send(url, shifted.iloc[:200])
        [window] = _windows(url, 1)
        app.extensions[LIVE_KEY].stop()
    assert window["verdict"] == "drifted"
    assert model.runs.list() == []


@pytest.mark.parametrize(
    ("last", "at", "cooling"),
    [
        (None, "2026-12-06T12:00:00+00:00", False),
        ("2026-12-06T11:30:00+00:00", "2026-12-06T12:00:00+00:00", True),
        ("2026-12-06T10:59:59+00:00", "2026-12-06T12:00:00+00:00", False),
    ],
)
def test_the_cooldown_counts_from_the_last_run_of_the_trigger(last, at, cooling):
    assert in_cooldown(last, 60, at) is cooling


def test_windows_hold_exactly_window_rows_and_a_stop_records_the_rest(tmp_path, diabetes):
    from scoring.inference.dataplane import Scored
    from scoring.monitoring.report import Thresholds
    from scoring.monitoring.windows import LiveWindows, WindowOptions

    settings = make_settings(tmp_path)
    model = open_model(settings)
    version, result = register_trained(settings, model.registry, diabetes)
    store_profile(model.artifacts, version, training_profile(diabetes, result, version))
    windows = LiveWindows(lambda name: model, WindowOptions(100, 3600, Thresholds()))
    X = diabetes.drop(columns="target").to_numpy()
    for start in (0, 70, 140):  # three requests of 70 rows, gathered in one pass or several
        rows = X[start : start + 70]
        answers = result.pipeline.predict(rows)
        windows.observe(Scored("default", "1", "predict", 70, 0.0, result.schema, rows, answers))
    windows.stop()
    recorded = sorted(r.rows for r in model.drift.latest(source="window"))
    assert recorded == [10, 100, 100]
    assert windows.dropped == 0


def test_a_window_closes_by_age_without_a_stop(tmp_path, diabetes):
    _model, app = _served(tmp_path, diabetes, window_rows=10_000, window_seconds=0.5)
    with serving(app) as url:
        _send(url, diabetes.drop(columns="target").iloc[:50])
        [window] = _windows(url, 1)  # 50 rows of 10,000: closed by its age
        app.extensions[LIVE_KEY].stop()
    assert window["rows"] == 50
    assert window["verdict"] == "not_compared"  # fewer rows than [monitoring] min_rows
