"""A batch job survives the death of the process running it: real processes, kill -9, restart.

``dropscore jobs submit`` (a process of its own, gone when it returns) queues the job; a
``dropscore worker`` claims it and is killed with SIGKILL while the job runs (its Dask
scheduler never answers, so the job is reliably mid-way); a new worker re-queues it at start
and runs it to the end on the local engine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from scoring.testing.checkout import SAMPLE
from scoring.testing.processes import process_env, running
from scoring.testing.waiting import wait_for

from .conftest import free_port


def jobs(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "scoring", "jobs", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def state_of(data: Path, job_id: int) -> str:
    """Read the job's state from the state database (polled: no process per look)."""
    from ingest.state.db import StateDB
    from scoring.jobs.store import JobStore

    db = StateDB.at(data / "state.db")
    try:
        job = JobStore(db).get(job_id)
    finally:
        db.dispose()
    return "" if job is None else job.state


def test_job_survives_kill_of_its_worker(tmp_path):
    data = tmp_path / "data"
    env = process_env(data, free_port())
    outbox = data / "outbox"
    outbox.mkdir(parents=True)
    pd.read_csv(SAMPLE).drop(columns="target").to_parquet(outbox / "in.parquet", index=False)
    queued = jobs(env, "submit", "outbox/in.parquet", "outbox/out.csv")
    assert queued.startswith("job 1 queued: outbox/in.parquet -> outbox/out.csv"), queued

    stuck = {**env, "DROPSCORE__SCORING__ENGINE": "dask",
             "DROPSCORE__SCORING__DASK_ADDRESS": f'"tcp://127.0.0.1:{free_port()}"'}  # fmt: skip
    with running(["worker"], stuck, tmp_path / "first.log") as first:
        wait_for(lambda: state_of(data, 1) == "running", timeout=240, interval=0.2,
                 what="the first worker to claim the job")  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert state_of(data, 1) == "running"  # as the dead process left it
    assert not (outbox / "out.csv").exists()

    with running(["worker"], env, tmp_path / "second.log"):
        wait_for(lambda: state_of(data, 1) in ("succeeded", "failed"), timeout=240,
                 interval=0.2, what="the job to end after the restart")  # fmt: skip
    shown = jobs(env, "show", "1")
    assert "succeeded" in shown.splitlines()[0], shown
    assert "(attempt 2)" in shown
    assert "scored 442 rows with model 1, 0 failed" in shown
    assert (outbox / "out.csv").read_text().count("\n") == 443
    listed = jobs(env, "list")
    assert "succeeded" in listed and "outbox/in.parquet" in listed
