"""The reaction (issue 20, point 6): retrains queued on drift or fallen metrics, and the gate's
record of how a challenger's training data differs from the champion's.

The runs store, the registry and the runner are the real ones on a temporary data folder; a
queued run is executed on the test's thread (an empty training lake: it ends skipped at once).
"""

from __future__ import annotations

import pandas as pd
import pytest

from scoring.inference.dataplane import Scored
from scoring.lifecycle.gate import data_change
from scoring.lifecycle.runner import PendingRun, execute
from scoring.models.factory import open_model
from scoring.models.model import Model
from scoring.monitoring.reaction import Reaction, drifted_drops
from scoring.monitoring.reference import store_profile, training_profile

from .conftest import make_settings, register_trained


def run_here(pending: PendingRun, model: Model) -> object:
    """Execute a queued run on the caller's thread, through the real runner."""
    return execute(pending, model.registry)


@pytest.fixture
def model(tmp_path, diabetes: pd.DataFrame) -> Model:
    settings = make_settings(
        tmp_path, monitoring={"retrain_on_drift": True, "cooldown_minutes": 60}
    )
    found = open_model(settings)
    version, result = register_trained(settings, found.registry, diabetes)
    store_profile(found.artifacts, version, training_profile(diabetes, result, version))
    return found


def test_each_trigger_queues_once_per_cooldown(model: Model):
    reaction = Reaction(model.settings.monitoring, run_here)
    first = reaction.drifted(model, "a window drifted")
    assert first is not None
    assert reaction.drifted(model, "another window drifted") is None  # in the cooldown
    performance = reaction.underperformed(model, "r2 fell")  # its own cooldown
    assert performance is not None
    assert reaction.underperformed(model, "r2 fell again") is None
    runs = model.runs.list()
    assert [(r.trigger, r.done) for r in runs] == [("performance", True), ("drift", True)]


def test_nothing_is_queued_without_retrain_on_drift(tmp_path, diabetes):
    found = open_model(make_settings(tmp_path))
    register_trained(found.settings, found.registry, diabetes)
    reaction = Reaction(found.settings.monitoring, run_here)
    assert reaction.drifted(found, "drifted") is None
    assert reaction.underperformed(found, "fell") is None
    assert found.runs.list() == []


def test_a_drifted_drop_queues_a_drift_run_and_a_stable_one_does_not(model: Model):
    observe = drifted_drops(lambda name: model, Reaction(model.settings.monitoring, run_here))
    record = {"model_version": 1, "source": "drop", "rows": 500, "report": {}}
    model.drift.add(**record, verdict="stable", file_id=7)
    model.drift.add(**{**record, "report": {"drifted_features": ["bmi"]}}, verdict="drifted",
                    file_id=8)  # fmt: skip
    observe(Scored("default", "1", "drop", 500, 1.0, file_id=7))
    assert model.runs.list() == []
    observe(Scored("default", "1", "drop", 500, 1.0, file_id=8))
    [run] = model.runs.list()
    assert run.trigger == "drift"


def test_the_gate_record_names_the_features_whose_training_data_moved(model, diabetes):
    monitoring = model.settings.monitoring
    shifted = diabetes.assign(bmi=lambda f: f.bmi + 3 * f.bmi.std())
    moved = data_change(model.registry, 1, shifted, monitoring)
    assert moved is not None
    assert (moved["champion"], moved["verdict"], moved["drifted_features"]) == (
        "1", "drifted", ["bmi"]
    )  # fmt: skip
    first = moved["features"][0]
    assert first["name"] == "bmi" and first["drifted"] and first["psi"] > monitoring.psi_threshold
    same = data_change(model.registry, 1, diabetes, monitoring)
    assert same is not None and same["verdict"] == "stable" and same["drifted_features"] == []


def test_a_champion_without_a_profile_is_not_compared_and_none_is_nothing(tmp_path, diabetes):
    found = open_model(make_settings(tmp_path))
    register_trained(found.settings, found.registry, diabetes)
    monitoring = found.settings.monitoring
    told = data_change(found.registry, 1, diabetes, monitoring)
    assert told == {"champion": "1", "verdict": "not_compared",
                    "reason": "the champion has no training profile"}  # fmt: skip
    assert data_change(found.registry, None, diabetes, monitoring) is None


def test_a_retrain_keeps_the_data_change_in_its_gate_record(tmp_path, diabetes):
    from scoring.lifecycle.outcome import apply
    from scoring.lifecycle.retrain import train_and_decide

    from .test_trainer import write_lake

    settings = make_settings(tmp_path)
    opened = open_model(settings)
    write_lake(settings, "first", diabetes, 1)
    apply(train_and_decide(settings, opened.registry, trigger="cli"), opened.registry)
    assert opened.registry.card(1)["decision"]["data_change"] is None  # no champion to compare
    moved = diabetes.assign(bmi=lambda f: f.bmi + 3 * f.bmi.std())
    write_lake(settings, "second", moved, 2)
    outcome = train_and_decide(settings, opened.registry, trigger="cli")
    change = opened.registry.card(outcome.version)["decision"]["data_change"]
    assert (change["champion"], change["verdict"]) == ("1", "drifted")
    assert change["drifted_features"][0] == "bmi"


class Overtaken:
    """A model's real run store, read by a process that another one overtakes.

    The first cooldown read answers what the store held, and then another process's reaction
    queues and finishes its run, as on a replica reacting to the same window a moment sooner.
    """

    def __init__(self, runs, overtake) -> None:
        self.runs, self.overtake = runs, overtake

    def last_queued_at(self, trigger: str):
        """Answer the store's value, then let the other process queue its run."""
        last = self.runs.last_queued_at(trigger)
        overtake, self.overtake = self.overtake, None
        if overtake is not None:
            overtake()
        return last

    def __getattr__(self, name: str):
        return getattr(self.runs, name)


def test_a_reaction_overtaken_between_its_cooldown_read_and_the_lock_queues_nothing(model):
    from dataclasses import replace

    other = Reaction(model.settings.monitoring, run_here)  # another replica, the same store
    slow = replace(model, runs=Overtaken(model.runs, lambda: other.drifted(model, "window")))
    assert Reaction(model.settings.monitoring, run_here).drifted(slow, "window") is None
    assert [(r.trigger, r.done) for r in model.runs.list()] == [("drift", True)]
