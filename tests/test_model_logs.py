"""Two named models in one real `dropscore serve`: every log event about a model names it.

Issue 22: the JSON log of a serve running two models said ``normalized``, ``scored`` and
``retrain finished`` without the model, and both first trainings logged ``run_id 1``. Here a real
serve takes labelled drops into both models (each trains its first model), a score drop, a
duplicate and an empty file into both, and a forced retrain of one; then its JSON log is parsed
and every event that names a file, a run or a version must also name its model (and the version
where one is involved).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from scoring.testing.load import wait_run
from scoring.testing.ports import free_port
from scoring.testing.processes import running
from scoring.testing.waiting import wait_for
from tests.test_e2e_models import FEATURES, drop, labelled, outbox_file

pytestmark = pytest.mark.slow

MODELS = ("fair", "price")
# Fields that say an event is about a drop, a run or a model version, so it must name the model.
ABOUT = ("file_id", "file", "run_id", "version", "model_version")
# The events the issue saw without a model, and those the fix must also cover.
MUST_NAME = (
    "normalized",
    "duplicate",
    "quarantined",
    "scored",
    "first model training",
    "retrain started",
    "trained",  # by the trainer process, which logs as its parent with the run's fields
    "retrain finished",
    "promoted",
    "champion loaded",
)


def settings_text(data_dir: Path, port: int) -> str:
    """Two regressions named ``fair`` and ``price``; a first model once 20 labelled rows land."""
    lines = [
        f'[paths]\ndata_dir = "{data_dir}"',
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nthreads = 4',
        "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 1.0",
        '[training]\npromote = "always"\nmin_rows = 20',
        '[scoring]\non_arrival = true\noutput_format = "parquet"',
    ]
    for name in MODELS:
        lines.append(
            f'[models.{name}]\ntarget = "price"\nid_columns = ["row_id"]\n'
            'estimator = "linear_regression"'
        )
    return "\n\n".join(lines) + "\n"


def runs(url: str, name: str) -> list[dict]:
    """The model's runs, newest first."""
    return requests.get(f"{url}/models/{name}/runs", timeout=10).json()["runs"]


def files(url: str, name: str) -> list[dict]:
    """The model's ledger rows."""
    return requests.get(f"{url}/models/{name}/files", timeout=10).json()["files"]


def events(log: Path) -> list[dict]:
    """Every JSON line the serve logged."""
    lines = log.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_every_event_about_a_model_names_it(tmp_path: Path):
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(data_dir, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE_SETTINGS"] = str(settings)
    log = tmp_path / "serve.log"

    with running(["serve"], env, log) as serve:
        wait_for(lambda: _answers(url + "/health"), 90, 0.1, "serve to answer")
        for name in MODELS:  # the same table for both: each model learns from its own copy
            drop(data_dir / name / "inbox" / "train", "labelled.csv", labelled("price"))
        for name in MODELS:  # the first-data trigger trains run 1 of each model
            wait_for(lambda n=name: _done(runs(url, n)), 180, 0.2, f"{name}'s first model")
        for name in MODELS:
            score = labelled("price", rows=30, seed=1)[["row_id", *FEATURES]]
            drop(data_dir / name / "inbox" / "score", "batch.csv", score)
            drop(data_dir / name / "inbox" / "train", "again.csv", labelled("price"))
            (data_dir / name / "inbox" / "train" / "empty.csv").write_bytes(b"")
        for name in MODELS:
            wait_for(lambda n=name: outbox_file(data_dir, n), 90, 0.2, f"{name}'s output")
            wait_for(lambda n=name: len(files(url, n)) >= 4, 90, 0.2, f"{name}'s four drops")
        forced = requests.post(f"{url}/models/fair/train?force=true", timeout=10)
        assert forced.status_code == 202, forced.text
        assert wait_run(f"{url}/models/fair", forced.json()["run_id"])["state"] == "succeeded"
        assert serve.poll() is None

    logged = events(log)
    unnamed = [e for e in logged if any(k in e for k in ABOUT) and e.get("model") not in MODELS]
    assert not unnamed, "events about a file, run or version without their model:\n" + "\n".join(
        json.dumps(e) for e in unnamed
    )
    for event in MUST_NAME:
        seen = {e["model"] for e in logged if e["event"] == event}
        assert seen == set(MODELS), f"{event!r} logged for {sorted(seen)}, expected both models"
    # Both first trainings are run 1; the model field is what tells them apart.
    for event in ("retrain finished", "trained"):
        runs_named = sorted((e["model"], e["run_id"]) for e in logged if e["event"] == event)
        assert runs_named == [("fair", 1), ("fair", 2), ("price", 1)], event
    # Where a version is involved, the event names it.
    for e in logged:
        if e["event"] in ("scored", "champion loaded", "promoted", "trained", "retrain finished"):
            assert isinstance(e.get("version"), int), e  # one type, so a filter finds them all
    scored = {e["model"]: e for e in logged if e["event"] == "scored"}
    assert set(scored) == set(MODELS)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code in (200, 503)
    except requests.RequestException:
        return False


def _done(model_runs: list[dict]) -> bool:
    return any(r["state"] == "succeeded" for r in model_runs)
