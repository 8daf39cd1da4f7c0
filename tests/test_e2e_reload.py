"""Models added and removed in a real running ``dropscore serve``, without a restart.

One ``serve`` starts with the model ``default``; 16 keep-alive clients post ``/predict`` to it
the whole time. A ``[models.second]`` section is appended and SIGHUP sent: ``second`` trains
from its sample, answers ``/models/second/predict`` and its inbox drop is scored. An invalid
file is refused in one log line and ``second`` keeps serving. Then, with keys, ``POST
/admin/reload`` is refused to a ``predict`` key, and for an ``admin`` key removes ``second``
(a 404 naming the models), is audited, refuses an invalid file with a 422 naming it, and
reports a port change as needing a restart. Not one of the clients' requests fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from scoring.testing.checkout import SAMPLE
from scoring.testing.load import Load
from scoring.testing.ports import free_port
from scoring.testing.processes import running, wait_ready
from scoring.testing.waiting import wait_for

pytestmark = pytest.mark.slow

SECOND = f'\n[models.second]\ntarget = "target"\nbootstrap_data = "{SAMPLE}"\n'
INVALID = '\n[models.third]\ntarget = "target"\nestimator = "no_such_estimator"\n'


def settings_text(data_dir: Path, port: int) -> str:
    """One model, ``default``, trained at start from the sample."""
    return (
        f'[paths]\ndata_dir = "{data_dir}"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nthreads = 8\n\n'
        "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 1.0\n\n"
        f'[training]\npromote = "always"\nbootstrap_data = "{SAMPLE}"\n\n'
        '[model]\ntarget = "target"\n'
    )


def answers(url: str, **kwargs) -> int | None:
    """The status of one /predict-shaped POST, or None while it cannot connect."""
    try:
        return requests.post(url, timeout=10, **kwargs).status_code
    except requests.RequestException:
        return None


def add_key(env: dict[str, str], name: str, role: str) -> str:
    """Add an API key with the real CLI; return the key it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "scoring", "keys", "add", name, "--role", role],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def log_lines(log: Path, text: str) -> list[str]:
    """The serve log's lines holding ``text``."""
    return [line for line in log.read_text().splitlines() if text in line]


def test_models_added_and_removed_without_a_restart(tmp_path: Path):
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    settings = tmp_path / "settings.toml"
    first = settings_text(data_dir, port)
    settings.write_text(first)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE_SETTINGS"] = str(settings)
    log = tmp_path / "serve.log"
    row = {"X_test": pd.read_csv(SAMPLE).drop(columns="target").iloc[0].tolist()}

    with running(["serve"], env, log) as serve:
        wait_ready(url, serve)
        assert answers(url + "/models/second/predict", json=row) == 404
        assert '"second"' not in requests.get(url + "/openapi.json", timeout=10).text
        load = Load(url, threads=16).start()
        try:
            wait_for(lambda: len(load.answers()) > 50, 60, 0.1, "the clients to run")

            # SIGHUP after a new section: served, trained, its inbox watched
            settings.write_text(first + SECOND)
            serve.send_signal(signal.SIGHUP)
            wait_for(
                lambda: answers(url + "/models/second/predict", json=row) == 200,
                120,
                0.2,
                "the added model to answer",
            )
            assert '"second"' in requests.get(url + "/openapi.json", timeout=10).text
            inbox = data_dir / "second" / "inbox" / "score"
            tmp = inbox.parent / ".drop.part"
            pd.read_csv(SAMPLE).drop(columns="target").head(20).to_csv(tmp, index=False)
            os.replace(tmp, inbox / "drop.csv")
            outbox = data_dir / "second" / "outbox"
            wait_for(
                lambda: [p for p in outbox.glob("drop*") if not p.name.startswith(".")],
                60,
                0.2,
                "the added model's drop to be scored",
            )

            # an invalid file: one line in the log, the running configuration stays
            settings.write_text(first + SECOND + INVALID)
            serve.send_signal(signal.SIGHUP)
            wait_for(lambda: log_lines(log, "settings not reloaded"), 60, 0.2, "the refusal")
            (refusal,) = log_lines(log, "settings not reloaded")
            assert "no_such_estimator" in refusal
            assert answers(url + "/models/second/predict", json=row) == 200
            assert answers(url + "/models/third/predict", json=row) == 404
        finally:
            during = load.stop()
        failed = [a for a in during if not a.ok]
        assert not failed and len(during) > 100, (failed[:5], len(during))

        # the endpoint, with keys: admin only, audited
        settings.write_text(first + SECOND)  # `dropscore keys` reads the file too
        admin = {"Authorization": f"Bearer {add_key(env, 'ops', 'admin')}"}
        scorer = {"Authorization": f"Bearer {add_key(env, 'app', 'predict')}"}
        wait_for(  # each process re-reads the key store within a second
            lambda: requests.get(url + "/audit", timeout=10).status_code == 401, 30, 0.2, "auth"
        )
        settings.write_text(first)
        assert requests.post(url + "/admin/reload", timeout=60).status_code == 401
        refused = requests.post(url + "/admin/reload", headers=scorer, timeout=60)
        assert refused.status_code == 403, refused.text
        assert answers(url + "/models/second/predict", json=row, headers=scorer) == 200

        done = requests.post(url + "/admin/reload", headers=admin, timeout=60)
        assert done.status_code == 200, done.text
        assert done.json() == {
            "added": [],
            "removed": ["second"],
            "needs_restart": [],
            "models": ["default"],
        }
        gone = requests.post(url + "/models/second/predict", json=row, headers=scorer, timeout=10)
        assert gone.status_code == 404 and "default" in gone.json()["error"]["message"]
        assert answers(url + "/predict", json=row, headers=scorer) == 200
        trail = requests.get(url + "/audit", headers=admin, timeout=10).json()["audit"]
        assert any(e["path"] == "/admin/reload" and e["key_name"] == "ops" for e in trail)

        settings.write_text(first + INVALID)
        bad = requests.post(url + "/admin/reload", headers=admin, timeout=60)
        assert bad.status_code == 422, bad.text
        assert "no_such_estimator" in bad.json()["error"]["message"]

        settings.write_text(first.replace(f"port = {port}", f"port = {free_port()}") + SECOND)
        moved = requests.post(url + "/admin/reload", headers=admin, timeout=120)
        assert moved.status_code == 200, moved.text
        assert moved.json()["added"] == ["second"]
        assert moved.json()["needs_restart"] == ["[server] port"]
        assert answers(url + "/models/second/predict", json=row, headers=scorer) == 200
        assert serve.poll() is None


def test_sighup_to_worker_and_api_adds_a_model_with_no_failed_request(tmp_path: Path):
    """``worker`` trains the added model on SIGHUP; gunicorn's master (``api``), on SIGHUP,
    reads the file again and replaces its workers gracefully: 16 clients see no failure."""
    port, data_dir = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    settings = tmp_path / "settings.toml"
    first = settings_text(data_dir, port)
    settings.write_text(first)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE_SETTINGS"] = str(settings)
    row = {"X_test": pd.read_csv(SAMPLE).drop(columns="target").iloc[0].tolist()}

    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_for(lambda: (data_dir / "models" / "1").is_dir(), 120, 0.2, "the first model")
        with running(["api", "--workers", "2"], env, tmp_path / "api.log") as api:
            wait_ready(url, api)
            load = Load(url, threads=16).start()
            try:
                wait_for(lambda: len(load.answers()) > 50, 60, 0.1, "the clients to run")
                settings.write_text(first + SECOND)
                worker.send_signal(signal.SIGHUP)
                api.send_signal(signal.SIGHUP)
                wait_for(
                    lambda: answers(url + "/models/second/predict", json=row) == 200,
                    120,
                    0.2,
                    "the added model to answer through api",
                )
                seen = len(load.answers())
                wait_for(lambda: len(load.answers()) > seen + 50, 60, 0.1, "more answers")
            finally:
                during = load.stop()
            assert worker.poll() is None and api.poll() is None
    failed = [a for a in during if not a.ok]
    assert not failed and len(during) > 100, (failed[:5], len(during))
