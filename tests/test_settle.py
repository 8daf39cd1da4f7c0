"""A serving process takes what it holds for life out of the garbage collector's scans.

Run in a fresh interpreter, because freezing is for the life of a process: after ``settle`` the
app, the champion and every module are frozen, and a full collection walks only what requests
allocate since, instead of every object loaded (the pauses that lengthened the latency tail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import gc, json, sys
from scoring.api.app import create_app, warm
from scoring.service.server import settle
from scoring.settings import load_settings

app = warm(create_app(load_settings(None)))
client = app.test_client()
body = {"X_test": [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]}
assert client.post("/predict", json=body).status_code == 200
before = len(gc.get_objects())
assert settle(app) is app
for _ in range(200):
    assert client.post("/predict", json=body).status_code == 200
print("PROBE " + json.dumps({"before": before, "after": len(gc.get_objects()),
                             "frozen": gc.get_freeze_count()}))
"""


def test_settle_leaves_only_new_objects_to_the_collector(settings, trained):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["DROPSCORE__PATHS__DATA_DIR"] = str(settings.data_dir)
    env["DROPSCORE__TRAINING__BOOTSTRAP_DATA"] = '""'
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert lines, proc.stderr[-3000:]
    counts = json.loads(lines[-1][len("PROBE ") :])
    assert counts["before"] > 50_000  # the app, the model and the modules
    assert counts["frozen"] > counts["before"] * 0.9  # everything loaded
    assert counts["after"] < counts["before"] / 10  # what 200 requests left, not the world
