"""A promotion under load, with real processes: zero failed requests, versions switch within 1 s.

Eight keep-alive client threads post ``/predict`` continuously while a labelled file lands in
``inbox/train/``, the watcher ingests it, and ``POST /train`` (``promote = always``) retrains and
promotes version 2. The load generator and helpers (``scoring/testing/load.py``) are the ones
``bench/reload.py`` measures with.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from scoring.testing.load import (
    Answer,
    Load,
    promote_under_load,
    stale_after_switch,
    switch_seconds,
)
from scoring.testing.ports import free_port
from scoring.testing.processes import contextmanager_for, process_env, wait_ready

pytestmark = pytest.mark.slow


def promote_while_loaded(url: str, data_dir: Path) -> tuple[list[Answer], str, float]:
    load = Load(url, threads=8).start()
    try:
        time.sleep(1.5)
        version, promoted_at = promote_under_load(url, data_dir)
        time.sleep(2.0)
    finally:
        answers = load.stop()
    return answers, version, promoted_at


def assert_clean_switch(answers: list[Answer], version: str, promoted_at: float) -> set[int]:
    failed = [a for a in answers if not a.ok]
    assert not failed, failed[:5]
    assert len(answers) > 100 and {a.version for a in answers} == {"1", version}
    switched = switch_seconds(answers, version, promoted_at)
    assert set(switched) == {a.pid for a in answers}, "every process answered from the new one"
    assert all(0 <= delay < 1.0 for delay in switched.values()), switched
    assert stale_after_switch(answers, version) == 0
    return set(switched)


def test_serve_promotes_under_load_with_no_failed_request(tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    with contextmanager_for("serve", process_env(data_dir, port), tmp_path) as (serve,):
        wait_ready(url, serve)
        answers, version, promoted_at = promote_while_loaded(url, data_dir)
        health = requests.get(url + "/health", timeout=5).json()
        metrics = requests.get(url + "/metrics", timeout=5).text
    assert version == "2"
    assert_clean_switch(answers, version, promoted_at)
    scheduler = health["scheduler"]
    assert scheduler["alive"] is True and scheduler["failed"] == 0
    assert {j["id"] for j in scheduler["jobs"]} == {"retrain", "score_sweep", "canary_check"}
    assert all(j["next_run_time"] for j in scheduler["jobs"])
    assert scheduler["last_retrain"]["version"] == "2" and scheduler["last_retrain"]["promoted"]
    assert "dropscore_scheduler_up 1.0" in metrics
    missed = 'dropscore_scheduler_runs_total{job="retrain",model="default",outcome="missed"}'
    assert missed in metrics
    assert serve.returncode == 0  # SIGTERM: scheduler, watcher and server stopped cleanly
    log = (tmp_path / "serve.log").read_text()
    assert '"scheduler stopped"' in log and "Traceback" not in log


def test_api_workers_and_a_worker_promote_under_load(tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    with contextmanager_for("api", process_env(data_dir, port), tmp_path) as (api, worker):
        wait_ready(url, api)
        answers, version, promoted_at = promote_while_loaded(url, data_dir)
        health = requests.get(url + "/health", timeout=5).json()
    assert version == "2"
    pids = assert_clean_switch(answers, version, promoted_at)
    assert worker.pid not in pids
    assert "scheduler" not in health, "API workers never run the scheduler"
    assert api.returncode == 0 and worker.returncode == 0
    log = (tmp_path / "worker.log").read_text()
    assert '"scheduler started"' in log and '"scheduler stopped"' in log
    assert "Traceback" not in log
