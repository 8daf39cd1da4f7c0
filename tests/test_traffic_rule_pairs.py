"""A canary rule's counts belong to one champion and one challenger, and a decision is recorded
only once taken.

Each case is a real model on SQLite files (registry, traffic and outcomes in its state database)
and the one check the scheduler runs (``check_canary``); the figures are written as the serving
processes write them. The cases are the review's: a canary on ``latest`` whose challenger a
retrain replaces, a champion promoted mid-canary, a promotion that fails, labels from the day a
canary started.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from scoring.models.factory import open_models
from scoring.models.model import Model, Models
from scoring.traffic.check import check_canary
from scoring.traffic.figures import SERVED, DayFigures
from scoring.traffic.rule import PASS, PROMOTE
from scoring.traffic.setting import parse_setting
from scoring.traffic.shadow import today
from scoring.traffic.store import DayKey

from .conftest import make_settings, register_trained


def served(requests: int) -> DayFigures:
    figures = DayFigures()
    for _ in range(requests):
        figures.served(1, 0.004)
    return figures


def answered(model: Model, *versions: int, requests: int = 60) -> None:
    """Add the figures the serving processes would: each version answered ``requests``."""
    model.traffic.add({DayKey(v, today(), SERVED): served(requests) for v in versions})


RESTART = "restart"  # a check's outcome when the counts start again for a new pair


def canary(model: Model, version: int | str, **rule: int) -> None:
    """Set a canary with a rule (the store's own call: its first check records the pair)."""
    body = {"mode": "canary", "version": version, "fraction": 0.5,
            "rule": {"min_requests": 50, **rule}}  # fmt: skip
    model.traffic.set(parse_setting(body), by="ops")


@pytest.fixture
def opened(tmp_path: Path, diabetes: pd.DataFrame) -> tuple[Models, Model, object]:
    settings = make_settings(tmp_path, model={"estimator": "ridge"})
    models = open_models(settings)
    model = models["default"]
    register_trained(settings, model.registry, diabetes, promote=True)  # 1: the champion
    register_trained(settings, model.registry, diabetes, promote=False)  # 2: a challenger
    return models, model, settings


def test_a_new_version_on_latest_starts_the_counts_again(opened, diabetes):
    """A retrain's new version inherits nothing: it is never promoted on its first check."""
    models, model, settings = opened
    canary(model, "latest", passes=3)
    for passes in (1, 2):
        answered(model, 1, 2)
        checked = check_canary(model, models.shared.audit)
        assert checked.evaluation is not None and checked.challenger == 2
        assert (checked.evaluation.outcome, checked.evaluation.passes) == (PASS, passes)
    register_trained(settings, model.registry, diabetes, promote=False)  # 3: the nightly retrain
    answered(model, 1, 3)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None and checked.challenger == 3
    assert checked.evaluation.outcome == RESTART and checked.evaluation.decision is None
    assert "the challenger is now version 3 (was 2)" in checked.evaluation.reason
    assert model.registry.champion_version() == 1 and model.traffic.get().mode == "canary"
    state = model.traffic.rule_state()
    assert state is not None and (state.pair, state.passes, state.failures) == ((1, 3), 0, 0)
    assert state.last is not None and state.last["outcome"] == RESTART
    # the counts and figures start from the restart: v3's first 60 answers are not counted
    answered(model, 1, 3, requests=30)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.outcome == "wait"
    answered(model, 1, 3, requests=30)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None
    assert (checked.evaluation.outcome, checked.evaluation.passes) == (PASS, 1)


def test_a_new_champion_mid_canary_starts_the_counts_again(opened, diabetes):
    """The old challenger is not judged against the new champion with the old one's counts."""
    models, model, settings = opened
    canary(model, 2, passes=2)
    answered(model, 1, 2)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.passes == 1
    register_trained(settings, model.registry, diabetes, promote=True)  # 3: promoted by a person
    answered(model, 3, 2)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.outcome == RESTART
    assert "the champion is now version 3 (was 1)" in checked.evaluation.reason
    assert model.registry.champion_version() == 3  # not demoted by counts earned against 1
    state = model.traffic.rule_state()
    assert state is not None and state.pair == (3, 2) and state.passes == 0


def test_a_failed_promotion_is_recorded_as_failed_and_the_canary_goes_on(opened, tmp_path):
    """The record says what happened: no "promoted" for a promotion the registry refused."""
    models, model, settings = opened
    canary(model, 2, passes=1)
    with sqlite3.connect(settings.db_path) as conn:  # the registry's own transaction fails
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF status ON models WHEN NEW.status ="
            " 'champion' BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
        )
    answered(model, 1, 2)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.decision is None
    assert checked.evaluation.reason.startswith("promotion failed: ")
    assert "the disk is full" in checked.evaluation.reason
    assert model.registry.champion_version() == 1
    assert model.traffic.get().mode == "canary"  # the traffic stays as it was
    state = model.traffic.rule_state()
    assert state is not None and state.last is not None
    assert state.last["decision"] is None and "promotion failed" in state.last["reason"]
    assert not [e for e in models.shared.audit.list(limit=5) if e.endpoint.startswith("traffic.")]
    with sqlite3.connect(settings.db_path) as conn:
        conn.execute("DROP TRIGGER refuse")
    answered(model, 1, 2)
    checked = check_canary(model, models.shared.audit)  # the next check promotes
    assert checked.evaluation is not None and checked.evaluation.decision == PROMOTE
    assert model.registry.champion_version() == 2 and model.traffic.get().mode == "off"
    state = model.traffic.rule_state()
    assert state is not None and state.last is not None and state.last["decision"] == PROMOTE


def test_labels_of_the_day_the_canary_started_do_not_count(opened):
    """The day's realized metric mixes rows from before the canary: only full days count."""
    models, model, _ = opened
    canary(model, 2, passes=1, min_labels=50)
    model.outcomes.measured(1, today(), 200, {"r2": 0.9})
    model.outcomes.measured(2, today(), 200, {"r2": -3.0})  # answered before the canary began
    answered(model, 1, 2)
    checked = check_canary(model, models.shared.audit)
    assert checked.evaluation is not None, checked
    assert checked.evaluation.outcome == PASS, checked.evaluation.reason
    assert "realized" not in checked.evaluation.reason
    state = model.traffic.rule_state()
    assert state is not None and state.last is not None and state.last["outcome"] == PASS


def test_a_rule_state_of_the_last_release_takes_its_pair_at_the_next_check(tmp_path):
    """A ``canary_rule`` row without the pair columns is upgraded; its pair is not yet known."""
    from ingest.state.db import StateDB
    from scoring.traffic.store import TrafficStore

    path = tmp_path / "state.db"
    old = TrafficStore(StateDB.at(path))
    old.set(parse_setting({"mode": "canary", "fraction": 0.2, "rule": {"passes": 4}}), pair=(1, 2))
    old.db.dispose()
    with sqlite3.connect(path) as conn:  # back to the previous release's table and version
        for column in ("champion", "challenger", "started"):
            conn.execute(f"ALTER TABLE canary_rule DROP COLUMN {column}")
        conn.execute("UPDATE schema_versions SET version = 4 WHERE store = 'traffic'")
    store = TrafficStore(StateDB.at(path))
    state = store.rule_state()
    assert state is not None and state.pair is None and state.started is None
    assert state.to_dict()["counted_since"] == state.canary and store.get().rule is not None
    store.set(parse_setting({"mode": "canary", "fraction": 0.2, "rule": {}}), pair=(1, 3))
    state = store.rule_state()
    assert state is not None and state.pair == (1, 3) and state.started == state.canary
