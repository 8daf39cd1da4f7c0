"""Benchmark ``POST /predict`` with the prediction log at ``log_fraction = 1.0`` against 0.

Two ``dropscore api`` servers (gunicorn, as ``bench.predict`` runs it) serve the same champion
from one data folder, one with ``[monitoring] log_fraction = 1`` (every request logged) and one
with the log off; both keep the live drift windows (``drift_on_scoring``, the default), so the
pair isolates the log. Only one server is loaded at a time: the runs alternate in ``--pairs``
pairs (the order swapped every pair), each after a warm-up, and the report gives the median and
range of the per-pair ratios (log / off) of req/s and p99; drift on a shared machine moves both
sides of a pair. ``--windows`` adds a third server with the windows off too, to show what the
windows cost. The parts the log wrote are counted at the end.

    .venv/bin/python -m bench.predlog                      # 3 pairs, 15 s per run, c=16
    .venv/bin/python -m bench.predlog --seconds 5 --pairs 5 --windows

Goal (issue 20): the log at 1.0 costs at most 10% of /predict req/s at c=16.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench._common import THREAD_VARIABLES, machine_load, ratios
from bench._servers import (
    HOST,
    Server,
    base_env,
    dropscore_cli,
    log,
    server_threads,
    train,
    warm_every_worker,
)
from bench._wrk import Load, Result, fmt_table, loadavg, pick_client

# What each server's [monitoring] says, by mode.
MODES = {
    "off": {"LOG_FRACTION": "0"},
    "log": {"LOG_FRACTION": "1", "LOG_FLUSH_SECONDS": "5"},
    "bare": {"LOG_FRACTION": "0", "DRIFT_ON_SCORING": "false"},  # --windows only
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    p.add_argument("--pairs", type=int, default=3, help="off/log pairs (at least 3)")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded load before each run")
    p.add_argument("--concurrency", type=int, default=16, help="connections")
    p.add_argument("--windows", action="store_true", help="also a server with windows off")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--train-retries", type=int, default=3, help="retries of a refused train")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    return p.parse_args(argv)


def server_for(mode: str, env: dict[str, str], work: Path, logs: Path) -> Server:
    """Start one ``dropscore api`` whose [monitoring] is the mode's."""
    workers, _threads = server_threads(env)
    denv = {**env, "DROPSCORE__SERVER__HOST": HOST, "DROPSCORE__SERVER__PORT": "{port}"}
    denv.update({f"DROPSCORE__MONITORING__{k}": v for k, v in MODES[mode].items()})
    server = Server(mode, [dropscore_cli(), "api", "--workers", str(workers)], denv, work, logs)
    server.start()
    server.wait_ready({})
    warm_every_worker(server, {})
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_load(), flush=True)
    if args.pairs < 1:
        raise SystemExit("--pairs needs at least 1")
    client, wrk = pick_client(args.client)
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-predlog-"))
    data_dir, proc_tmp, logs = work / "data", work / "tmp", work / "logs"
    for d in (data_dir, proc_tmp, logs):
        d.mkdir()
    env = base_env(data_dir, proc_tmp)
    for name in THREAD_VARIABLES:
        env.setdefault(name, "1")
    load = Load(client, wrk, work)
    modes = ["off", "log"] + (["bare"] if args.windows else [])
    servers: dict[str, Server] = {}
    results: dict[str, list[Result]] = {mode: [] for mode in modes}
    parts = 0
    try:
        log(f"temporary folder {work}; load average {loadavg()}; client {client}")
        train(env, work, args.train_retries)
        for mode in modes:
            servers[mode] = server_for(mode, env, work, logs)
        for pair in range(args.pairs):
            order = modes if pair % 2 == 0 else modes[::-1]
            for mode in order:
                server = servers[mode]
                load.run(server, mode, {}, args.concurrency, args.warmup, record=False)
                result = load.run(server, mode, {}, args.concurrency, args.seconds)
                results[mode].append(result)
                log(f"  pair {pair + 1} {mode}: {result.rps:.0f} req/s, p99 {result.p99_ms:.2f}"
                    f" ms, non-200 {result.non200}")  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()  # a clean stop: each worker writes what its log holds
        parts = len(list((data_dir / "lake" / "predictions").glob("*.parquet")))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(fmt_table([r for group in zip(*results.values(), strict=True) for r in group]))
    rps = ratios([r.rps for r in results["log"]], [r.rps for r in results["off"]])
    p99 = ratios([r.p99_ms for r in results["log"]], [r.p99_ms for r in results["off"]])
    print(f"req/s log / off: {rps}  (goal: at least ×0.90)")
    print(f"p99 log / off:   {p99}")
    if args.windows:
        bare = ratios([r.rps for r in results["off"]], [r.rps for r in results["bare"]])
        print(f"req/s windows / bare: {bare}")
    print(f"prediction log parts written: {parts}")
    return 0 if rps.median >= 0.90 else 1


if __name__ == "__main__":
    sys.exit(main())
