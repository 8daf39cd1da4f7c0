"""The real scheduler over several models: three jobs each, named ids, restarts, removed models."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.state.db import StateDB
from schedules.jobs import load_job_settings, score_sweep
from schedules.scheduler import job_model, job_store, stored_jobs
from scoring.models.job_ids import JOB_KINDS
from scoring.settings import Settings, load_settings

MODELS = {
    "price": 'target = "price"\nestimator = "ridge"\n',
    "churn": 'target = "churned"\nestimator = "logistic_regression"\nschedule = "15 1 * * *"\n',
    "species": 'target = "species"\nestimator = "random_forest_classifier"\n',
}
SIX = sorted(f"{kind}:{name}" for name in MODELS for kind in JOB_KINDS)  # three per model


@pytest.fixture
def write(tmp_path: Path, monkeypatch):
    """Write a settings file with the named models (the jobs reload it by path) and load it."""
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def write(*names: str, default: bool = False) -> Settings:
        text = '[paths]\ndata_dir = "data"\n[training]\nschedule = "0 2 * * *"\n'
        if default:
            text += '[model]\ntarget = "y"\n'
        for name in names:
            text += f"[models.{name}]\n{MODELS[name]}"
        path = tmp_path / "settings.toml"
        path.write_text(text, encoding="utf-8")
        return load_settings(path)

    return write


def stored_ids(settings: Settings) -> list[str]:
    with sqlite3.connect(settings.shared_db_path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM apscheduler_jobs ORDER BY id")]


def test_three_models_register_six_jobs_with_named_ids(write, schedules):
    settings = write("price", "churn", "species")
    schedule = schedules(settings)
    assert sorted(j["id"] for j in schedule.jobs()) == SIX
    assert sorted(schedule.job_ids()) == SIX
    assert stored_ids(settings) == SIX
    jobs = {j.id: j for j in schedule._scheduler.get_jobs()}
    for name in MODELS:  # each job names its model, so the job acts on that model alone
        for kind in JOB_KINDS:
            job = jobs[f"{kind}:{name}"]
            assert job.func_ref == f"schedules.jobs:{kind}"
            assert job.args[-1] == name and job_model(job.id) == name
            assert load_job_settings(*job.args).name == name
    churn = jobs["retrain:churn"].next_run_time
    price = jobs["retrain:price"].next_run_time
    assert (churn.hour, churn.minute) == (1, 15) and (price.hour, price.minute) == (2, 0)
    # the jobs live in the shared state.db, never in a model's own
    assert not any("apscheduler_jobs" in _tables(view.db_path) for view in settings.each_model())


def _tables(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_restart_keeps_exactly_six_jobs(write, schedules):
    settings = write("price", "churn", "species")
    schedules(settings).stop()
    again = schedules(write("price", "churn", "species"))
    assert sorted(j["id"] for j in again.jobs()) == SIX
    assert stored_ids(settings) == SIX
    again.stop()
    assert stored_ids(settings) == SIX


def test_removing_a_model_deletes_its_two_jobs_at_start(write, schedules):
    schedules(write("price", "churn", "species")).stop()
    fewer = write("price", "churn")
    schedule = schedules(fewer)
    expected = sorted(i for i in SIX if not i.endswith(":species"))
    assert sorted(j["id"] for j in schedule.jobs()) == expected
    assert stored_ids(fewer) == expected
    store = job_store(StateDB.at(fewer.shared_db_path))
    try:
        assert sorted(stored_jobs(store)) == expected
    finally:
        store.engine.dispose()


def test_default_keeps_its_plain_ids_beside_named_models(write, schedules):
    settings = write("churn", default=True)
    schedule = schedules(settings)
    assert sorted(j["id"] for j in schedule.jobs()) == sorted(
        [*JOB_KINDS, *(f"{kind}:churn" for kind in JOB_KINDS)]
    )
    plain = schedule._scheduler.get_job("retrain")
    assert load_job_settings(*plain.args).name == "default"


def test_a_models_sweep_job_runs_on_that_model(write):
    settings = write("price", "churn")
    for view in settings.each_model():
        view.layout.make_dirs()
    # nothing to score and no champion: the sweep of either model answers 0, on its own db
    assert score_sweep(str(settings.source), str(settings.data_dir), "churn") == 0
    assert (settings.data_dir / "churn" / "state.db").exists()
