"""A first run: the settings file a command uses is said, `dropscore init` in an empty folder
leads to a served model, and the first training costs the serving process no heavy imports.

Real processes (the CLI, a serve on a free port, the trainer child), real files, real SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import SAMPLE


def test_the_first_retrain_leaves_scikit_learn_out_of_the_serving_process(tmp_path):
    """The trainer child fits; the process that ran the retrain never loads scikit-learn nor
    skops (they cost it seconds of CPU on the first run, and its memory for good)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from scoring.lifecycle.registry import Registry
        from scoring.lifecycle.runner import run_retrain
        from scoring.service.runtime import open_intake
        from scoring.settings import load_settings

        settings = load_settings(None, env={{}}, overrides={{
            "paths": {{"data_dir": {str(tmp_path / "data")!r}}},
            "training": {{"bootstrap_data": ""}},
        }})
        assert open_intake(settings)[2].take_copy({str(SAMPLE)!r}, "train").state == "normalized"
        registry = Registry(settings.models_dir, settings.db_path)
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
