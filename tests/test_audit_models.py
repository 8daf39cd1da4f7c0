"""Every audit row names the model and the version, run or file the request acted on.

Issue 22: rolling ``fair`` back from the dashboard was recorded as ``POST /ui/models/1/promote …
version 1`` with three models each having a version 1, and ``POST /ui/runs/retrain`` with
``run_id: null``. Here two trained models are served by a real HTTP server; each audited action
(the API's promote, train and retry, by name and by today's default paths, and the dashboard's
three buttons) is sent, and the rows are read back from the store, ``GET /audit`` and
``dropscore audit``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.audit import AuditLog
from scoring.lifecycle.registry import Registry
from scoring.service.cli import main
from scoring.service.runtime import open_intake
from scoring.settings import Settings, load_settings
from scoring.testing.waiting import wait_for
from tests._server import serving
from tests.conftest import register_trained

MODELS = ("sugar", "pressure")  # sugar is first: today's paths (no /models/<name>) act on it


@pytest.fixture
def two_models(tmp_path: Path, diabetes, monkeypatch) -> tuple[Settings, Path]:
    """A settings file naming two models, each with a trained champion (version 1)."""
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    path = tmp_path / "settings.toml"
    path.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[models.sugar]\ntarget = "target"\n\n[models.pressure]\ntarget = "bp"\n',
        "utf-8",
    )
    settings = load_settings(path, env={})
    for name in MODELS:
        one = settings.for_model(name)
        one.db_path.parent.mkdir(parents=True, exist_ok=True)
        register_trained(one, Registry(one.models_dir, StateDB.at(one.db_path)), diabetes)
    return settings, path


def quarantined(settings: Settings, name: str) -> int:
    """A quarantined training drop of ``pressure`` (an empty file), for a retry to put back."""
    _config, _ledger, intake = open_intake(settings.for_model("pressure"))
    empty = settings.data_dir / name
    empty.write_bytes(b"")
    record = intake.take_copy(empty, "train")
    assert record.state == "quarantined"
    return record.id


def csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def runs_done(url: str) -> bool:
    runs = requests.get(f"{url}/models/pressure/runs", timeout=10).json()["runs"]
    return all(r["state"] in ("succeeded", "skipped", "failed") for r in runs)


def test_each_audited_action_names_its_model_and_object(two_models):
    settings, path = two_models
    api_file, ui_file = quarantined(settings, "a.csv"), quarantined(settings, "b.csv")
    with serving(create_app(settings)) as url:
        post = requests.post
        assert post(f"{url}/models/pressure/versions/1/promote", timeout=10).status_code == 200
        assert post(f"{url}/models/1/promote", timeout=10).status_code == 200  # sugar's
        api_run = post(f"{url}/models/pressure/train", timeout=10).json()["run_id"]
        wait_for(lambda: runs_done(url), 60, 0.1, "the API's retrain to end")
        retried = post(f"{url}/models/pressure/files/{api_file}/retry", timeout=10)
        assert retried.status_code == 202, retried.text

        ui = requests.Session()  # the dashboard, with its session cookie and CSRF token
        token = csrf(ui.get(f"{url}/ui/runs?model=pressure", timeout=10).text)
        form = {"csrf_token": token}
        assert ui.post(f"{url}/ui/models/1/promote", data=form, timeout=10).ok
        assert ui.post(f"{url}/ui/runs/retrain?model=pressure", data=form, timeout=10).ok
        wait_for(lambda: runs_done(url), 60, 0.1, "the dashboard's retrain to end")
        assert ui.post(f"{url}/ui/files/{ui_file}/retry", data=form, timeout=10).ok
        listed = requests.get(f"{url}/audit?limit=100", timeout=10).json()["audit"]

    ui_run = api_run + 1  # the dashboard's retrain is pressure's next run
    expected = {
        ("models.promote_model", "pressure", "1", None, None),
        ("models.promote_model", "sugar", "1", None, None),
        ("runs.start_training", "pressure", None, api_run, None),
        ("files.retry_file", "pressure", None, None, api_file),
        ("pages.promote", "pressure", "1", None, None),
        ("pages.retrain", "pressure", None, ui_run, None),
        ("pages.retry", "pressure", None, None, ui_file),
    }

    def named(rows):
        return {(r["endpoint"], r["model"], r["version"], r["run_id"], r["file_id"]) for r in rows}

    stored = [e.to_dict() for e in AuditLog(StateDB.at(settings.shared_db_path)).list(limit=100)]
    assert named(stored) == expected
    assert named(listed) == expected

    as_json = CliRunner().invoke(main, ["--settings", str(path), "audit", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert named(json.loads(line) for line in as_json.stdout.splitlines()) == expected

    table = CliRunner().invoke(main, ["--settings", str(path), "audit"])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert re.search(r"\bmodel\b.*\bobject\b", lines[0])
    row = next(line for line in lines if "/ui/runs/retrain" in line)
    assert re.search(rf"\bpressure\b.*\brun {ui_run}\b", row), row
    row = next(line for line in lines if "/ui/models/1/promote" in line)
    assert re.search(r"\bpressure\b.*\bversion 1\b", row), row
    row = next(line for line in lines if f"/ui/files/{ui_file}/retry" in line)
    assert re.search(rf"\bpressure\b.*\bfile {ui_file}\b", row), row


def test_rows_of_an_older_state_db_read_back_without_a_model(tmp_path: Path):
    import sqlite3

    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:  # the audit table as the release before this one made it
        conn.execute(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,"
            " key_name TEXT, role TEXT, method TEXT NOT NULL, path TEXT NOT NULL, endpoint TEXT,"
            " status INTEGER NOT NULL, version TEXT, run_id INTEGER)"
        )
        conn.execute(
            "INSERT INTO audit (ts, method, path, status, version) VALUES"
            " ('2026-01-01T00:00:00', 'POST', '/models/1/promote', 200, '1')"
        )
    [old] = AuditLog(StateDB.at(db)).list()
    assert (old.model, old.version, old.subject) == (None, "1", "version 1")
