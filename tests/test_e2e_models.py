"""Three models in one real `dropscore serve`: drops, a retrain under load, a restart.

One regression, one binary and one three-class classifier are named in one settings file
(``[models.price]``, ``[models.churn]``, ``[models.colour]``). Labelled drops land in each
model's ``inbox/train/`` and train each model; score drops land in each ``inbox/score/`` and
come out of each model's own outbox with the right columns (probabilities for classifiers).
Then one model retrains (forced) while four keep-alive clients post ``/predict`` to the other
two: not one request may fail or answer 503. Finally SIGTERM and a second ``serve`` on the same
folder: the job store holds exactly three jobs per model, and every champion still serves.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from sklearn.datasets import make_classification, make_regression

from scoring.testing.checkout import ROW
from scoring.testing.load import Load, wait_run
from scoring.testing.ports import free_port
from scoring.testing.processes import running, wait_ready
from scoring.testing.waiting import wait_for

pytestmark = pytest.mark.slow

FEATURES = [f"x{i}" for i in range(len(ROW))]  # the load generator's row fits every model
# name: (estimator, target, class labels or None for a regression)
MODELS = {
    "price": ("linear_regression", "price", None),
    "churn": ("logistic_regression", "churned", ["no", "yes"]),
    "colour": ("logistic_regression", "colour", ["blue", "green", "red"]),
}
JOB_IDS = {
    f"{job}:{name}" for name in MODELS for job in ("retrain", "score_sweep", "canary_check")
}


def settings_text(data_dir: Path, port: int) -> str:
    """A settings file naming three models and no [model]: no `default` model exists."""
    lines = [
        f'[paths]\ndata_dir = "{data_dir}"',
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nthreads = 8',
        "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 1.0",
        '[training]\npromote = "always"\nmin_rows = 20',
        '[scoring]\non_arrival = true\noutput_format = "parquet"',
    ]
    for name, (estimator, target, _) in MODELS.items():
        lines.append(
            f'[models.{name}]\ntarget = "{target}"\nid_columns = ["row_id"]\n'
            f'estimator = "{estimator}"'
        )
    return "\n\n".join(lines) + "\n"


def labelled(name: str, rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small labelled table for one model, with an id column and string class labels."""
    _, target, labels = MODELS[name]
    if labels is None:
        X, y = make_regression(rows, len(FEATURES), noise=5.0, random_state=seed)
    else:
        X, codes = make_classification(
            rows, len(FEATURES), n_informative=5, n_classes=len(labels), random_state=seed
        )
        y = np.asarray(labels)[codes]
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "row_id", [f"{name}-{seed}-{i}" for i in range(rows)])
    frame[target] = y
    return frame


def drop(inbox: Path, name: str, frame: pd.DataFrame) -> None:
    """Write elsewhere, rename into the inbox: how producers should drop a file."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox.parent / f".{name}.part"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, inbox / name)


def normalized_train_files(model_url: str) -> int:
    """Count the model's training drops the watcher has taken into its lake."""
    files = requests.get(model_url + "/files?status=normalized", timeout=5).json()["files"]
    return sum(f["kind"] == "train" for f in files)


def train(model_url: str) -> int:
    """Start a retrain once the drop is in the lake; join a first-data run already under way."""
    response = requests.post(model_url + "/train", timeout=10)
    if response.status_code == 202:
        return response.json()["run_id"]
    assert response.status_code == 409, response.text
    for state in ("running", "queued"):
        runs = requests.get(f"{model_url}/runs?state={state}", timeout=5).json()["runs"]
        if runs:
            return runs[0]["id"]
    return train(model_url)  # that run ended between the two requests


def outbox_file(data_dir: Path, name: str) -> Path | None:
    """The model's finished output file, once there is one (temporaries start with a dot)."""
    done = [p for p in (data_dir / name / "outbox").glob("*.parquet") if not p.name.startswith(".")]
    return done[0] if done else None


def stored_job_ids(data_dir: Path) -> list[str]:
    """Read the job ids straight from APScheduler's table, where a duplicate would show."""
    with sqlite3.connect(data_dir / "state.db") as db:
        return [row[0] for row in db.execute("SELECT id FROM apscheduler_jobs ORDER BY id")]


def predict(url: str, name: str) -> dict:
    """One prediction from one model, which must succeed."""
    response = requests.post(f"{url}/models/{name}/predict", json={"X_test": ROW}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_three_models_in_one_serve(tmp_path: Path):
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(data_dir, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE_SETTINGS"] = str(settings)

    with running(["serve"], env, tmp_path / "serve-1.log") as serve:
        wait_for(lambda: _answers(url + "/health"), 60, 0.1, "the first serve to answer")
        for name in MODELS:
            drop(data_dir / name / "inbox" / "train", f"{name}.csv", labelled(name))
        for name in MODELS:
            wait_for(lambda n=name: normalized_train_files(f"{url}/models/{n}"), 60, 0.1, name)
        started = {name: train(f"{url}/models/{name}") for name in MODELS}
        first = {name: wait_run(f"{url}/models/{name}", run) for name, run in started.items()}
        assert all(r["state"] == "succeeded" and r["promoted"] for r in first.values()), first
        wait_ready(url, serve)
        ready = requests.get(url + "/ready", timeout=5).json()
        assert ready["models"] == {name: first[name]["version"] for name in MODELS}

        check_score_drops(url, data_dir, {name: first[name]["version"] for name in MODELS})
        answers, retrained = retrain_under_load(url, "price", ["churn", "colour"])
        assert retrained["state"] == "succeeded" and retrained["promoted"], retrained
        assert retrained["version"] != first["price"]["version"]
        check_answers(answers, {n: first[n]["version"] for n in ("churn", "colour")}, retrained)
        assert predict(url, "price")["model_version"] == retrained["version"]
        assert sorted(stored_job_ids(data_dir)) == sorted(JOB_IDS)
    assert serve.returncode == 0  # SIGTERM: the watcher, scheduler and server stopped cleanly

    versions = {**{n: first[n]["version"] for n in MODELS}, "price": retrained["version"]}
    with running(["serve"], env, tmp_path / "serve-2.log") as again:
        wait_ready(url, again)
        health = requests.get(url + "/health", timeout=5).json()
        assert {j["id"] for j in health["scheduler"]["jobs"]} == JOB_IDS
        stored = stored_job_ids(data_dir)
        assert len(stored) == 9 and set(stored) == JOB_IDS, stored
        for name in MODELS:
            assert predict(url, name)["model_version"] == versions[name]
    assert again.returncode == 0
    for log in ("serve-1.log", "serve-2.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


def _answers(url: str) -> bool:
    """True once the server answers 200 (before every model has a champion /ready is 503)."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def check_score_drops(url: str, data_dir: Path, versions: dict[str, str]) -> None:
    """Score drops into each inbox land in that model's outbox, with that model's columns."""
    frames = {}
    for name, (_, target, _) in MODELS.items():
        frames[name] = labelled(name, rows=50, seed=7).drop(columns=[target])
        drop(data_dir / name / "inbox" / "score", f"{name}-score.csv", frames[name])
    for name, (_, _, labels) in MODELS.items():
        path = wait_for(lambda n=name: outbox_file(data_dir, n), 60, 0.1, f"{name}'s output")
        table = pq.read_table(path).to_pandas()
        assert len(table) == len(frames[name])
        assert {"row_id", "prediction", "model_version"} <= set(table.columns)
        assert set(table["model_version"].astype(str)) == {versions[name]}
        probabilities = sorted(c for c in table.columns if c.startswith("probability_"))
        if labels is None:
            assert probabilities == []
            assert pd.api.types.is_float_dtype(table["prediction"])
        else:
            assert probabilities == [f"probability_{label}" for label in labels]
            assert set(table["prediction"]) <= set(labels)
            assert np.allclose(table[probabilities].sum(axis=1), 1.0)
        others = [n for n in MODELS if n != name]
        assert not any((data_dir / n / "outbox" / path.name).exists() for n in others)


def retrain_under_load(url: str, name: str, others: list[str]) -> tuple[dict, dict]:
    """Force a retrain of ``name`` while two clients per other model post /predict."""
    loads = {n: Load(url, threads=2, path=f"/models/{n}/predict").start() for n in others}
    try:
        wait_for(lambda: all(len(ld.answers()) >= 5 for ld in loads.values()), 30, what="load")
        before = time.time()
        response = requests.post(f"{url}/models/{name}/train", json={"force": True}, timeout=10)
        assert response.status_code == 202, response.text
        run = wait_run(f"{url}/models/{name}", response.json()["run_id"])
        after = time.time()
        wait_for(
            lambda: all(any(a.sent > after for a in ld.answers()) for ld in loads.values()),
            30,
            what="answers sent after the retrain",
        )
    finally:
        answers = {n: ld.stop() for n, ld in loads.items()}
    run["window"] = (before, after)
    return answers, run


def check_answers(answers: dict, versions: dict[str, str], run: dict) -> None:
    """Zero failed requests and zero 503s, and requests really were in flight during the run."""
    before, after = run["window"]
    for name, got in answers.items():
        assert not [a for a in got if a.status == 503], name
        failed = [a for a in got if not a.ok]
        assert not failed, (name, failed[:5])
        during = [a for a in got if before <= a.sent <= after]
        assert during, f"no /models/{name}/predict was sent while the retrain ran"
        assert {a.version for a in got} == {versions[name]}
