"""Benchmark a promotion under load: ``/predict`` with no retrain beside the same load during one.

One run, one machine: a real ``dropscore serve`` (or ``dropscore api --workers 2`` plus
``dropscore worker`` with ``--mode api``) on 127.0.0.1 and a temporary data folder. Client threads
with keep-alive sessions post ``/predict`` continuously for two phases of equal length:

1. baseline — nothing else happens;
2. reload — a labelled file is dropped into ``inbox/train/`` and ``POST /train`` retrains with
   ``promote = always``, so a new version is promoted in the middle of the phase.

It prints requests/s and p50/p99 latency of each phase, the failed requests (goal 0), and for
each API process the time from the promotion to its first answer from the new version
(goal < 1 s; every session learns its process id from ``/health`` on the same connection).

    .venv/bin/python -m bench.reload                    # serve, 8 threads, 10 s per phase
    .venv/bin/python -m bench.reload --mode api --seconds 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scoring.testing.load import (
    Answer,
    Load,
    promote_under_load,
    stale_after_switch,
    summarize,
    switch_seconds,
)
from scoring.testing.ports import free_port
from scoring.testing.processes import contextmanager_for, process_env, wait_ready

# -- the benchmark --------------------------------------------------------------------------


def bench(mode: str, seconds: float, threads: int, folder: Path) -> None:
    port = free_port()
    data_dir = folder / "data"
    url = f"http://127.0.0.1:{port}"
    env = process_env(data_dir, port)
    with contextmanager_for(mode, env, folder) as procs:
        wait_ready(url, procs[0])
        load = Load(url, threads).start()
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        time.sleep(seconds / 4)  # the retrain starts a quarter into the second phase
        version, promoted_at = promote_under_load(url, data_dir)
        time.sleep(max(0.0, t1 + seconds - time.time()))
        t2 = time.time()
        answers = load.stop()
    report(mode, threads, answers, (t0, t1, t2), version, promoted_at)


def report(
    mode: str,
    threads: int,
    answers: list[Answer],
    marks: tuple[float, float, float],
    version: str,
    promoted_at: float,
) -> None:
    t0, t1, t2 = marks
    print(f"dropscore {mode}, {threads} client threads, keep-alive, {t1 - t0:.0f} s per phase")
    print(f"{'phase':<22}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    phases = (("no retrain (baseline)", (t0, t1)), ("retrain + promotion", (t1, t2)))
    for name, (start, end) in phases:
        s = summarize(answers, start, end)
        print(
            f"{name:<22}{s['requests']:>10}{s['rps']:>10.0f}{s['p50_ms']:>9.2f}"
            f"{s['p99_ms']:>9.2f}{s['failed']:>8}"
        )
    print(f"failed requests in total: {sum(not a.ok for a in answers)} (goal 0)")
    switched = switch_seconds(answers, version, promoted_at)
    for pid, delay in sorted(switched.items()):
        print(
            f"process {pid}: first answer from v{version} {delay:.3f} s after promotion"
            " (goal < 1 s)"
        )
    stale = stale_after_switch(answers, version)
    print(f"answers from the old version after a process switched: {stale} (goal 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["serve", "api"], default="serve")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropscore-reload-") as folder:
        bench(args.mode, args.seconds, args.threads, Path(folder))


if __name__ == "__main__":
    main()
