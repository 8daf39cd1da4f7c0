"""One trainer process at a time per data folder, whichever model it trains."""

from __future__ import annotations

import fcntl
import threading

from ingest.state.db import StateDB
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.lifecycle.runs import RunStore
from scoring.service.runtime import open_intake

from .conftest import SAMPLE, make_settings, wait_for


def test_a_model_waits_for_another_models_trainer_then_trains(tmp_path):
    settings = make_settings(tmp_path, models={"sugar": {"target": "target"}})
    sugar = settings.for_model("sugar")
    _config, _ledger, intake = open_intake(sugar)
    intake.bootstrap(SAMPLE)
    registry = Registry(sugar.models_dir, StateDB.at(sugar.db_path))
    heard: list[str] = []
    done: list = []
    # another model's trainer holds the slot (as a second process would: an OS lock)
    with open(sugar.layout.trainer_lock, "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        worker = threading.Thread(
            target=lambda: done.append(run_retrain(sugar, registry, "cli", progress=heard.append))
        )
        worker.start()
        wait_for(lambda: "waiting for another model's trainer to finish" in heard)
        run = RunStore(StateDB.at(sugar.db_path)).running()
        assert run is not None and run.state == "running"
        assert run.trainer_pid is None  # no trainer started while the slot is taken
        assert not done
        fcntl.flock(other, fcntl.LOCK_UN)
    worker.join(timeout=300)
    assert done and done[0].state == "succeeded" and done[0].promoted
    assert done[0].trainer_pid is not None
