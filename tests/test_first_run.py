"""A first run: the settings file a command uses is said, `dropscore init` in an empty folder
leads to a served model, and the first training costs the serving process no heavy imports.

Real processes (the CLI, a serve on a free port, the trainer child), real files, real SQLite.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import requests

from scoring.service.model_section import new_settings_text, sample_settings

from .conftest import ROOT, SAMPLE, free_port
from .test_e2e_serve import NAMED, Server

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}


def dropscore(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scoring", *args],
        cwd=cwd,
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def on_a_terminal(*args: str, cwd: Path) -> tuple[str, str]:
    """Run dropscore with its standard error on a pseudo-terminal, as a person sees it."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "scoring", *args],
            cwd=cwd,
            env=CLEAN_ENV,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=300,
            check=False,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0, seen
    return done.stdout, seen.decode().replace("\r\n", "\n")


def test_a_command_on_a_terminal_says_which_settings_file_it_uses(tmp_path):
    _out, err = on_a_terminal("runs", cwd=tmp_path)
    assert err.splitlines()[0] == (
        "settings: no settings file (none given with --settings or DROPSCORE_SETTINGS, and no"
        " ./settings.toml): built-in defaults, model 'default' predicting column 'target', data"
        f" folder {tmp_path / 'data'}; run `dropscore init NAME --target COLUMN FILE` to write one"
    )
    (tmp_path / "settings.toml").write_text('[paths]\ndata_dir = "here"\n', encoding="utf-8")
    out, err = on_a_terminal("runs", cwd=tmp_path)
    assert err.splitlines() == [
        f"settings: {tmp_path / 'settings.toml'} (data folder {tmp_path / 'here'})"
    ]
    assert out == "no retrain runs yet\n"  # the answer itself is unchanged


def test_piped_the_settings_line_is_a_log_line_shown_with_verbose(tmp_path):
    quiet = dropscore("runs", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    verbose = dropscore("-v", "runs", cwd=tmp_path)
    assert "info: settings: no settings file" in verbose.stderr


def test_the_packaged_settings_file_is_the_shipped_one():
    """One source: the package's copy (what `init` writes from) is the repository's file."""
    assert sample_settings() == (ROOT / "settings.toml").read_text(encoding="utf-8"), (
        "copy settings.toml to scoring/service/sample_settings.toml"
    )


def test_a_new_settings_file_keeps_the_comments_and_serves_only_the_added_model():
    text = new_settings_text(sample_settings())
    parsed = tomllib.loads(text)
    assert "model" not in parsed and parsed["training"]["bootstrap_data"] == ""
    assert "# target = \"target\"" in text and "# column the model learns to predict" in text
    kept = [line for line in sample_settings().splitlines() if line.startswith("#")]
    assert all(line in text.splitlines() for line in kept)


@pytest.mark.slow
def test_init_in_an_empty_folder_then_serve_trains_and_serves_it(tmp_path):
    sample = tmp_path / "diabetes.csv"
    sample.write_bytes(SAMPLE.read_bytes())
    folder = tmp_path / "service"
    folder.mkdir()
    done = dropscore("init", "sugar", "--target", "target", str(sample), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        "took diabetes.csv as the first training drop (442 rows, file #1 normalized)",
        "next: run `dropscore serve` here (`kill -HUP` it if it runs): it trains 'sugar' on it and"
        " serves it at /models/sugar/predict",
    ]
    written = (folder / "settings.toml").read_text(encoding="utf-8")
    assert written.startswith(sample_settings().splitlines()[0])  # the commented defaults
    assert tomllib.loads(written)["models"]["sugar"]["target"] == "target"

    port = free_port()
    env = {**CLEAN_ENV, "DROPSCORE__SERVER__PORT": str(port)}
    server = Server(["serve"], env, port, tmp_path / "serve.log", cwd=folder)
    try:
        assert server.ready(timeout=240)["models"] == {"sugar": "1"}
        answer = requests.post(
            f"{server.url}/models/sugar/predict", json={"features": NAMED}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
    finally:
        assert server.stop() == 0
    events = [json.loads(line) for line in server.log.read_text().splitlines() if line[:1] == "{"]
    said = [e for e in events if e["event"] == "settings"]
    assert said and said[0]["settings_file"] == str(folder / "settings.toml")
    # the first training's steps are logged, each with the seconds since its trainer started
    steps = [e for e in events if e["event"] == "trainer step"]
    first = [e["step"] for e in steps][:2]
    assert first == ["training libraries loaded", "reading the training lake"]
    assert steps[-1]["step"] == "trainer ended" and {"seconds", "cpu_seconds"} <= steps[-1].keys()


def test_the_first_retrain_leaves_scikit_learn_out_of_the_serving_process(tmp_path):
    """The trainer child fits; the process that ran the retrain never loads scikit-learn nor
    skops (they cost it seconds of CPU on the first run, and its memory for good)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from ingest.state.db import StateDB
        from scoring.lifecycle.registry import Registry
        from scoring.lifecycle.runner import run_retrain
        from scoring.service.runtime import open_intake
        from scoring.settings import load_settings

        settings = load_settings(None, env={{}}, overrides={{
            "paths": {{"data_dir": {str(tmp_path / "data")!r}}},
            "training": {{"bootstrap_data": ""}},
        }})
        assert open_intake(settings)[2].take_copy({str(SAMPLE)!r}, "train").state == "normalized"
        registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
        run = run_retrain(settings, registry, trigger="bootstrap")
        heavy = sorted(m for m in ("sklearn", "skops", "scipy") if m in sys.modules)
        print(json.dumps({{"state": run.state, "version": run.version, "heavy": heavy}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")},
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"state": "succeeded", "version": 1, "heavy": []}
    assert Path(tmp_path / "data" / "models").is_dir()
