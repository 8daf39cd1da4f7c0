"""Benchmark ``POST /predict`` with a shadow challenger at fraction 1.0 against traffic off.

One ``dropscore api`` (gunicorn, as ``bench.predict`` runs it) serves a champion and a second
version trained with ``dropscore train --force``; ``dropscore traffic`` switches the model
between ``off`` and ``shadow --fraction 1`` (the challenger: the newest version that is not the
champion) while the server runs, so both sides of a pair are the same processes. The modes
alternate in ``--pairs`` pairs (the order swapped every pair), each run after a warm-up, and the
report gives the median and range of the per-pair ratios (shadow / off) of req/s and of p99:
drift on a shared machine moves both sides of a pair. The shadow's own figures (requests it
repeated, drops of a full queue, errors) come from ``GET /challenger`` at the end.

    .venv/bin/python -m bench.shadow                      # 3 pairs, 15 s per run, c=16
    .venv/bin/python -m bench.shadow --seconds 5 --pairs 5 --concurrency 4
    .venv/bin/python -m bench.shadow --aa     # both sides off: the noise floor of the ratio

Goal (issue 21): the champion's p99 with the shadow within 10% of the p99 without it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import THREAD_VARIABLES, machine_load, ratios
from bench._servers import (
    HOST,
    Server,
    base_env,
    dropscore_cli,
    log,
    request,
    server_threads,
    train,
    warm_every_worker,
)
from bench._wrk import Load, Result, fmt_table, loadavg, pick_client

FOLLOW_SECONDS = 2.0  # every worker reads the setting again within a second; wait twice that
MODES = ("off", "shadow")
AGAIN = "off again"  # --aa: the second side of a pair, traffic off as on the first


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    p.add_argument("--pairs", type=int, default=3, help="off/shadow pairs (at least 3)")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded load after a switch")
    p.add_argument("--concurrency", type=int, default=16, help="connections")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--train-retries", type=int, default=3, help="retries of a refused train")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    p.add_argument("--aa", action="store_true",
                   help="run 'off' on both sides of each pair: how far the ratio moves by itself")
    return p.parse_args(argv)


def set_mode(env: dict[str, str], work: Path, mode: str) -> None:
    """Switch the served model's traffic with the command a person runs, then let it follow."""
    mode = "off" if mode == AGAIN else mode
    cmd = [dropscore_cli(), "traffic", mode] + (["--fraction", "1"] if mode == "shadow" else [])
    done = subprocess.run(
        cmd, env=env, cwd=work, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"dropscore traffic {mode} failed: {done.stdout}{done.stderr}")
    log(f"  traffic: {done.stdout.strip().splitlines()[0]}")
    time.sleep(FOLLOW_SECONDS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_load(), flush=True)
    if args.pairs < 1:
        raise SystemExit("--pairs needs at least 1")
    client, wrk = pick_client(args.client)
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-shadow-"))
    data_dir, proc_tmp, logs = work / "data", work / "tmp", work / "logs"
    for d in (data_dir, proc_tmp, logs):
        d.mkdir()
    env = base_env(data_dir, proc_tmp)
    for name in THREAD_VARIABLES:
        env.setdefault(name, "1")
    load = Load(client, wrk, work)
    server: Server | None = None
    modes = ("off", AGAIN) if args.aa else MODES
    results: dict[str, list[Result]] = {mode: [] for mode in modes}
    try:
        log(f"temporary folder {work}; load average {loadavg()}; client {client}")
        train(env, work, args.train_retries)
        forced = subprocess.run(
            [dropscore_cli(), "train", "--force"], env=env, cwd=work, capture_output=True,
            text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if forced.returncode != 0:
            raise RuntimeError(f"the second version was not trained: {forced.stderr}")
        workers, _threads = server_threads(env)
        denv = {**env, "DROPSCORE__SERVER__HOST": HOST, "DROPSCORE__SERVER__PORT": "{port}"}
        server = Server("dropscore", [dropscore_cli(), "api", "--workers", str(workers)],
                        denv, work, logs)  # fmt: skip
        server.start()
        server.wait_ready({})
        warm_every_worker(server, {})
        for pair in range(args.pairs):
            order = modes if pair % 2 == 0 else modes[::-1]
            for mode in order:
                set_mode(env, work, mode)
                load.run(server, mode, {}, args.concurrency, args.warmup, record=False)
                result = load.run(server, mode, {}, args.concurrency, args.seconds)
                results[mode].append(result)
                log(f"  pair {pair + 1} {mode}: {result.rps:.0f} req/s, p99 {result.p99_ms:.2f}"
                    f" ms, non-200 {result.non200}")  # fmt: skip
        status, body = request(server.port, "GET", "/challenger", None, {}, timeout=30)
        shadow = json.loads(body).get("shadow", []) if status == 200 else []
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(fmt_table([r for pair in zip(*results.values(), strict=True) for r in pair]))
    other = modes[1]
    rps = ratios([r.rps for r in results[other]], [r.rps for r in results["off"]])
    p99 = ratios([r.p99_ms for r in results[other]], [r.p99_ms for r in results["off"]])
    print(f"req/s {other} / off: {rps}")
    print(f"p99 {other} / off:   {p99}  (goal: at most ×1.10)")
    for day in shadow:
        print(f"shadow {day['day']} version {day['version']}: {json.dumps(day['figures'])}")
    return 0 if p99.median <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
