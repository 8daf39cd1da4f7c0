"""Benchmark state on PostgreSQL against SQLite: ``/predict`` req/s, and the scheduler's failover.

``/predict``: one ``dropscore serve`` at a time on a fresh data folder (it trains its first
model at start), with ``[state] url`` empty (SQLite) or on a database of a PostgreSQL server this
bench starts (``scoring.testing.postgres``). The two alternate in ``--pairs`` pairs, the order
swapped every pair, each loaded by closed-loop keep-alive clients (``--concurrency``) for
``--seconds``; the report gives each run's req/s and the median of the per-pair ratios
(PostgreSQL / SQLite) with their range. The hot path reads neither database (the champion is
held in memory; its pointer is polled off the request path), so the goal is >= 0.9.

Replicas: two ``serve`` on one database (the second's ``models/`` linked to the first's). A
version registered by this process and promoted through the first: the seconds until the second
serves it (goal: 1 s; it polls the pointer every 0.5 s). Then kill -9 of the leader, and the
seconds until the standby's ``/health`` says ``leader``; the design bound is 30 s (a standby
retries every 5 s).

    .venv/bin/python -m bench.replicas                  # 3 pairs, 10 s per run, c=8; 3 failovers
    .venv/bin/python -m bench.replicas --pairs 5 --seconds 20 --failovers 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench._common import machine_load, ratios
from bench._servers import BODY
from bench._wrk import run_python_client
from scoring.testing.checkout import SAMPLE, SETTINGS_FILE
from scoring.testing.ports import free_port
from scoring.testing.postgres import PostgresServer, start_postgres
from scoring.testing.processes import Process, process_env, running, wait_ready
from scoring.testing.waiting import wait_for

HOST = "127.0.0.1"
JSON = {"Content-Type": "application/json"}
READY_SECONDS = 180.0  # a first model trains at start; a loaded machine


@contextmanager
def replica(
    folder: Path, name: str, state_url: str, models_from: Path | None = None
) -> Iterator[tuple[str, Process]]:
    """Run one ``serve`` on ``folder/name`` until the block ends; yield its URL and process."""
    data, port = folder / name, free_port()
    folder.mkdir(parents=True, exist_ok=True)
    if models_from is not None:  # the versions' files, shared until the object store holds them
        data.mkdir(parents=True)
        (data / "models").symlink_to(models_from / "models")
    env = process_env(data, port, DROPSCORE__STATE__URL=state_url)
    url = f"http://{HOST}:{port}"
    with running(["serve"], env, folder / f"{name}.log") as proc:
        wait_ready(url, proc, READY_SECONDS)
        yield url, proc


def predict_rate(
    folder: Path, name: str, state_url: str, concurrency: int, seconds: float
) -> float:
    """Start a replica, load its ``/predict`` and return requests per second."""
    with replica(folder, name, state_url) as (url, _proc):
        port = int(url.rsplit(":", 1)[1])
        run_python_client(port, {}, concurrency, 1.0)  # warm the connection and the model
        raw = run_python_client(port, {}, concurrency, seconds)
    if raw["non200"] or raw["read"]:
        raise RuntimeError(f"{name}: {raw['non200']} non-200 answers, {raw['read']} errors")
    return float(raw["requests"]) / (float(raw["duration_us"]) / 1e6)


def role(url: str) -> str | None:
    """Read a replica's scheduler role from /health, or None while it cannot answer."""
    import requests

    try:
        return str(requests.get(url + "/health", timeout=5).json()["scheduler"]["role"])
    except (requests.RequestException, KeyError, ValueError):
        return None


def served_version(url: str) -> str:
    """Ask a replica which version answers ``/predict``."""
    import requests

    answer = requests.post(url + "/predict", data=BODY, headers=JSON, timeout=10)
    return str(answer.json().get("model_version"))


def register_second_version(data: Path, state_url: str) -> int:
    """Train the sample again and register it unpromoted, as another process would."""
    import pandas as pd

    from scoring.lifecycle.training import train
    from scoring.models.factory import open_models
    from scoring.settings import load_settings

    env = {"DROPSCORE__PATHS__DATA_DIR": str(data), "DROPSCORE__STATE__URL": state_url}
    model = open_models(load_settings(SETTINGS_FILE, env=env)).default
    result = train(pd.read_csv(SAMPLE), model.settings.model)
    card = {"estimator": model.settings.model.estimator, "metrics": result.metrics}
    return model.registry.register(result.pipeline, {**card, "schema": result.schema.to_dict()})


def failover(folder: Path, server: PostgresServer) -> tuple[float, float]:
    """Start two replicas on a fresh database; time a promotion made on the first until the
    second serves it, then the standby's takeover after kill -9 of the leader."""
    import requests

    url = server.create_database("failover")
    try:
        with ExitStack() as stack:
            first_url, first = stack.enter_context(replica(folder, "a", url))
            second_url, _ = stack.enter_context(replica(folder, "b", url, folder / "a"))
            wait_for(lambda: role(second_url) == "standby", 60, 0.1, "b to stand by")
            if role(first_url) != "leader":
                raise RuntimeError("the first replica does not lead")
            version = register_second_version(folder / "a", url)
            promoted = requests.post(f"{first_url}/models/{version}/promote", timeout=10)
            promoted.raise_for_status()
            began = time.monotonic()
            wait_for(lambda: served_version(second_url) == str(version), 60, 0.01, "b serving")
            promotion = time.monotonic() - began
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            killed = time.monotonic()
            wait_for(lambda: role(second_url) == "leader", 120, 0.05, "b to take over")
            return promotion, time.monotonic() - killed
    finally:
        server.drop_database(url)


def main() -> None:
    """Run the pairs and the failovers; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args()
    print(machine_load())
    server = start_postgres()
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    try:
        sqlite: list[float] = []
        postgres: list[float] = []
        for pair in range(args.pairs):
            order = ["sqlite", "postgresql"] if pair % 2 == 0 else ["postgresql", "sqlite"]
            for kind in order:
                folder = work / f"pair{pair}-{kind}"
                url = server.create_database("predict") if kind == "postgresql" else ""
                rate = predict_rate(folder, kind, url, args.concurrency, args.seconds)
                (postgres if kind == "postgresql" else sqlite).append(rate)
                print(f"pair {pair + 1} {kind:<10} /predict {rate:8.1f} req/s")
                if url:
                    server.drop_database(url)
        if sqlite:  # --pairs 0 measures the replicas alone
            print(f"/predict req/s, PostgreSQL state / SQLite state: {ratios(postgres, sqlite)}")
            print(
                f"  medians: SQLite {statistics.median(sqlite):.1f}, PostgreSQL"
                f" {statistics.median(postgres):.1f} req/s"
                f" (c={args.concurrency}, {args.seconds:g} s)"
            )
        takeovers, promotions = [], []
        for n in range(args.failovers):
            promotion, seconds = failover(work / f"failover{n}", server)
            promotions.append(promotion)
            takeovers.append(seconds)
            print(
                f"replicas {n + 1}: a promotion on one served by the other after"
                f" {promotion:.2f} s; standby leads {seconds:.1f} s after kill -9 of the leader"
            )
        if takeovers:
            print(
                f"promotion seen by the other replica: median {statistics.median(promotions):.2f} s"
                f" (range {min(promotions):.2f}-{max(promotions):.2f} s; goal 1 s)"
            )
            print(
                f"failover after kill -9: median {statistics.median(takeovers):.1f} s"
                f" (range {min(takeovers):.1f}-{max(takeovers):.1f} s; bound 30 s)"
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
