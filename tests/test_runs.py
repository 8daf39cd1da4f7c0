"""Retrain runs: promote, reject, fail, skip, the lock, and POST /train → GET /runs/<id>."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ingest.state.db import StateDB
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import begin_retrain, execute, run_retrain
from scoring.lifecycle.runs import RetrainBusy, RunStore
from scoring.models.factory import open_model
from scoring.service.runtime import open_intake
from scoring.settings import Settings

from .conftest import SAMPLE, assert_error, make_settings, wait_for


def take(settings: Settings, path=SAMPLE) -> None:
    _config, _ledger, intake = open_intake(settings)
    assert intake.take_copy(path, "train").state == "normalized"


@pytest.fixture
def lake(settings: Settings) -> Settings:
    take(settings)
    return settings


def registry_of(settings: Settings) -> Registry:
    return Registry(settings.models_dir, StateDB.at(settings.db_path))


@pytest.fixture(params=["sqlite", "postgresql"])
def lake_on(request, tmp_path) -> Settings:
    """A training lake's settings on either backend (the test runs once per backend): no
    ``[state] url``, or the test's PostgreSQL database."""
    state = {"url": request.getfixturevalue("pg_url")} if request.param == "postgresql" else {}
    settings = make_settings(tmp_path, state=state)
    take(settings)
    return settings


def test_a_first_retrain_promotes_and_is_recorded(lake, registry):
    run = run_retrain(lake, registry, "cli")
    assert (run.state, run.trigger, run.promoted, run.version) == ("succeeded", "cli", True, 1)
    assert run.rows == 442 and run.reason == "no champion yet"
    assert set(run.metrics) == {"mae", "mse", "rmse", "r2"} and run.champion_metrics is None
    assert run.started_at <= run.finished_at and run.error is None
    assert registry.champion_version() == 1
    assert RunStore(StateDB.at(lake.db_path)).get(run.id) == run


def test_a_worse_retrain_is_rejected_and_the_champion_stays(lake, registry, tmp_path):
    run_retrain(lake, registry, "cli")
    worse = make_settings(tmp_path, model={"estimator": "ridge", "params": {"alpha": 100000.0}})
    run = run_retrain(worse, registry, "schedule")
    assert (run.state, run.promoted, run.version, run.champion_version) == (
        "succeeded", False, 2, 1
    )
    assert run.metrics["r2"] < run.champion_metrics["r2"]  # both models measured
    assert "worse by" in run.reason
    assert registry.champion_version() == 1
    assert registry.get(2).status == "rejected"


def test_a_failed_retrain_is_recorded_and_the_champion_keeps_serving(lake, registry, tmp_path):
    run_retrain(lake, registry, "cli")
    broken = make_settings(tmp_path, model={"estimator": "random_forest",
                                            "params": {"max_depth": 10**30}})
    run = run_retrain(broken, registry, "api")
    assert run.state == "failed" and run.promoted is None
    assert run.error.startswith("OverflowError") and "champion keeps serving" in run.reason
    assert registry.champion_version() == 1 and len(registry.list()) == 1
    assert run_retrain(lake, registry, "cli", force=True).state == "succeeded"  # lock released


def test_an_invalid_estimator_parameter_is_a_failed_run_not_a_skip(lake, registry, tmp_path):
    run_retrain(lake, registry, "cli")
    invalid = make_settings(tmp_path, model={"estimator": "ridge", "params": {"alpha": -1.0}})
    run = run_retrain(invalid, registry, "schedule", force=True)
    assert run.state == "failed"
    assert "alpha" in run.error
    assert registry.champion_version() == 1


def test_too_few_rows_is_skipped_with_the_reason(settings, registry):
    run = run_retrain(settings, registry, "schedule")
    assert (run.state, run.skip) == ("skipped", "refused")
    assert run.reason == "0 training rows in the lake; [training] min_rows is 20"
    assert registry.list() == []


def test_an_empty_lake_is_refused_without_starting_a_trainer(settings, registry):
    """Each model of a new many-model service starts with an empty lake: refuse it at once."""
    run = run_retrain(settings, registry, "bootstrap", force=True)
    assert (run.state, run.skip, run.trainer_pid) == ("skipped", "refused", None)
    assert run.reason == "0 training rows in the lake; [training] min_rows is 20"


def test_no_new_data_is_skipped_unless_forced(lake, registry):
    run_retrain(lake, registry, "cli")
    again = run_retrain(lake, registry, "schedule")
    assert (again.state, again.skip, again.version) == ("skipped", "no_new_data", None)
    assert "no new training data since champion v1" in again.reason
    assert len(registry.list()) == 1
    forced = run_retrain(lake, registry, "cli", force=True)
    assert (forced.state, forced.version, forced.force) == ("succeeded", 2, True)


def test_no_new_data_is_recognised_whatever_the_spelling_of_the_target(lake, registry, tmp_path):
    spelled = make_settings(tmp_path, model={"target": " Target"})
    assert run_retrain(spelled, registry, "cli").state == "succeeded"
    again = run_retrain(spelled, registry, "schedule")
    assert (again.state, again.skip) == ("skipped", "no_new_data")


def test_changed_feature_lists_retrain(lake, registry, tmp_path):
    run_retrain(lake, registry, "cli")
    fewer = make_settings(tmp_path, model={"features": ["bmi", "bp"]})
    run = run_retrain(fewer, registry, "schedule")
    assert run.state == "succeeded" and run.version == 2


def test_new_data_or_new_model_settings_retrain(lake, registry, tmp_path, diabetes):
    run_retrain(lake, registry, "cli")
    more = tmp_path / "more.csv"
    diabetes.head(100).assign(target=lambda f: f["target"] + 1).to_csv(more, index=False)
    take(lake, more)
    assert run_retrain(lake, registry, "schedule").state == "succeeded"
    ridge = make_settings(tmp_path, model={"estimator": "ridge"})
    assert run_retrain(ridge, registry, "schedule").version == 3


def test_a_second_retrain_is_refused_while_one_holds_the_lock(lake_on):
    lake, registry = lake_on, open_model(lake_on).registry
    pending = begin_retrain(lake, "api")
    with pytest.raises(RetrainBusy, match=f"run {pending.run_id} \\(api\\)"):
        run_retrain(lake, registry, "cli")
    assert open_model(lake).runs.get(pending.run_id).state == "queued"  # another process's view
    assert execute(pending, registry).state == "succeeded"
    assert run_retrain(lake, registry, "cli", force=True).state == "succeeded"


def test_runs_left_by_a_dead_process_are_marked_failed(lake, registry):
    store = RunStore(StateDB.at(lake.db_path))
    orphan = store.create("schedule", state="running")
    run_retrain(lake, registry, "cli")
    dead = store.get(orphan)
    assert dead.state == "failed" and dead.error.startswith("interrupted")
    assert [r.id for r in store.list()] == [orphan + 1, orphan]  # newest first


# -- over HTTP ------------------------------------------------------------------------------


def wait_done(client, run_id: int) -> dict:
    def poll():
        body = client.get(f"/runs/{run_id}").get_json()
        return body if body["state"] in ("succeeded", "skipped", "failed") else None

    return wait_for(poll, timeout=120)  # a retrain starts a trainer process


def test_post_train_answers_202_then_the_run_ends(lake, client):
    response = client.post("/train")
    assert response.status_code == 202
    run_id = response.get_json()["run_id"]
    assert response.headers["Location"] == f"/runs/{run_id}"
    body = wait_done(client, run_id)
    assert body["state"] == "succeeded" and body["trigger"] == "api"
    assert body["version"] == "1" and body["promoted"] is True and body["rows"] == 442
    again = client.post("/train", json={"force": False})
    assert wait_done(client, again.get_json()["run_id"])["skip"] == "no_new_data"
    forced = client.post("/train?force=true")
    assert wait_done(client, forced.get_json()["run_id"])["version"] == "2"
    listed = client.get("/runs").get_json()["runs"]
    assert [r["id"] for r in listed] == [forced.get_json()["run_id"], again.get_json()["run_id"],
                                         run_id]


def test_post_train_is_409_while_a_retrain_runs(lake, client):
    pending = begin_retrain(lake, "schedule")
    try:
        assert_error(client.post("/train"), 409, "conflict", "already running",
                     f"run {pending.run_id}")
    finally:
        execute(pending, registry_of(lake))
    started = client.post("/train?force=1")
    assert started.status_code == 202
    assert wait_done(client, started.get_json()["run_id"])["state"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "status", "code", "fragment"),
    [
        ("/runs/99", 404, "not_found", "retrain run 99 does not exist"),
        ("/runs/abc", 404, "not_found", ""),
        ("/runs?state=done", 422, "invalid_input", "not a run state"),
        ("/runs?limit=0", 422, "invalid_input", "limit must be"),
    ],
)
def test_run_errors_are_json(client, path, status, code, fragment):
    assert_error(client.get(path), status, code, fragment)


def test_post_train_refuses_a_bad_force_flag(client):
    assert_error(client.post("/train?force=maybe"), 422, "invalid_input", "force")
    assert_error(client.post("/train", data=b"[1]"), 422, "invalid_input", "JSON object")


def test_runs_filter_by_state(settings, registry, client):
    run_retrain(settings, registry, "cli")  # skipped: empty lake
    assert [r["state"] for r in client.get("/runs?state=skipped").get_json()["runs"]] == [
        "skipped"
    ]
    assert client.get("/runs?state=failed").get_json()["runs"] == []


def test_diabetes_fixture_matches_the_sample(diabetes: pd.DataFrame):
    assert len(diabetes) == 442  # the row counts asserted above


# -- the command line -------------------------------------------------------------------------


def test_cli_train_skips_unchanged_data_and_runs_lists_every_run(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from scoring.service.cli import main

    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    path = tmp_path / "settings.toml"
    path.write_text(f'[training]\nbootstrap_data = "{SAMPLE}"\n', encoding="utf-8")

    def run(*args: str):
        return CliRunner().invoke(main, ["--settings", str(path), *args])

    first = run("train")
    assert first.exit_code == 0 and "version 1: promoted to champion" in first.output
    again = run("train")
    assert again.exit_code == 0 and "run 2 skipped: no new training data" in again.output
    forced = run("train", "--force")
    assert "v1 (champion)" in forced.output and "version 2: promoted" in forced.output
    listed = run("runs").output.splitlines()
    assert listed[0].split()[:3] == ["id", "trigger", "state"]
    assert [line.split()[:3] for line in listed[2:]] == [
        ["3", "cli", "succeeded"], ["2", "cli", "skipped"], ["1", "cli", "succeeded"]
    ]
    shown = json.loads(run("runs", "2").output)
    assert shown["skip"] == "no_new_data" and shown["version"] is None
    assert run("runs", "9").exit_code == 1


def test_a_champion_metric_that_cannot_be_measured_is_null_not_nan(tmp_path):
    # one hold-out row (20 × 0.05): r2 is undefined for both models; stored and shown as null
    one_row = make_settings(tmp_path, model={"test_size": 0.05})
    small = tmp_path / "small.csv"
    pd.read_csv(SAMPLE).head(20).to_csv(small, index=False)
    take(one_row, small)
    registry = registry_of(one_row)
    run_retrain(one_row, registry, "cli")
    run = run_retrain(one_row, registry, "cli", force=True)
    assert run.state == "succeeded", run.reason
    assert run.champion_version == 1
    assert run.metrics["r2"] is None and run.champion_metrics["r2"] is None
    json.dumps(RunStore(StateDB.at(one_row.db_path)).get(run.id).to_dict(), allow_nan=False)
