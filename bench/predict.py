"""Benchmark ``POST /predict``: ``dropscore api`` against the bare Flask peer as it ships.

The peer (``bench/predict_baseline.py``) is the Flask tutorial app under the tutorial's own
command, ``gunicorn -w 2 app:app``: sync workers and gunicorn's defaults, in the environment as
given. dropscore runs as a user starts it, ``dropscore api`` (or ``--command serve``) with the
shipped settings and, by default, an API key on every request (``--no-auth`` without; then one
extra keyed run at the highest level says what the key costs). Both serve the pipeline
``dropscore train`` wrote into a temporary data folder. Only one server runs at a time. The two
alternate in ``--pairs`` pairs (the order swapped every pair), each server taking every
concurrency level once started, and the report gives per level the median of the per-pair
ratios of req/s, p50 and p99 with their range: drift on a shared machine moves both sides.

Load comes from ``wrk`` (``apt-get install -y wrk``) with a Lua script that posts the body,
counts every non-200 answer and prints the latency percentiles; without wrk a Python client
(threads, keep-alive ``http.client``) stands in, and the table says which one ran.

    .venv/bin/python -m bench.predict                 # 3 pairs, 15 s per run, c=1 and c=16
    .venv/bin/python -m bench.predict --seconds 5 --pairs 5
    .venv/bin/python -m bench.predict --no-auth       # dropscore without a key, + one keyed run
    .venv/bin/python -m bench.predict --command serve # `dropscore serve` (waitress) instead
    .venv/bin/python -m bench.predict --key-cost      # dropscore without vs with the key, paired

Goals (issue 23): with the key on, dropscore's p99 at c=16 no longer than the peer's in every
pair, at >= 1.5x its req/s.
Modules: ``_servers`` (processes and set-up), ``_wrk`` (load and the results table),
``_inprocess`` (µs per layer); this file orchestrates and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench._common import THREAD_VARIABLES, machine_load, ratios
from bench._inprocess import in_process
from bench._servers import (
    HOST,
    Server,
    base_env,
    champion_path,
    check,
    dropscore_cli,
    gunicorn_cli,
    log,
    server_threads,
    train,
    warm_every_worker,
)
from bench._wrk import Load, Result, fmt_table, loadavg, pick_client
from bench.predict_baseline import MODEL_VARIABLE as BASELINE_MODEL
from scoring.testing.checkout import ROOT

API_KEY = "bench-predict-key-0123456789"
BASELINE_APP = "bench.predict_baseline:app"  # the tutorial's `app:app`, importable from ROOT
NOISY_PCT = 25.0  # % of one core used by other work during a run before the report warns


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    p.add_argument("--pairs", type=int, default=3, help="baseline/dropscore pairs (at least 1)")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded load after start-up")
    p.add_argument(
        "--concurrency", default="1,16", help="comma-separated connection counts (default 1,16)"
    )
    p.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run dropscore with an API key in every pair (the default: the key on, as issue 23"
        " asks); --no-auth runs it without one and adds one keyed run at the highest level",
    )
    p.add_argument(
        "--no-auth-run",
        action="store_true",
        help="with --no-auth: skip the extra dropscore-with-API-key run at the highest level",
    )
    p.add_argument(
        "--key-cost",
        action="store_true",
        help="pair dropscore without the key against dropscore with it (no peer): what the key"
        " costs, as per-pair ratios",
    )
    p.add_argument(
        "--threads-vs",
        type=int,
        default=0,
        metavar="N",
        help="pair dropscore with the shipped [server] threads against dropscore with N (no peer)",
    )
    p.add_argument(
        "--command",
        choices=("api", "serve"),
        default="api",
        help="how dropscore is started, as a user would: `dropscore api` or `dropscore serve`",
    )
    p.add_argument(
        "--estimator",
        default="",
        help="train this [model] estimator instead of settings.toml's (e.g. ridge, random_forest)",
    )
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--inprocess-seconds", type=float, default=2.0, help="budget per µs figure")
    p.add_argument("--train-retries", type=int, default=3, help="retries of a refused train")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    return p.parse_args(argv)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit and SIGINT KeyboardInterrupt, so clean-up always runs
    (a shell starts background jobs with SIGINT ignored; we want Ctrl-C and kill -INT alike)."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_load(), flush=True)
    if args.pairs < 1:
        raise SystemExit("--pairs needs at least 1")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        raise SystemExit("--concurrency needs positive integers")
    client, wrk = pick_client(args.client)
    if client == "python":
        log(
            "load generator: Python threads + http.client keep-alive"
            + ("" if wrk else " (wrk not found; install it: apt-get install -y wrk)")
        )

    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-predict-"))
    data_dir, proc_tmp, logs = work / "data", work / "tmp", work / "logs"
    for d in (data_dir, proc_tmp, logs):
        d.mkdir()
    results: list[Result] = []
    load = Load(client, wrk, work)
    try:
        with signals_raise():
            env = base_env(data_dir, proc_tmp)
            peer_env = dict(env)  # the peer runs in the environment as given, as it ships
            # dropscore gets the thread variables `dropscore api` sets itself (one math thread
            # per request thread), unless the caller set them.
            for name in THREAD_VARIABLES:
                env.setdefault(name, "1")
            log("thread settings for dropscore: "
                + ", ".join(f"{k}={env[k]}" for k in THREAD_VARIABLES))  # fmt: skip
            if args.estimator:
                env["DROPSCORE__MODEL__ESTIMATOR"] = args.estimator
            log(f"temporary folder {work}; load average {loadavg()}; {os.cpu_count()} CPUs")
            log("training with `dropscore train` ...")
            train(env, work, args.train_retries)
            version, model_path = champion_path(env)
            workers, threads = server_threads(env)
            log(f"champion v{version} at {model_path}; dropscore {args.command}: {workers}"
                f" workers × {threads} threads (shipped settings); baseline: gunicorn -w 2"
                " app:app (sync workers, gunicorn defaults)")  # fmt: skip

            def baseline() -> tuple[Server, dict[str, str]]:
                # The peer as it ships: the tutorial's `gunicorn -w 2 app:app`, sync workers and
                # gunicorn's defaults (only the port given), in the environment we were given.
                cmd = [gunicorn_cli(), "-w", "2", "-b", f"{HOST}:{{port}}", BASELINE_APP]
                benv = {**peer_env, BASELINE_MODEL: str(model_path)}
                return Server("baseline", cmd, benv, ROOT, logs), {}

            def dropscore(auth: bool, threads: int = 0) -> tuple[Server, dict[str, str]]:
                denv = {**env, "DROPSCORE__SERVER__HOST": HOST, "DROPSCORE__SERVER__PORT": "{port}"}
                if threads:  # another [server] threads than the shipped one
                    denv["DROPSCORE__SERVER__THREADS"] = str(threads)
                headers = {}
                if auth:
                    denv["DROPSCORE_API_KEYS"] = API_KEY
                    headers = {"Authorization": f"Bearer {API_KEY}"}
                # As a user starts it: `dropscore api` with the shipped settings, or `serve`.
                cmd = [dropscore_cli(), args.command]
                name = "dropscore+auth" if auth else "dropscore"
                name += f"-t{threads}" if threads else ""
                single = args.command == "serve"
                return Server(name, cmd, denv, work, logs, single), headers

            predictions: dict[str, float] = {}

            def measure(
                make: Callable[[], tuple[Server, dict[str, str]]], levels: list[int]
            ) -> list[Result]:
                """Start one server, warm every worker, then load it at each level in turn."""
                server, headers = make()
                log(f"starting {server.name} on {server.url}")
                out = []
                try:
                    server.start()
                    server.wait_ready(headers)
                    check(server, headers, predictions)
                    if args.warmup > 0:  # every worker loads its model before the clock runs
                        c = max(levels)
                        warm = load.run(
                            server, server.name, headers, max(c, 4), args.warmup, record=False
                        )
                        if warm.error_detail:
                            log(f"!!! {server.name} warm-up: {warm.error_detail}")
                    warm_every_worker(server, headers)
                    for c in levels:
                        log(f"c={c}: {server.name} load for {args.seconds:g}s ({client})")
                        result = load.run(server, server.name, headers, c, args.seconds)
                        if server.proc is None or server.proc.poll() is not None:
                            raise RuntimeError(f"{server.name} died\n{server.log_tail()}")
                        log(f"c={c}: {server.name}: {result.rps:.0f} req/s,"
                            f" p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
                            f" load {result.load}")  # fmt: skip
                        if result.error_detail:
                            log(f"!!! {server.name} c={c}: {result.error_detail}")
                        out.append(result)
                finally:
                    server.stop()
                return out

            for pair in range(args.pairs):
                order = [baseline, lambda: dropscore(args.auth)]
                if args.key_cost:  # the same server without and with the key, paired
                    order = [lambda: dropscore(False), lambda: dropscore(True)]
                if args.threads_vs:  # the shipped [server] threads against another count
                    order = [
                        lambda: dropscore(args.auth),
                        lambda: dropscore(args.auth, args.threads_vs),
                    ]
                if pair % 2:  # swap who goes first, so a trend in the load favours neither
                    order.reverse()
                log(f"pair {pair + 1} of {args.pairs}")
                for make in order:
                    for r in measure(make, levels):
                        r.extra["pair"] = pair
                        results.append(r)
            if not args.auth and not (args.no_auth_run or args.key_cost or args.threads_vs):
                results += measure(lambda: dropscore(True), [max(levels)])

            log("in-process µs per call ...")
            micro = in_process(env, model_path, version, args.inprocess_seconds)

        report(results, micro, load, args, version)
        bad = [r for r in results if r.non200 or r.socket_errors]
        return 1 if bad else 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(
    results: list[Result], micro: list[str], load: Load, args: argparse.Namespace, version: str
) -> None:
    print()
    print("=" * 100)
    print(
        f"POST /predict, model v{version}, {args.seconds:g} s per run, load generator:"
        f" {load.client}{' (Python threads: the client itself may be the limit)' if load.client == 'python' else ''}"  # noqa: E501
    )
    print("ratio = dropscore req/s ÷ baseline req/s at the same concurrency (goal ≥ 1.50 at 16);")
    print("cpu µs/req = user+system CPU of the server's workers ÷ requests; other cpu = busy CPU")
    print(f"of everything else on the machine meanwhile (of {os.cpu_count()} cores × 100%, kernel")
    print("network work included); load = 1/5/15-min load average after the run")
    print()
    print(fmt_table(results))
    print()
    print("pairs (median of the per-pair ratios, range; ≥ 1.00 favours dropscore everywhere):")
    base_name = "dropscore" if args.key_cost else "baseline"
    if args.threads_vs:
        base_name = "dropscore+auth" if args.auth else "dropscore"
    for line in pair_summary(results, base_name):
        print(f"  {line}")
    bad = [r for r in results if r.non200 or r.socket_errors or r.error_detail]
    if bad:
        print()
        print("!" * 100)
        for r in bad:
            print(f"!!! FAILED REQUESTS: {r.server} c={r.concurrency}: {r.error_detail}")
        print("!" * 100)
    else:
        print("\nevery response was 200 (no non-2xx, no socket errors)")
    noisy = [r for r in results if r.others_pct > NOISY_PCT]
    if noisy:
        print(
            f"NOTE: other work used more than {NOISY_PCT:.0f}% of a core during"
            f" {', '.join(f'{r.server} c={r.concurrency}' for r in noisy)}: req/s and latency"
            " there are noisy; cpu µs/req (per request, not per second) is the steadier figure"
        )
    auth = [r for r in results if r.server == "dropscore+auth"]
    plain = {r.concurrency: r for r in results if r.server == "dropscore"}
    for r in auth:
        if r.concurrency in plain and plain[r.concurrency].rps > 0:
            print(
                f"auth cost at c={r.concurrency}: dropscore+auth / dropscore req/s ="
                f" {r.rps / plain[r.concurrency].rps:.2f}"
            )
    if load.client == "wrk":
        cpu = [f"{r.client_cpu_pct:.0f}%" for r in results if r.client_cpu_pct is not None]
        print(f"wrk CPU (of one core) per run: {', '.join(cpu)}")
        print("wrk commands:")
        for cmd in dict.fromkeys(re.sub(r"post-[\w+]+\.lua", "post-<server>.lua", c)
                                 for c in load.commands):  # fmt: skip
            print(f"  {cmd}")
    print()
    print("in-process, one BLAS thread (µs per call):")
    for line in micro:
        print(f"  {line}")
    print("=" * 100)


def pair_summary(results: list[Result], base_name: str = "baseline") -> list[str]:
    """Per concurrency level: throughput, p50 and p99 as median pair ratios with their range."""
    lines = []
    paired = [r for r in results if "pair" in r.extra]
    for c in sorted({r.concurrency for r in paired}):
        base = {r.extra["pair"]: r for r in paired if r.concurrency == c and r.server == base_name}
        mine = {r.extra["pair"]: r for r in paired if r.concurrency == c and r.server != base_name}
        keys = sorted(base.keys() & mine.keys())
        if not keys:
            continue
        b, m = [base[k] for k in keys], [mine[k] for k in keys]
        rps = ratios([r.rps for r in m], [r.rps for r in b])
        p50 = ratios([r.p50_ms for r in b], [r.p50_ms for r in m])  # baseline ÷ dropscore
        p99 = ratios([r.p99_ms for r in b], [r.p99_ms for r in m])
        med = statistics.median
        mine_name = m[0].server
        lines += [
            f"c={c}: req/s {mine_name} ÷ {base_name} {rps}",
            f"c={c}: p50 {base_name} ÷ {mine_name} {p50}; medians"
            f" {med(r.p50_ms for r in m):.2f} ms vs {med(r.p50_ms for r in b):.2f} ms",
            f"c={c}: p99 {base_name} ÷ {mine_name} {p99}; medians"
            f" {med(r.p99_ms for r in m):.2f} ms vs {med(r.p99_ms for r in b):.2f} ms"
            " (goal at c=16: ≥ 1.00)",
        ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
