"""The CLI over a temporary data folder, in-process with click's runner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scoring.service.cli import main

from .conftest import SAMPLE


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke dropscore with a settings file whose data folder is tmp_path/data."""
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[paths]\ndata_dir = "data"\n[training]\nbootstrap_data = "{SAMPLE}"\n', encoding="utf-8"
    )
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def invoke(*args: str, env: dict | None = None):
        return CliRunner().invoke(main, ["--settings", str(settings), *args], env=env)

    return invoke


def test_train_prints_metrics_and_decision(run, tmp_path):
    result = run("train")
    assert result.exit_code == 0, result.output
    assert "r2" in result.output and "mae" in result.output
    assert "version 1: promoted to champion (no champion yet)" in result.output
    second = run("train", "--force", env={"DROPSCORE__TRAINING__PROMOTE": "never"})
    assert "v1 (champion)" in second.output
    assert "version 2: not promoted" in second.output
    listed = run("models").output
    assert "champion" in listed and "challenger" in listed


def test_models_show_and_promote(run):
    run("train")
    run("train", "--force", env={"DROPSCORE__TRAINING__PROMOTE": "never"})
    shown = json.loads(run("models", "show", "2").output)
    assert shown["status"] == "challenger"
    assert shown["card"]["training_data"]["rows"] == 442
    assert shown["card"]["library_versions"]["scikit-learn"]
    promoted = run("models", "promote", "2")
    assert promoted.exit_code == 0 and "version 2 is now the champion" in promoted.output
    missing = run("models", "promote", "9")
    assert missing.exit_code == 1
    assert "model version 9 does not exist" in missing.output


def test_models_on_an_empty_registry(run):
    assert "no models yet" in run("models").output


def test_train_refused_without_data(run, tmp_path):
    result = run("train", env={"DROPSCORE__TRAINING__BOOTSTRAP_DATA": '""'})
    assert result.exit_code == 1
    assert "training refused: 0 training rows in the lake" in result.output


def test_ingest_and_files(run, tmp_path):
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    result = run("ingest", str(SAMPLE), str(bad), "--kind", "train")
    assert result.exit_code == 1  # one file was refused
    assert "diabetes.csv: #1 normalized 442 rows" in result.output
    assert "empty.csv: #2 quarantined" in result.output
    assert SAMPLE.exists() and bad.exists()  # copies were taken, originals stay
    files = run("files").output
    assert "normalized" in files and "quarantined" in files
    assert "quarantined" not in run("files", "--status", "normalized").output
    unknown = run("files", "--status", "lost")
    assert unknown.exit_code == 2 and "'lost' is not one of" in unknown.output


def test_bad_settings_is_one_line(run):
    result = run("models", env={"DROPSCORE__SERVER__PORT": "eighty"})
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: [server] port = 'eighty': expected a whole number")
