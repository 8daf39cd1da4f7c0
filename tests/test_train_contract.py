"""A training drop can never change what clients must send (DESIGN.md guarantee 8).

Real intake, real lake, real SQLite and a real trainer process; one end-to-end test drops the
issue's foo/bar/baz file into a running `dropscore serve`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from scoring.api.app import create_app
from scoring.lifecycle.promotion import decide
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.service.runtime import ingest_config, open_intake
from scoring.settings import Settings
from scoring.testing.load import Load

from .conftest import SAMPLE, make_settings, wait_for
from .test_e2e_serve import NAMED, serve  # noqa: F401 - the fixture

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def take(settings: Settings, path: Path) -> object:
    """Ingest a file the way a drop is taken, with the service's hooks; its ledger row after."""
    _config, ledger, intake = open_intake(settings)
    return ledger.get(intake.take_copy(path, "train").id)


def csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def registry_of(settings: Settings) -> Registry:
    return Registry(settings.models_dir, StateDB.at(settings.db_path))


def error_record(settings: Settings, record) -> dict:
    path = settings.data_dir / "quarantine" / f"{record.id}__{record.original_name}.error.json"
    return json.loads(path.read_text())


def test_a_drop_without_the_target_is_quarantined_naming_its_columns(settings, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("foo,bar,baz\n1,2,3\n")
    record = take(settings, path)
    assert record.state == "quarantined"
    body = error_record(settings, record)
    assert body["code"] == "missing_training_columns"
    assert "target column 'target'" in body["message"]
    assert "foo, bar, baz" in body["message"]
    assert list((settings.data_dir / "lake" / "train").glob("*.parquet")) == []


def test_a_drop_lacking_a_champion_feature_is_quarantined(settings, tmp_path, diabetes):
    take(settings, SAMPLE)
    assert run_retrain(settings, registry_of(settings), "cli").promoted
    partial = csv(tmp_path, "partial.csv", diabetes.drop(columns=["bmi", "s6"]))
    record = take(settings, partial)
    assert record.state == "quarantined"
    body = error_record(settings, record)
    assert "feature columns bmi, s6" in body["message"] and "target" not in body["message"][:40]
    assert body["expected"].startswith("target, age, sex, bmi")


def test_configured_features_decide_what_a_drop_must_hold(tmp_path, diabetes):
    settings = make_settings(tmp_path, model={"features": ["BMI", "bp"]})
    without_age = csv(tmp_path, "no_age.csv", diabetes.drop(columns=["age"]))
    assert take(settings, without_age).state == "normalized"  # age is not a feature
    without_bp = csv(tmp_path, "no_bp.csv", diabetes.drop(columns=["bp"]).head(50))
    assert take(settings, without_bp).state == "quarantined"


def test_extra_columns_stay_in_the_lake_but_never_become_features(settings, tmp_path, diabetes):
    registry = registry_of(settings)
    take(settings, SAMPLE)
    assert run_retrain(settings, registry, "cli").version == 1
    extra = diabetes.assign(foo=range(len(diabetes)), colour="red")
    record = take(settings, csv(tmp_path, "extra.csv", extra))
    assert record.state == "normalized"
    assert "foo" in pq.read_schema(settings.data_dir / record.lake_path).names  # kept
    run = run_retrain(settings, registry, "schedule")
    assert run.state == "succeeded" and run.rows == 2 * len(diabetes)
    names = [f["name"] for f in registry.card(run.version)["schema"]["features"]]
    assert names == FEATURES


def test_a_first_model_takes_only_the_columns_every_drop_shares(settings, tmp_path, diabetes):
    take(settings, csv(tmp_path, "a.csv", diabetes.assign(foo=1.5)))
    take(settings, csv(tmp_path, "b.csv", diabetes.head(100)))
    registry = registry_of(settings)
    run = run_retrain(settings, registry, "cli")
    assert run.state == "succeeded"
    assert [f["name"] for f in registry.card(1)["schema"]["features"]] == FEATURES


def test_a_lake_file_from_before_the_check_is_left_out_and_named(settings, tmp_path, diabetes):
    config = ingest_config(settings)
    config.make_dirs()
    bare = Intake(config, Ledger(StateDB.at(config.db_path)))  # no hook: a drop taken before
    take(settings, SAMPLE)
    bad = bare.take_copy(csv(tmp_path, "odd.csv", diabetes.drop(columns=["target"])), "train")
    assert bad.state == "normalized"
    registry = registry_of(settings)
    run = run_retrain(settings, registry, "cli")
    assert run.state == "succeeded" and run.rows == len(diabetes)
    skipped = registry.card(run.version)["training_data"]["skipped_files"]
    assert skipped == {Path(bad.lake_path).name: "lacks target"}


@pytest.mark.parametrize("rule", ["not_worse", "always"])
def test_a_challenger_with_another_schema_waits_for_a_person(tmp_path, rule):
    settings = make_settings(tmp_path, training={"promote": rule})
    registry = registry_of(settings)
    take(settings, SAMPLE)
    assert run_retrain(settings, registry, "cli").version == 1
    narrower = make_settings(
        tmp_path, model={"features": ["bmi", "bp"]}, training={"promote": rule}
    )
    run = run_retrain(narrower, registry, "schedule")
    assert (run.state, run.version, run.promoted) == ("succeeded", 2, False)
    assert "input schema differs" in run.reason and "drops age, sex" in run.reason
    record = registry.get(2)
    assert record.status == "challenger" and record.reason == run.reason
    assert registry.champion_version() == 1
    client = create_app(settings, registry=registry).test_client()
    promoted = client.post("/models/2/promote")
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    assert registry.champion_version() == 2


def test_the_gate_names_the_schema_change_before_any_metric():
    decision = decide("always", 0.0, "regression", {"r2": 0.9}, None, schema_change="x differs")
    assert not decision.promote and decision.waits and "x differs" in decision.reason
    assert decide("always", 0.0, "regression", {"r2": 0.9}, None).promote


@pytest.mark.slow
def test_the_issue_drop_is_quarantined_and_predict_keeps_answering(serve, tmp_path):  # noqa: F811
    """The issue's drop lands in a serving process while 4 clients call /predict throughout."""
    server = serve("serve")
    assert server.ready()["model_version"] == "1"
    load = Load(server.url, threads=4).start()
    try:
        inbox = tmp_path / "data" / "inbox" / "train"
        (tmp_path / "x.csv.tmp").write_text("foo,bar,baz\n1,2,3\n")
        (tmp_path / "x.csv.tmp").rename(inbox / "x.csv")
        quarantine = tmp_path / "data" / "quarantine"
        [record] = wait_for(lambda: list(quarantine.glob("*x.csv.error.json")), timeout=60)
        body = json.loads(record.read_text())
        assert body["code"] == "missing_training_columns" and "'target'" in body["message"]
        started = requests.post(server.url + "/train?force=true", timeout=5)
        assert started.status_code == 202
        url = server.url + started.json()["url"]
        run = wait_for(
            lambda: (
                (r := requests.get(url, timeout=5).json())["state"] not in ("queued", "running")
                and r
            ),
            timeout=120,
        )
    finally:
        answers = load.stop()
    assert run["state"] == "succeeded", run
    failed = [a for a in answers if not a.ok]
    assert not failed, failed[:5]  # zero failed client requests across the drop and the retrain
    assert len(answers) > 20
    answer = requests.post(server.url + "/predict", json={"features": NAMED}, timeout=5)
    assert answer.status_code == 200, answer.text
    sample = {"file": ("s.csv", SAMPLE.read_bytes(), "text/csv")}
    scored = requests.post(server.url + "/score-file", files=sample, timeout=30)
    assert scored.status_code == 200 and scored.headers["X-Rows-Failed"] == "0"
