"""Benchmark one `dropscore serve` serving many models: its memory, and /predict with 3 vs 1.

One temporary data folder holds ten named models ``m0`` … ``m9``, each the same small linear
regression trained on the bundled sample (each model's ``bootstrap_data`` is the sample, so the
first ``serve`` trains them all; that start is not measured). Then, in each pair, three real
``dropscore serve`` processes start in turn on that folder with settings naming the first 1, 3
and 10 models (the order reversed every other pair, so a trend in the machine's load favours
none):

(a) RSS: every model answers ``/models/<name>/predict`` a few times (its champion is loaded),
    then the process's RSS is sampled until it holds still; the report gives the median and
    range over the pairs for 1, 3 and 10 models, and the cost of each model past the first.
(b) req/s: the 1-model and the 3-model servers are loaded on ``/models/m0/predict`` (the same
    model, the same one-row body) at concurrency 1 and 16 (``wrk`` if installed, else Python
    threads); the report gives the median of the per-pair ratios 3-model ÷ 1-model (≥ 1.00
    would mean no cost to serving more models) with their range. Every answer must be 200.

    .venv/bin/python -m bench.models               # 3 pairs, 3 s per load run
    .venv/bin/python -m bench.models --pairs 5 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import machine_load, ratios
from bench._servers import request
from bench.protocols import load
from scoring.testing.checkout import ROW, SAMPLE
from scoring.testing.memory import status_kb
from scoring.testing.ports import free_port

HOST = "127.0.0.1"
COUNTS = (1, 3, 10)  # models per server; the req/s comparison is COUNTS[1] against COUNTS[0]
LEVELS = (1, 16)
BODY = json.dumps({"X_test": ROW}).encode()
HEADERS = {"Content-Type": "application/json"}
READY_SECONDS = 180.0  # the first start trains ten models, one trainer process each
STEADY_SAMPLES = 3  # RSS within STEADY_MB for this many samples 0.5 s apart counts as steady
STEADY_MB = 1.0


def log(msg: str) -> None:
    """Print a progress line with the time, so a slow phase shows."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def settings_text(data_dir: Path, port: int, count: int) -> str:
    """Settings naming the first ``count`` models, each the linear model on the sample."""
    lines = [
        f'[paths]\ndata_dir = "{data_dir}"',
        f'[server]\nhost = "{HOST}"\nport = {port}',
        '[training]\npromote = "always"',
    ]
    for i in range(count):
        lines.append(
            f'[models.m{i}]\ntarget = "target"\nestimator = "linear_regression"\n'
            f'bootstrap_data = "{SAMPLE}"'
        )
    return "\n\n".join(lines) + "\n"


class Serve:
    """One ``dropscore serve`` on the shared data folder, with the first ``count`` models."""

    def __init__(self, work: Path, count: int) -> None:
        self.count = count
        self.port = free_port()
        self.settings = work / f"settings-{count}.toml"
        self.settings.write_text(settings_text(work / "data", self.port, count))
        self.log_path = work / f"serve-{count}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
        env.update(DROPSCORE_SETTINGS=str(self.settings), OMP_NUM_THREADS="1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scoring", "serve"], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            log(f"serve ({self.count} models) did not stop in 40 s; killing it")
            proc.kill()
            proc.wait()

    def wait_ready(self) -> None:
        """``/ready`` is 200 only once every model has a champion."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"serve ({self.count} models) exited before it was ready\n{tail}")
            try:
                if request(self.port, "GET", "/ready", None, HEADERS, timeout=10)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"serve ({self.count} models) not ready within {READY_SECONDS:.0f} s")

    def warm(self, calls: int = 20) -> None:
        """Every model answers a few predictions, so every champion is loaded and used."""
        for i in range(self.count):
            for _ in range(calls):
                path = f"/models/m{i}/predict"
                status, body = request(self.port, "POST", path, BODY, HEADERS, timeout=10)
                if status != 200:
                    raise SystemExit(f"/models/m{i}/predict answered {status}: {body[:300]!r}")

    def steady_rss_mb(self, limit: float = 20.0) -> float:
        """Sample RSS every 0.5 s until it holds still (or ``limit`` s pass); the last sample."""
        assert self.proc is not None
        samples: list[float] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            samples.append(status_kb(self.proc.pid, "VmRSS") / 1024)
            recent = samples[-STEADY_SAMPLES:]
            if len(recent) == STEADY_SAMPLES and max(recent) - min(recent) <= STEADY_MB:
                break
            time.sleep(0.5)
        return samples[-1]


def measure(
    work: Path, count: int, seconds: float, wrk: str | None
) -> tuple[float, dict[int, float]]:
    """Start a server with ``count`` models; its steady RSS and, for 1 and 3, req/s per level."""
    with Serve(work, count) as serve:
        serve.warm()
        rss = serve.steady_rss_mb()
        rps: dict[int, float] = {}
        if count in COUNTS[:2]:
            case = ("/models/m0/predict", BODY, HEADERS)
            for c in LEVELS:
                rps[c], p50 = load(serve.port, case, c, seconds, wrk, work)
                log(f"  {count} model(s), c={c}: {rps[c]:.0f} req/s, p50 {p50:.2f} ms")
        log(f"  {count} model(s): steady RSS {rss:.0f} MB")
    return rss, rps


def report(rss: dict[int, list[float]], rps: dict[int, dict[int, list[float]]]) -> None:
    """Print the figures for people: RSS per model count, then the paired req/s ratios."""
    med = statistics.median
    print()
    print("=" * 90)
    print("RSS of one `dropscore serve` after warm-up, steady (median over pairs, range):")
    for count in COUNTS:
        values = rss[count]
        print(f"  {count:>2} model(s): {med(values):6.0f} MB  (range {min(values):.0f}–"
              f"{max(values):.0f})")  # fmt: skip
    one, ten = med(rss[COUNTS[0]]), med(rss[COUNTS[-1]])
    print(f"  each model past the first: {(ten - one) / (COUNTS[-1] - COUNTS[0]):.1f} MB (medians)")
    few, many = COUNTS[0], COUNTS[1]
    print(f"POST /models/m0/predict, the same model: {many} models ÷ {few} model req/s per pair")
    print("(≥ 1.00 means serving more models costs this model nothing):")
    for c in LEVELS:
        r = ratios(rps[many][c], rps[few][c])
        print(f"  c={c:>2}: {r}; medians {med(rps[many][c]):.0f} vs {med(rps[few][c]):.0f} req/s")
    print("every response was 200 (a non-200 or a socket error stops the bench)")
    print("=" * 90)


def main(argv: list[str] | None = None) -> int:
    """Train ten models once, then alternate servers with 1, 3 and 10 of them."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="alternating rounds (at least 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each load run")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    args = p.parse_args(argv)
    print(machine_load(), flush=True)
    if args.pairs < 3:
        raise SystemExit("--pairs needs at least 3")
    wrk = shutil.which("wrk") if args.client != "python" else None
    if args.client == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    log(f"load generator: {'wrk' if wrk else 'Python threads, one keep-alive connection each'}")
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-models-"))
    rss: dict[int, list[float]] = {n: [] for n in COUNTS}
    rps: dict[int, dict[int, list[float]]] = {n: {c: [] for c in LEVELS} for n in COUNTS[:2]}
    try:
        log(f"first start: training {COUNTS[-1]} models in {work / 'data'} (not measured)")
        with Serve(work, COUNTS[-1]):
            pass
        for pair in range(args.pairs):
            order: list[int] = list(COUNTS) if pair % 2 == 0 else list(reversed(COUNTS))
            log(f"pair {pair + 1} of {args.pairs}: {' → '.join(map(str, order))} models")
            for count in order:
                got_rss, got_rps = measure(work, count, args.seconds, wrk)
                rss[count].append(got_rss)
                for c, value in got_rps.items():
                    rps[count][c].append(value)
        report(rss, rps)
        return 0
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
