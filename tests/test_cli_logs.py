"""Commands a person runs print readable lines: their logs go to stderr, warnings only unless -v.

The real ``dropscore`` process, so standard output and standard error are the real streams.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from scoring.service.logs import HumanFormatter

from .conftest import SAMPLE


@pytest.fixture
def dropscore(tmp_path):
    """Run ``python -m scoring`` with a settings file whose data folder is tmp_path/data."""
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[paths]\ndata_dir = "data"\n[training]\nbootstrap_data = "{SAMPLE}"\n', encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE_SETTINGS"] = str(settings)

    def run(*args: str) -> subprocess.CompletedProcess:
        """Run one command to its end and keep both streams apart."""
        return subprocess.run(
            [sys.executable, "-m", "scoring", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    run.env = env  # type: ignore[attr-defined]
    return run


def json_lines(text: str) -> list[str]:
    """Return the lines of text that are JSON objects (a structured log line)."""
    found = []
    for line in text.splitlines():
        try:
            if isinstance(json.loads(line), dict):
                found.append(line)
        except ValueError:
            pass
    return found


def test_train_models_files_print_no_log_lines(dropscore):
    trained = dropscore("train")
    assert trained.returncode == 0, trained.stderr
    assert "version 1: promoted to champion" in trained.stdout
    listed = [dropscore(command) for command in ("models", "files", "runs")]
    for done in listed:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(("version", "id")), done.stdout
    for done in (trained, *listed):
        # what a terminal shows is both streams: no JSON, and no INFO line in either
        assert json_lines(done.stdout + done.stderr) == []
        assert "info:" not in done.stderr
    # the trainer's progress lines stay: a person watching wants them
    assert "fitting linear_regression" in trained.stderr


def test_verbose_logs_readable_lines_on_stderr_only(dropscore, tmp_path):
    ingested = dropscore("--verbose", "ingest", str(SAMPLE), "--kind", "train")
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.strip() == f"{SAMPLE}: #1 normalized 442 rows"
    assert "info: normalized (" in ingested.stderr and "rows=442" in ingested.stderr
    assert json_lines(ingested.stdout + ingested.stderr) == []
    quiet = dropscore("ingest", str(SAMPLE), "--kind", "train")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "duplicate" in quiet.stdout


def test_log_level_still_chooses_the_level(dropscore):
    ingested = dropscore("--log-level", "info", "ingest", str(SAMPLE), "--kind", "train")
    assert "info: normalized" in ingested.stderr


def test_human_formatter_puts_the_extras_after_the_event():
    record = logging.LogRecord("dropscore", logging.WARNING, __file__, 1, "no model yet", (), None)
    record.run_id = 3
    record.reason = "0 training rows in the lake"
    line = HumanFormatter().format(record)
    assert line == "warning: no model yet (run_id=3, reason=0 training rows in the lake)"


def test_services_keep_json_logs(dropscore):
    # `worker` is a service: its first line on stderr is a JSON log line at INFO
    worker = subprocess.Popen(
        [sys.executable, "-m", "scoring", "worker"],
        env=dropscore.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert json.loads(first)["level"] == "info", first
    finally:
        worker.terminate()
        worker.communicate(timeout=120)
