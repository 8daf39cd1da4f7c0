"""Batch jobs over a real HTTP server: submit (operate), follow, list; run by a JobRunner.

The app is served on 127.0.0.1 and the jobs are run by a ``JobRunner`` over its own opening of
the same data folder (as another replica would), against a real SQLite state database and real
files. Bad names are a 422 naming the rule; a bad input file is a failed job with its reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from ingest.base.config import ReadOptions
from ingest.state.db import StateDB
from scoring.jobs.runner import JobRunner, Owner
from scoring.settings import Settings

from ._server import serving
from .conftest import make_settings, register_trained, wait_for


@dataclass
class Served:
    url: str
    settings: Settings
    keys: dict[str, str]
    runner: JobRunner

    def post(self, body: object, role: str = "operate", path: str = "/models/default/jobs"):
        return requests.post(self.url + path, json=body, headers=self.auth(role), timeout=60)

    def get(self, path: str, role: str = "predict"):
        return requests.get(self.url + path, headers=self.auth(role), timeout=60)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    @property
    def outbox(self) -> Path:
        return self.settings.layout.outbox


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes) -> Iterator[Served]:
    from scoring.api.app import create_app
    from scoring.keys import KeyStore
    from scoring.lifecycle.registry import Registry
    from scoring.models.factory import open_models

    settings = make_settings(tmp_path_factory.mktemp("jobs"), scoring={"batch_rows": 100})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    store = KeyStore(StateDB.at(settings.shared_db_path))
    keys = {role: store.add(f"{role}-key", role) for role in ("predict", "operate")}
    settings.layout.outbox.mkdir(parents=True, exist_ok=True)
    runner = JobRunner(open_models(settings))  # another process's opening, in effect
    with serving(create_app(settings)) as url:
        yield Served(url, settings, keys, runner)


def sample(served: Served, diabetes: pd.DataFrame, name: str = "in.parquet") -> Path:
    frame = pd.concat([diabetes.drop(columns="target")] * 2, ignore_index=True).astype(object)
    frame.loc[5, "bmi"] = "n/a"
    path = served.outbox / name
    frame.astype(str).to_parquet(path, index=False)
    return path


def run(served: Served, job_id: str) -> dict:
    ran = served.runner.run_once()
    assert ran is not None and str(ran.id) == job_id
    response = served.get(f"/models/default/jobs/{job_id}")
    assert response.status_code == 200
    return response.json()


def test_submit_run_show_and_list(served, diabetes):
    from scoring.bulk.batch import score_path
    from scoring.lifecycle.champion import load_version
    from scoring.models.factory import open_model

    src = sample(served, diabetes)
    response = served.post({"input": "outbox/in.parquet", "output": "outbox/in.scored.csv"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued" and job["model"] == "default"
    assert response.headers["Location"] == f"/models/default/jobs/{job['id']}"
    done = run(served, job["id"])
    assert done["state"] == "succeeded", done
    assert (done["rows"], done["failures"], done["model_version"]) == (884, 1, "1")
    local = served.outbox.parent / "local.csv"
    model = load_version(open_model(served.settings).registry, 1)
    score_path(src, local, model, read=ReadOptions(batch_rows=100), fmt="csv")
    assert (served.outbox / "in.scored.csv").read_bytes() == local.read_bytes()
    listed = served.get("/models/default/jobs").json()["jobs"]
    assert listed[0]["id"] == job["id"]


def test_submit_needs_operate(served):
    body = {"input": "outbox/in.parquet", "output": "outbox/x.csv"}
    assert served.post(body, role="predict").status_code == 403
    assert served.get("/models/default/jobs", role="predict").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": "/etc/passwd", "output": "outbox/x.csv"}, "input"),
        ({"input": "outbox/../../state.db", "output": "outbox/x.csv"}, "input"),
        ({"input": "outbox/.hidden.parquet", "output": "outbox/x.csv"}, "input"),
        ({"input": "inbox/score/a.csv", "output": "outbox/x.csv"}, "input"),
        ({"input": "s3://bucket/a.parquet", "output": "outbox/x.csv"}, "input"),
        ({"input": "outbox/in.parquet", "output": "lake/score/x.parquet"}, "output"),
        ({"input": "outbox/in.parquet", "output": "outbox/x.xlsx"}, "output"),
        ({"input": "outbox/in.parquet", "output": "outbox/a\\b.csv"}, "output"),
        ({"input": 3, "output": "outbox/x.csv"}, "input"),
        ({"input": "outbox/in.parquet", "output": "outbox/x.csv", "extra": 1}, "body"),
        (["outbox/in.parquet"], "body"),
    ],
)
def test_bad_names_are_422_naming_the_field(served, body, field):
    response = served.post(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["field"] == field
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.parquet", None, "outbox/missing.parquet: no such file"),
        ("broken.parquet", b"PAR1 not really", "Parquet file is damaged"),
        ("narrow.csv", b"age,sex\n1,2\n", "lacks the model's feature columns"),
    ],
)
def test_bad_input_is_a_failed_job_with_its_reason(served, name, content, reason):
    if content is not None:
        (served.outbox / name).write_bytes(content)
    response = served.post({"input": f"outbox/{name}", "output": f"outbox/{name}.out.csv"})
    assert response.status_code == 202
    done = run(served, response.json()["id"])
    assert done["state"] == "failed"
    assert reason in done["error"]
    assert not (served.outbox / f"{name}.out.csv").exists()


def test_a_job_left_running_by_a_dead_process_is_requeued_and_run(served, diabetes):
    from scoring.models.factory import open_model

    sample(served, diabetes, "again.parquet")
    job = served.post({"input": "outbox/again.parquet", "output": "outbox/again.jsonl"}).json()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owner = Owner()
    dead = f"{owner.host}:{gone.stdout.strip()}:0000"  # a process of this host that exited
    claimed = open_model(served.settings).jobs.claim_next(dead)
    assert claimed is not None and str(claimed.id) == job["id"]
    assert served.runner.run_once() is None  # running (as far as the queue knows): not taken
    served.runner.requeue()  # what a starting process does
    done = run(served, job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert (served.outbox / "again.jsonl").exists()


def test_a_live_owner_keeps_its_job(served):
    from scoring.models.factory import open_model

    queue = open_model(served.settings).jobs
    job = served.post({"input": "outbox/in.parquet", "output": "outbox/live.csv"}).json()
    claimed = queue.claim_next(str(served.runner.owner))  # this very process: alive
    assert claimed is not None and str(claimed.id) == job["id"]
    served.runner.requeue()
    assert queue.get(int(job["id"])).state == "running"
    queue.fail(int(job["id"]), "given up by the test")


def test_job_on_the_dask_cluster_equals_local(tmp_path, diabetes, dask_address):
    from scoring.lifecycle.registry import Registry
    from scoring.models.factory import open_models

    outputs = []
    for scoring in ({}, {"engine": "dask", "dask_address": dask_address}):
        settings = make_settings(tmp_path / (scoring.get("engine") or "local"),
                                 scoring={"batch_rows": 100, **scoring})  # fmt: skip
        register_trained(settings, Registry(settings.models_dir, StateDB.at(settings.db_path)),
                         diabetes)  # fmt: skip
        settings.layout.outbox.mkdir(parents=True)
        frame = pd.concat([diabetes.drop(columns="target")] * 2, ignore_index=True)
        frame.to_parquet(settings.layout.outbox / "in.parquet", index=False)
        models = open_models(settings)
        models.default.jobs.submit("outbox/in.parquet", "outbox/out.parquet")
        done = JobRunner(models).run_once()
        assert done is not None and done.state == "succeeded", done
        outputs.append(pq.read_table(settings.layout.outbox / "out.parquet"))
    assert outputs[0].equals(outputs[1])


def test_a_job_records_its_drift_on_either_engine_alike(tmp_path, diabetes, dask_address):
    from scoring.models.factory import open_models
    from scoring.monitoring.reference import profile_step

    records = []
    for scoring in ({}, {"engine": "dask", "dask_address": dask_address}):
        settings = make_settings(tmp_path / (scoring.get("engine") or "local"),
                                 scoring={"batch_rows": 100, **scoring})  # fmt: skip
        models = open_models(settings)
        version, result = register_trained(settings, models.default.registry, diabetes)
        profile_step(models.default.registry, version, diabetes, result)
        settings.layout.outbox.mkdir(parents=True)
        frame = pd.concat([diabetes.drop(columns="target")] * 2, ignore_index=True)
        frame.to_parquet(settings.layout.outbox / "in.parquet", index=False)
        job = models.default.jobs.submit("outbox/in.parquet", "outbox/out.parquet")
        done = JobRunner(models).run_once()
        assert done is not None and done.state == "succeeded", done
        found = models.default.drift.latest(source="job")
        assert len(found) == 1 and found[0].ref == str(job.id), found
        records.append(found[0])
    local, dask = records
    assert (local.rows, local.model_version) == (884, 1)
    assert local.verdict != "not_compared", local.report
    assert (dask.rows, dask.verdict, dask.report) == (local.rows, local.verdict, local.report)


def test_a_running_runner_takes_over_the_job_of_a_process_that_died_after_it_started(
    served, diabetes
):
    from scoring.models.factory import open_model

    sample(served, diabetes, "later.parquet")
    queue = open_model(served.settings).jobs
    job = served.post({"input": "outbox/later.parquet", "output": "outbox/later.csv"}).json()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        claimed = queue.claim_next(f"{Owner().host}:{other.pid}:0000")  # alive when we start
        assert claimed is not None and str(claimed.id) == job["id"]
        runner = JobRunner(served.runner.models, poll_seconds=0.1, requeue_seconds=0.2)
        runner.start()
        try:
            assert queue.get(int(job["id"])).state == "running"  # its owner lives: kept
            other.kill()
            other.wait(60)
            done = wait_for(lambda: queue.get(int(job["id"])).state == "succeeded", timeout=120)
            assert done, queue.get(int(job["id"]))
        finally:
            runner.stop(60)
    finally:
        other.kill()
        other.wait(60)
    assert queue.get(int(job["id"])).attempts == 2
    assert (served.outbox / "later.csv").exists()


def test_a_job_whose_success_cannot_be_recorded_fails_with_the_reason(
    served, diabetes, monkeypatch
):
    import sqlalchemy.exc

    sample(served, diabetes, "big.parquet")
    job = served.post({"input": "outbox/big.parquet", "output": "outbox/big.csv"}).json()
    queue = served.runner.models.default.jobs

    def out_of_range(*args, **kwargs):  # what PostgreSQL said to a 32-bit rows column
        raise sqlalchemy.exc.DataError("UPDATE jobs", {}, Exception("integer out of range"))

    monkeypatch.setattr(queue, "succeed", out_of_range)
    done = run(served, job["id"])
    assert done["state"] == "failed", done
    assert "integer out of range" in done["error"]
