"""Start-up: wall clock from exec to ``GET /ready`` 200 for ``dropscore serve`` with a model.

A model is trained once into a private data folder; then ``dropscore serve`` is started
``--runs`` times, each run timed from just before exec to the first 200 from ``/ready`` and then
to the first 200 from ``POST /predict`` (one row); the CPU seconds the process had used when
``/ready`` first answered are printed too, a figure a busy machine disturbs far less than the
wall clock. Each run also records ``python -X importtime``
of the same start into a log; the slowest imports (cumulative, top-level packages) of the last
run are printed as a table, which is how the import cost is reported before and after a change.

Goal (issue 13): ready in ≤ 2 s with a model present, on a quiet machine.

    .venv/bin/python -m bench.startup            # 5 runs
    .venv/bin/python -m bench.startup --runs 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import machine_load
from bench._measure import end_all, track
from bench.score import dropscore_bin, dropscore_env, train

GOAL_SECONDS = 2.0
LIMIT_SECONDS = 120.0
ROW = {"age": 0.03, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04}
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> float:
    """Poll check until it is true; return the perf_counter time it first was."""
    deadline = time.monotonic() + LIMIT_SECONDS
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"dropscore serve exited:\n{log.read_text()[-3000:]}")
        if check():
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise SystemExit(f"dropscore serve was not ready within {LIMIT_SECONDS:.0f}s")
        time.sleep(0.01)


def status_of(method: str, url: str, body: dict[str, object] | None = None) -> int:
    """Answer one request's status, 0 when the server does not answer yet."""
    import requests

    try:
        return requests.request(method, url, json=body, timeout=2).status_code
    except requests.RequestException:
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_start(env: dict[str, str], port: int, log: Path) -> tuple[float, float, float]:
    """Start serve once; return seconds to /ready 200, its CPU seconds then, to /predict 200."""
    url = f"http://127.0.0.1:{port}"
    env = {**env, "DROPSCORE__SERVER__PORT": str(port), "PYTHONPROFILEIMPORTTIME": "1"}
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [dropscore_bin(), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    track(proc)
    try:
        ready = wait_for(lambda: status_of("GET", url + "/ready") == 200, proc, log)
        cpu = cpu_seconds(proc.pid)
        features = {**ROW, "s2": 0.01, "s3": 0.0, "s4": 0.0, "s5": 0.0, "s6": 0.0}
        first = wait_for(
            lambda: status_of("POST", url + "/predict", {"features": features}) == 200, proc, log
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return ready - started, cpu, first - started


def import_table(log: Path, top: int = 15) -> list[tuple[str, float]]:
    """The slowest top-level packages by ``-X importtime`` cumulative seconds, by whomever."""
    totals: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = IMPORT_LINE.search(line)
        if found is None or "." in found.group(4):
            continue
        name = found.group(4)
        totals[name] = max(totals.get(name, 0.0), int(found.group(2)) / 1e6)
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts to time")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    from scoring.testing.ports import free_port

    print(machine_load(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-startup-", dir=args.tmp))
    try:
        env = dropscore_env(work / "data")
        print(f"training the sample model in {work / 'data'} …", flush=True)
        train(env, work / "train.log")
        ready: list[float] = []
        cpu: list[float] = []
        predict: list[float] = []
        for run in range(args.runs):
            log = work / f"serve-{run}.log"
            r, c, p = one_start(env, free_port(), log)
            ready.append(r)
            cpu.append(c)
            predict.append(p)
            print(
                f"  run {run + 1}: /ready 200 after {r:.2f}s ({c:.2f} CPU s),"
                f" first /predict 200 {p:.2f}s"
            )
        print(
            f"\n`dropscore serve` (model present), {args.runs} runs:"
            f" /ready median {statistics.median(ready):.2f}s"
            f" (range {min(ready):.2f}–{max(ready):.2f}),"
            f" CPU s median {statistics.median(cpu):.2f};"
            f" first /predict median {statistics.median(predict):.2f}s"
        )
        print("\nimports of the last start (-X importtime, cumulative s, top-level packages):")
        for package, seconds in import_table(work / f"serve-{args.runs - 1}.log"):
            print(f"  {package:<28} {seconds:6.3f}")
        ok = statistics.median(ready) <= GOAL_SECONDS
        print(f"\ngoal (/ready ≤ {GOAL_SECONDS:.0f} s): {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        end_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
