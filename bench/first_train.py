"""First training of a fresh data folder vs later retrains, for ``dropscore serve``.

Each round starts ``dropscore serve`` on a new data folder with the shipped settings and the
sample file: its first (bootstrap) training runs before ``/ready``; then two forced retrains
run over ``POST /train?force=true``. Reported per round: the runs' own durations (``started_at``
→ ``finished_at``), the wall clock to ``/ready``, the serving process's CPU seconds and RSS at
``/ready``, and the first training's ``trainer step`` log lines (seconds since the trainer
started). Several pythons (``LABEL=PATH``, each an install of dropscore, e.g. another checkout's
``.venv/bin/python``) alternate round by round, so a baseline is measured in the same session.

    .venv/bin/python -m bench.first_train --runs 3 new=.venv/bin/python old=../main/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from scoring.testing.checkout import SAMPLE, SETTINGS_FILE
from scoring.testing.ports import free_port


def call(url: str, post: bool = False) -> Any:
    req = urllib.request.Request(url, data=b"" if post else None, method="POST" if post else "GET")
    with urllib.request.urlopen(req, timeout=5) as answer:
        return json.loads(answer.read())


def seconds(run: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def one_round(python: str, retrains: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-first-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(SETTINGS_FILE),
        DROPSCORE__PATHS__DATA_DIR=str(tmp / "data"),
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
    )
    url = f"http://127.0.0.1:{port}"
    with open(tmp / "serve.log", "w") as log:
        began = time.monotonic()
        proc = subprocess.Popen(
            [python, "-m", "scoring", "serve"], cwd=tmp, env=env, stdout=log, stderr=log
        )
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit((tmp / "serve.log").read_text())
                try:
                    if call(url + "/ready")["status"] == "ready":
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            ready = time.monotonic() - began
            serving = psutil.Process(proc.pid)
            cpu = sum(serving.cpu_times()[:2])
            rss = serving.memory_info().rss / 2**20
            first = call(url + "/runs")["runs"][-1]
            later = []
            for _ in range(retrains):
                run_id = call(url + "/train?force=true", post=True)["run_id"]
                while (run := call(f"{url}/runs/{run_id}"))["state"] in ("queued", "running"):
                    time.sleep(0.1)
                later.append(round(seconds(run), 2))
        finally:
            proc.terminate()
            proc.wait(60)
    steps = [
        (e["step"], e["seconds"])
        for e in map(json.loads, filter(None, (tmp / "serve.log").read_text().splitlines()))
        if e.get("event") == "trainer step"
    ]
    shutil.rmtree(tmp, ignore_errors=True)
    ended = [i for i, (step, _s) in enumerate(steps) if step == "trainer ended"]
    return {
        "first": round(seconds(first), 2),
        "later": later,
        "ready": round(ready, 2),
        "serve_cpu_at_ready": round(cpu, 2),
        "serve_rss_mb_at_ready": round(rss),
        "first_steps": steps[: ended[0] + 1] if ended else [],  # the bootstrap training's
    }


def main() -> None:
    """Alternate the pythons round by round and print each round, then a summary per python."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds per python")
    parser.add_argument("--retrains", type=int, default=2, help="forced retrains per round")
    parser.add_argument("pythons", nargs="*", help="LABEL=PATH (default: this python)")
    args = parser.parse_args()
    pythons = [p.split("=", 1) for p in args.pythons] or [["this", sys.executable]]
    pythons = [[label, os.path.abspath(path)] for label, path in pythons]  # serve runs elsewhere
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for i in range(args.runs):
        for label, python in pythons:
            result = one_round(python, args.retrains)
            results.setdefault(label, []).append(result)
            print(label, i, json.dumps(result), f"load {os.getloadavg()[0]:.1f}", flush=True)
    for label, rounds in results.items():
        print(
            f"{label}: first {[r['first'] for r in rounds]} s; later"
            f" {[x for r in rounds for x in r['later']]} s; ready {[r['ready'] for r in rounds]} s;"
            f" serve CPU at ready {[r['serve_cpu_at_ready'] for r in rounds]} s"
        )


if __name__ == "__main__":
    main()
