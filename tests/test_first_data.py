"""The first labelled drops train the first model by themselves (issue 9, #5).

``background()`` as ``serve`` runs it (the real watcher, bootstrap off) and the API on a real
waitress server: 10 labelled rows (min_rows is 20) train nothing; 15 more start one run with
trigger ``first_data``, which promotes, and ``/ready`` is green the moment the run reads done;
a later drop, with a champion in place, starts no run.
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app, warm
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.contract import chain
from scoring.lifecycle.first_data import first_data_trigger
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runs import RunStore
from scoring.service.runtime import background, open_intake

from ._server import serving
from .conftest import make_settings, wait_for

ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]


def drop(inbox, name: str, frame: pd.DataFrame) -> None:
    """Write under a temporary name and rename into the inbox, as producers should."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f"{name}.part"
    frame.to_csv(tmp, index=False)
    tmp.rename(inbox / name)


def taken(ledger, name: str):
    """The drop's ledger record once ingest finished with it (its hooks ran just after)."""
    return next(
        (r for r in ledger.list(limit=None) if r.original_name == name and r.state != "received"),
        None,
    )


@pytest.fixture
def settings(tmp_path):
    return make_settings(
        tmp_path,
        ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0},
        training={"min_rows": 20},
        scoring={"on_arrival": False},
    )


def test_the_first_labelled_drops_reaching_min_rows_train_the_first_model(settings, diabetes):
    runs = RunStore(StateDB.at(settings.db_path))
    train = settings.layout.inbox("train")
    with background(settings) as bg:
        ledger = bg.models[settings.name].ledger
        app = warm(create_app(settings, served=bg.models))
        with serving(app) as url:
            started = [r.id for r in runs.list()]  # the first start's attempt on an empty lake
            assert requests.get(url + "/ready", timeout=10).status_code == 503

            drop(train, "first.csv", diabetes.iloc[:10])
            wait_for(
                lambda: taken(ledger, "first.csv"), what="the first drop"
            )
            assert taken(ledger, "first.csv").state == "normalized"

            drop(train, "second.csv", diabetes.iloc[10:25])

            def first_data_done():
                done = [r for r in runs.list() if r.trigger == "first_data" and r.done]
                return done and done[0]

            run = wait_for(first_data_done, timeout=180, interval=0.01, what="the first_data run")
            ready = requests.get(url + "/ready", timeout=10)  # at once: no poll in between
            assert ready.status_code == 200, ready.text
            assert ready.json()["model_version"] == str(run.version)
            assert (run.state, run.promoted, run.rows) == ("succeeded", True, 25), run
            predicted = requests.post(url + "/predict", json={"X_test": ROW}, timeout=10)
            assert predicted.status_code == 200, predicted.text
            # the 10-row drop started nothing: the only run since start-up is this one
            assert [r.id for r in runs.list() if r.id not in started] == [run.id]

            drop(train, "third.csv", diabetes.iloc[25:40])
            wait_for(
                lambda: taken(ledger, "third.csv"), what="the third drop"
            )
            # the watcher takes one file at a time: once the sentinel is taken, the third
            # drop's hooks have run
            drop(settings.layout.inbox("score"), "sentinel.csv", diabetes.iloc[:5])
            wait_for(
                lambda: taken(ledger, "sentinel.csv"),
                what="the sentinel drop",
            )
            assert [r.id for r in runs.list() if r.id not in started] == [run.id]


def test_a_first_model_kept_for_a_person_is_not_trained_again_by_each_drop(tmp_path, diabetes):
    settings = make_settings(tmp_path, training={"min_rows": 20, "promote": "never"})
    _config, _ledger, intake = open_intake(settings)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    champion = ChampionHolder(registry)
    intake.on_normalized = chain(
        intake.on_normalized, first_data_trigger(settings, registry, champion)
    )
    runs = RunStore(StateDB.at(settings.db_path))
    for name, rows in (("a.csv", diabetes.iloc[:30]), ("b.csv", diabetes.iloc[30:60])):
        rows.to_csv(tmp_path / name, index=False)
    intake.take_copy(tmp_path / "a.csv", "train")  # the hook runs before this returns
    run = wait_for(lambda: (r := runs.last()) and r.done and r, timeout=180, what="the run")
    assert (run.trigger, run.state, run.promoted) == ("first_data", "succeeded", False), run
    assert champion.peek() is None  # kept as a challenger: a person promotes it
    intake.take_copy(tmp_path / "b.csv", "train")
    assert [r.id for r in runs.list()] == [run.id]
    champion.stop()
