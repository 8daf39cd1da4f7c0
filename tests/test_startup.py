"""Commands that only read records answer without loading the model stack.

Each command runs in a fresh interpreter (a subprocess) against a data folder with a trained
model, and reports which of scikit-learn, pandas and skops it imported: none may be. A behaviour
test, not a timing: those imports are what made ``dropscore models`` take seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("sklearn", "pandas", "skops")

PROBE = (
    f"HEAVY = {HEAVY!r}\n"
    + """
import json, sys
from scoring.service.cli import main
try:
    main(sys.argv[1:], prog_name="dropscore")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("PROBE " + json.dumps({"exit": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""
)


def run_probe(settings, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``dropscore ARGS`` in a new interpreter; return its exit code and heavy imports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")} | (env or {})
    env["DROPSCORE__PATHS__DATA_DIR"] = str(settings.data_dir)
    env["DROPSCORE__TRAINING__BOOTSTRAP_DATA"] = '""'
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=settings.data_dir.parent,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert lines, f"no probe output\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(lines[-1][len("PROBE ") :]) | {"stdout": proc.stdout}


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("models",),
        ("models", "show", "1"),
        ("files",),
        ("keys", "list"),
        ("audit",),
        ("runs",),
    ],
    ids=" ".join,
)
def test_record_commands_do_not_import_the_model_stack(settings, trained, args):
    result = run_probe(settings, *args)
    assert result["exit"] == 0, result["stdout"]
    assert result["heavy"] == []


def test_models_lists_the_trained_version_without_the_model_stack(settings, trained):
    result = run_probe(settings, "models")
    assert "linear_regression" in result["stdout"]
    assert result["heavy"] == []


def test_record_commands_skip_the_params_check_that_needs_sklearn(settings, trained):
    # A wrong parameter is still refused by every command that builds a model (see
    # test_settings); the record commands do not build one, so they do not import sklearn
    # to check it.
    params = {"DROPSCORE__MODEL__ESTIMATOR": "ridge", "DROPSCORE__MODEL__PARAMS": "{ alpha = 0.5 }"}
    result = run_probe(settings, "models", env=params)
    assert result["exit"] == 0, result["stdout"]
    assert result["heavy"] == []


def test_commands_that_train_still_check_params(settings):
    from scoring.settings import SettingsError, load_settings

    overrides = {"paths": {"data_dir": str(settings.data_dir)}, "model": {"estimator": "ridge"}}
    bad = {**overrides, "model": {"estimator": "ridge", "params": {"alpah": 1}}}
    load_settings(None, env={}, overrides=bad, check_params=False)  # records only: accepted
    with pytest.raises(SettingsError, match="alpah not accepted by ridge"):
        load_settings(None, env={}, overrides=bad)


def test_help_loads_no_database_or_arrow_stack():
    """``dropscore --help`` (and every option list) needs neither SQLAlchemy nor pyarrow."""
    probe = (
        "import sys\n"
        "from scoring.service.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('sqlalchemy', 'pyarrow') if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert "LOADED []" in proc.stdout, proc.stdout[-500:]
