"""The prediction log: sampled live requests written as Parquet parts in the model's lake.

A real server answers ``/predict`` (and MLflow's ``/invocations``); the parts are read back
through the model's ``Lake``. With ``log_fraction = 0`` no observer is registered at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import requests

from scoring.api.app import create_app
from scoring.inference.dataplane import Scored
from scoring.lifecycle.schema import Feature, FeatureSchema
from scoring.models.factory import open_model
from scoring.monitoring.live import LIVE_KEY
from scoring.monitoring.predlog import (
    LogOptions,
    PredictionLog,
    expired,
    part_name,
    part_time,
    row_ids,
)

from ._server import serving
from .conftest import make_settings, register_trained, wait_for

ALWAYS = {"log_fraction": 1.0, "log_flush_rows": 1_000_000, "log_flush_seconds": 3600}


@pytest.fixture
def rows(diabetes: pd.DataFrame) -> list[dict]:
    return diabetes.drop(columns="target").iloc[:5].to_dict(orient="records")


def _app(tmp_path, diabetes: pd.DataFrame, **monitoring):
    settings = make_settings(tmp_path, monitoring=monitoring)
    model = open_model(settings)
    register_trained(settings, model.registry, diabetes)
    return settings, model, create_app(settings)


def test_every_request_is_logged_with_its_id_features_and_answer(tmp_path, diabetes, rows):
    _settings, model, app = _app(tmp_path, diabetes, **ALWAYS)
    with serving(app) as url:
        given = requests.post(
            f"{url}/predict", json={"features": rows[0]}, headers={"X-Request-Id": "order-17"}
        )
        generated = requests.post(f"{url}/predict", json={"instances": rows[1:3]})
        mlflow = requests.post(
            f"{url}/invocations", json={"dataframe_records": rows[3:5]},
            headers={"X-Request-Id": "batch-9"},
        )  # fmt: skip
        assert [r.status_code for r in (given, generated, mlflow)] == [200, 200, 200]
        assert given.headers["X-Request-Id"] == "order-17"  # echoed
        new_id = generated.headers["X-Request-Id"]  # generated, and echoed
        assert len(new_id) == 32
        assert not model.prediction_log().names()  # nothing written yet: it is buffered
        app.extensions[LIVE_KEY].stop()  # a clean stop writes the buffer
    table = model.prediction_log().read().to_pandas().sort_values(["time", "row"])
    assert list(table["row_id"]) == [
        "order-17", f"{new_id}:0", f"{new_id}:1", "batch-9:0", "batch-9:1"
    ]  # fmt: skip
    assert list(table["request_id"]) == ["order-17", new_id, new_id, "batch-9", "batch-9"]
    assert set(table["model"]) == {"default"} and set(table["version"]) == {"1"}
    assert list(table["protocol"]) == ["predict"] * 3 + ["invocations"] * 2
    features = list(diabetes.columns.drop("target"))
    np.testing.assert_allclose(table[features].to_numpy(), pd.DataFrame(rows)[features])
    answered = [given.json()["prediction"], *generated.json()["predictions"]]
    answered += mlflow.json()["predictions"]
    np.testing.assert_allclose(table["prediction"], answered)
    assert str(table["time"].dt.tz) == "UTC"


def test_a_part_is_written_every_flush_rows_without_a_stop(tmp_path, diabetes, rows):
    _settings, model, app = _app(tmp_path, diabetes, **{**ALWAYS, "log_flush_rows": 2})
    with serving(app) as url:
        for row in rows[:2]:
            assert requests.post(f"{url}/predict", json={"features": row}).status_code == 200
        lake = model.prediction_log()
        wait_for(lambda: lake.names(), what="a log part after two rows")
        app.extensions[LIVE_KEY].stop()
    assert len(lake.read()) == 2


def test_off_registers_no_observer_and_writes_nothing(tmp_path, diabetes, rows):
    _settings, model, app = _app(tmp_path, diabetes)  # log_fraction defaults to 0
    observers = app.extensions["dropscore"].dataplane.observers
    assert app.extensions[LIVE_KEY].log is None
    assert not [o for o in observers if isinstance(getattr(o, "__self__", None), PredictionLog)]
    with serving(app) as url:
        assert requests.post(f"{url}/predict", json={"features": rows[0]}).status_code == 200
    assert not model.prediction_log().names()


def _event(rows: int = 1) -> Scored:
    schema = FeatureSchema((Feature("x", "numeric"),), "y", "regression")
    return Scored("m", "1", "predict", rows, 0.0, schema, np.ones((rows, 1)), np.zeros(rows))


def test_a_full_buffer_drops_and_counts_and_never_waits(tmp_path):
    from ingest.lake.store import Lake

    lake = Lake.local(tmp_path / "log")
    options = LogOptions(1.0, flush_rows=1_000, flush_seconds=3600, max_bytes=1 << 30, max_days=1)
    log = PredictionLog(lambda name: lake, options)
    log.capacity = 3
    log.drain_seconds = 3600  # nothing laid out or written meanwhile: the five meet a full buffer
    for _ in range(5):
        log.observe(_event())
    assert log.dropped == 2
    log.stop()
    assert (log.written, len(lake.read())) == (3, 3)


def test_bulk_events_and_explanations_are_not_logged(tmp_path):
    from ingest.lake.store import Lake

    lake = Lake.local(tmp_path / "log")
    log = PredictionLog(lambda name: lake, LogOptions(1.0, 1_000, 3600, 1 << 30, 1))
    log.observe(Scored("m", "1", "drop", 100, 1.0))
    log.observe(_event()._replace(protocol="explain"))
    log.stop()
    assert lake.names() == []


def test_row_ids_name_one_row_by_the_request_and_many_by_position():
    assert row_ids("r", 1) == ["r"]
    assert row_ids("r", 3) == ["r:0", "r:1", "r:2"]


def test_rotation_removes_parts_past_the_age_then_the_oldest_beyond_the_size():
    at = datetime(2026, 12, 6, 12, tzinfo=UTC)
    names = [part_name(at - timedelta(days=d), 7, i) for i, d in enumerate((40, 3, 2, 1, 0))]
    assert part_time(names[-1]) == at
    sizes = dict.fromkeys(names, 100)
    assert expired(sizes, max_bytes=1000, oldest=at - timedelta(days=30)) == [names[0]]
    assert expired(sizes, max_bytes=250, oldest=at - timedelta(days=30)) == names[:3]
    assert expired({**sizes, "notes.parquet": 10**9}, 10**6, at - timedelta(days=30)) == [names[0]]
