"""What ``dropscore score`` imports on a Parquet file, and on which thread (issue 23, point 3).

A short run's cost is mostly start-up: scipy, for the drift report's KS p-value, cost about
1.1 CPU-s per run, imported on the main thread after the last batch (with ``scipy.spatial``,
for the Jensen–Shannon distance), and pandas 0.3 more, imported by pyarrow's ``to_numpy`` in
the drift thread. The real command runs here in a subprocess with an import hook that writes
down, for each watched package, the thread that first asked for it: scipy may be imported only
by the thread the drift watch starts beside the scoring, once a batch is scored; pandas not at
all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SAMPLE

# Runs `dropscore ARGS` with a finder in front of every other that only records, then finds
# nothing (the real finders import the module as usual).
HOOK = """
import json, sys, threading
seen, out = {}, sys.argv[1]
WATCHED = ("scipy", "pandas")
class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in seen:
            seen[name] = threading.current_thread().name
            with open(out, "w") as fh:
                json.dump(seen, fh)
        return None
sys.meta_path.insert(0, Recorder())
sys.argv = ["dropscore", *sys.argv[2:]]
from scoring.service.cli import main
main()
"""


def dropscore(settings: Path, *args: str, hook: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command (under the import hook when one is given) on these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    start = [sys.executable, "-c", HOOK, str(hook)] if hook else [sys.executable, "-m", "scoring"]
    return subprocess.run(
        [*start, "--settings", str(settings), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Train the shipped default model, score a Parquet file under the hook; what it saw."""
    root = tmp_path_factory.mktemp("imports")
    settings = root / "settings.toml"
    settings.write_text(
        f'[paths]\ndata_dir = "{root / "data"}"\n\n[training]\nbootstrap_data = "{SAMPLE}"\n',
        "utf-8",
    )
    trained = dropscore(settings, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    src = root / "in.parquet"
    pd.read_csv(SAMPLE).drop(columns=["target"]).to_parquet(src, index=False)
    hook = root / "imports.json"
    done = dropscore(settings, "score", str(src), "-o", str(root / "out.parquet"), hook=hook)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("scored 442 rows"), done.stdout
    assert "drift: " in done.stderr, done.stderr  # the report was made: the KS test ran
    return (json.loads(hook.read_text()) if hook.exists() else {}), done


def test_scipy_is_imported_beside_the_scoring_not_after_it(scored):
    seen, _ = scored
    assert seen.get("scipy") == "dropscore-scipy", seen


def test_a_parquet_run_never_imports_pandas(scored):
    seen, _ = scored
    assert "pandas" not in seen, seen
