"""A promotion is live in the process that made it before the run reads as done (issue 9, #6).

A real waitress server on 127.0.0.1 over a model with no champion: ``POST /train``, poll
``GET /runs/<id>`` until it succeeded and promoted, then at once ``/predict`` and ``/score-file``
must answer from the new version, never 503 "no model has been trained yet".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from flask import Flask

from scoring.api.app import create_app
from scoring.lifecycle.champion import ChampionHolder
from scoring.service.runtime import open_intake

from ._server import serving
from .conftest import SAMPLE, make_settings, register_trained, wait_for

ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
CSV = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n" + ",".join(map(str, ROW)) + "\n"


@dataclass
class Live:
    url: str
    app: Flask


@pytest.fixture(params=["warm", "cold"])
def live(request, tmp_path) -> Iterator[Live]:
    """No champion yet, labelled rows in the lake; the champion loaded at start (as ``serve``
    does) or never touched before the first promotion (its poller not started)."""
    from scoring.api.app import warm

    settings = make_settings(tmp_path)
    _config, _ledger, intake = open_intake(settings)
    assert intake.bootstrap(SAMPLE) is not None  # the lake only: no model is trained here
    app = create_app(settings)
    if request.param == "warm":
        warm(app)
    with serving(app) as url:
        yield Live(url, app)


def _train(url: str) -> dict:
    started = requests.post(url + "/train", json={"force": True}, timeout=10)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    def done() -> dict | None:
        run = requests.get(f"{url}/runs/{run_id}", timeout=10).json()
        return run if run["state"] in ("succeeded", "skipped", "failed") else None

    run = wait_for(done, timeout=180, interval=0.01, what=f"run {run_id}")
    assert (run["state"], run["promoted"]) == ("succeeded", True), run
    return run


def test_predict_and_score_file_answer_the_moment_a_run_reads_promoted(live):
    for _ in range(3):  # the first promotion, then replacements of a live champion
        run = _train(live.url)
        predicted = requests.post(live.url + "/predict", json={"X_test": ROW}, timeout=10)
        scored = requests.post(
            live.url + "/score-file", files={"file": ("rows.csv", CSV)}, timeout=30
        )
        assert predicted.status_code == 200, predicted.text
        assert scored.status_code == 200, scored.text
        assert predicted.json()["model_version"] == run["version"]
        assert scored.headers["X-Model-Version"] == run["version"]


def test_the_first_champion_is_served_the_moment_it_is_promoted(settings, registry, diabetes):
    # the poller started (and found nothing) but sleeps far longer than this test runs: the
    # first model must come from the pointer itself, not from the poller's next turn
    holder = ChampionHolder(registry, poll_seconds=3600)
    try:
        assert holder.peek() is None
        version, _ = register_trained(settings, registry, diabetes)
        assert holder.current().version == str(version)
    finally:
        holder.stop()


def test_refresh_before_the_poller_ever_started_serves_the_new_model(settings, registry, diabetes):
    holder = ChampionHolder(registry, poll_seconds=3600)
    try:
        v1, _ = register_trained(settings, registry, diabetes)
        holder.refresh()  # what on_promoted does, in a process that never answered yet
        assert holder.current().version == str(v1)
        v2, _ = register_trained(settings, registry, diabetes)
        holder.refresh()
        assert holder.current().version == str(v2)  # a replacement too, with no poll between
    finally:
        holder.stop()


def test_callers_racing_the_first_load_wait_for_it_instead_of_a_503(settings, registry, diabetes):
    version, _ = register_trained(settings, registry, diabetes)
    holder = ChampionHolder(registry, poll_seconds=3600)
    gate = threading.Barrier(8)
    seen: list[str] = []

    def ask() -> None:
        gate.wait()
        seen.append(model.version if (model := holder.peek()) else "503")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder.stop()
    assert seen == [str(version)] * 8
