"""Training cannot take the host down (DESIGN.md guarantee 9) nor leave a run `running` forever.

Real trainer processes killed with real signals, real SQLite, real lake files; memory read with
/proc for the running process, bounds generous.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.state.db import StateDB
from scoring.lifecycle.dataset import load_training_data
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import begin_retrain, execute, run_retrain
from scoring.lifecycle.runs import RunStore
from scoring.models.factory import open_model
from scoring.service.runtime import open_intake, reap_interrupted
from scoring.settings import Settings
from scoring.testing.memory import rss_growth

from .conftest import SAMPLE, make_settings, wait_for
from .test_e2e_serve import cli_env


def registry_of(settings: Settings) -> Registry:
    return Registry(settings.models_dir, StateDB.at(settings.db_path))


def take_sample(settings: Settings) -> None:
    assert open_intake(settings)[2].take_copy(SAMPLE, "train").state == "normalized"


def write_lake(settings: Settings, name: str, frame: pd.DataFrame, file_id: int) -> Path:
    """Put a lake file in place as ingest would (provenance columns included)."""
    lake = settings.data_dir / "lake" / "train"
    lake.mkdir(parents=True, exist_ok=True)
    frame = frame.assign(_file_id=file_id, _row=np.arange(len(frame)))
    path = lake / f"{name}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def classes(n: int, share_b: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    label = np.where(np.arange(n) < int(n * share_b), "b", "a")
    rng.shuffle(label)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "target": label})


# -- max_rows ---------------------------------------------------------------------------------


def test_a_classifier_sample_is_stratified_and_reproducible(settings):
    write_lake(settings, "one", classes(6000, 0.1, 1), 1)
    write_lake(settings, "two", classes(4000, 0.1, 2), 2)
    lake = settings.data_dir / "lake" / "train"

    def load(seed: int) -> pd.DataFrame:
        data = load_training_data(
            lake, target="target", max_rows=500, stratify=True, random_state=seed
        )
        assert data.sampled_from == 10_000 and data.file_ids == [1, 2]
        return data.frame

    frame = load(7)
    assert frame["target"].value_counts().to_dict() == {"a": 450, "b": 50}
    pd.testing.assert_frame_equal(frame, load(7))
    assert not frame.equals(load(8))
    assert set(frame.columns) == {"x1", "x2", "x3", "target", "_file_id"}


def test_unlabelled_rows_are_neither_counted_nor_sampled(settings):
    frame = classes(300, 0.5, 3)
    frame.loc[:99, "target"] = None
    write_lake(settings, "part", frame, 1)
    data = load_training_data(
        settings.data_dir / "lake" / "train",
        target="target",
        features=["x1"],
        max_rows=50,
        stratify=True,
    )
    assert data.sampled_from == 200 and len(data.frame) == 50
    assert data.frame["target"].notna().all() and list(data.frame.columns) == [
        "x1",
        "target",
        "_file_id",
    ]


def test_features_come_back_in_the_order_asked_whatever_the_file_order(settings):
    write_lake(settings, "one", classes(50, 0.5, 6), 1)
    lake = settings.data_dir / "lake" / "train"
    for max_rows in (None, 20):
        data = load_training_data(lake, target="target", features=["x3", "x1"], max_rows=max_rows)
        assert list(data.frame.columns) == ["x3", "x1", "target", "_file_id"]
        assert (len(data.frame), data.sampled_from) == (max_rows or 50, 50)


def test_a_retrain_reads_at_most_max_rows_and_records_the_sample(tmp_path):
    settings = make_settings(
        tmp_path, model={"estimator": "logistic_regression"}, training={"max_rows": 400}
    )
    write_lake(settings, "big", classes(3000, 0.2, 4), 1)
    registry = registry_of(settings)
    run = run_retrain(settings, registry, "cli")
    assert (run.state, run.rows, run.sampled_from) == ("succeeded", 400, 3000)
    assert run.peak_rss_mb is not None and run.peak_rss_mb > 10  # a Python with sklearn loaded
    assert run.trainer_pid not in (None, os.getpid())
    card = registry.card(run.version)["training_data"]
    assert (card["rows"], card["sampled_from"], card["max_rows"]) == (400, 3000, 400)
    assert card["target"] == {"a": 320, "b": 80}


@pytest.mark.slow
def test_the_calling_process_does_not_hold_the_training_data(tmp_path):
    """3M rows x 6 columns is ~150 MB as floats: the caller's RSS must not see it."""
    settings = make_settings(tmp_path, training={"max_rows": 2000})
    rng = np.random.default_rng(5)
    for part in range(3):
        x = rng.normal(size=(1_000_000, 5))
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
        write_lake(settings, f"p{part}", frame.assign(target=x.sum(axis=1)), part + 1)
    grew_mb, _, run = rss_growth(lambda: run_retrain(settings, registry_of(settings), "cli"))
    assert (run.state, run.rows, run.sampled_from) == ("succeeded", 2000, 3_000_000)
    assert grew_mb < 60, f"the calling process grew by {grew_mb:.0f} MB"


# -- a trainer that dies ----------------------------------------------------------------------


def test_a_killed_trainer_is_a_failed_run_and_the_caller_carries_on(settings):
    take_sample(settings)
    registry = registry_of(settings)
    assert run_retrain(settings, registry, "cli").version == 1
    store = RunStore(StateDB.at(settings.db_path))
    pending = begin_retrain(settings, "api", force=True)
    records = []
    worker = threading.Thread(target=lambda: records.append(execute(pending, registry)))
    worker.start()
    pid = wait_for(lambda: store.get(pending.run_id).trainer_pid, timeout=60, interval=0.01)
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=120)
    [run] = records
    assert run.state == "failed"
    assert run.error.startswith("trainer killed by SIGKILL (out of memory?)")
    assert run.peak_rss_mb is not None
    assert registry.champion_version() == 1 and [m.version for m in registry.list()] == [1]
    again = run_retrain(settings, registry, "cli", force=True)  # the lock was released
    assert (again.state, again.version) == ("succeeded", 2)


# -- a run left `running` by a process killed with kill -9 -------------------------------------


@pytest.mark.slow
def test_a_run_left_running_by_a_killed_process_is_marked_interrupted(tmp_path):
    data = tmp_path / "data"
    env = cli_env(data, 0)  # bootstraps the sample into the lake
    said = tmp_path / "cli.log"
    with said.open("wb") as out:
        cli = subprocess.Popen(
            [sys.executable, "-m", "scoring", "train"], env=env, stdout=out, stderr=out
        )
    store = RunStore(StateDB.at(data / "state.db"))

    def trainer() -> int | None:
        if cli.poll() is not None:  # it ended before its trainer was seen: say what it said
            raise AssertionError(f"train exited {cli.returncode}: {said.read_text()[-3000:]}")
        if not (data / "state.db").exists():
            return None
        runs = store.list()
        if runs and runs[0].state not in ("queued", "running"):  # it ended untrained
            raise AssertionError(f"the run ended {runs[0]}: {said.read_text()[-3000:]}")
        return runs[0].trainer_pid if runs else None

    child = wait_for(trainer, timeout=120, interval=0.01, what="the run's trainer process")
    cli.kill()  # kill -9 of the process that owns the run; its trainer is orphaned
    cli.wait()
    [run] = store.list()  # a reader finds the lock free
    assert run.state == "failed" and run.error.startswith("interrupted")
    assert run.reason == "interrupted"
    wait_for(
        lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie",
        timeout=30,
    )  # the orphaned trainer notices and ends


def test_start_up_marks_runs_of_dead_processes_interrupted(settings):
    store = RunStore(StateDB.at(settings.db_path))
    orphan = store.create("schedule", state="running")
    with closing(sqlite3.connect(settings.db_path)) as conn:  # as the dead process left it
        assert conn.execute("SELECT state FROM runs WHERE id=?", (orphan,)).fetchone()[0] == (
            "running"
        )
    reap_interrupted(open_model(settings))
    with closing(sqlite3.connect(settings.db_path)) as conn:
        row = conn.execute("SELECT state, error FROM runs WHERE id=?", (orphan,)).fetchone()
    assert row[0] == "failed" and row[1].startswith("interrupted")


def test_a_live_retrain_is_never_marked_interrupted(settings):
    take_sample(settings)
    pending = begin_retrain(settings, "api")
    try:
        store = RunStore(StateDB.at(settings.db_path))
        assert store.reap() == 0
        assert store.get(pending.run_id).state == "queued"
    finally:
        assert execute(pending, registry_of(settings)).state == "succeeded"


def test_the_trainer_gets_the_same_settings_without_the_server_section(tmp_path):
    from scoring.lifecycle.trainer import settings_to_json
    from scoring.settings import load_settings

    settings = make_settings(
        tmp_path,
        model={"features": ["bmi"], "params": {"alpha": 0.5}, "estimator": "ridge"},
        training={"max_rows": 77, "bootstrap_data": str(SAMPLE)},
        server={"api_keys": ["secret-key-0123456789"]},
    )
    flat = settings_to_json(settings)
    assert "server" not in flat and "secret" not in str(flat)
    again = load_settings(None, env={}, overrides=flat)
    for section in ("paths", "model", "training", "scoring", "ingest"):
        assert getattr(again, section) == getattr(settings, section)
