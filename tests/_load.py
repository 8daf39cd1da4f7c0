"""Promotion under load, with real processes: the load generator and process helpers.

Shared by ``tests/test_e2e_load.py`` (which asserts on them) and ``bench/reload.py`` (which
prints figures from them); kept in the test tree so tests never import from ``bench/``.
Client threads with keep-alive sessions post ``/predict`` until stopped; each answer records
the process that served it and the model version, so a promotion's switch time can be read off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "diabetes.csv"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]


@dataclass(frozen=True)
class Answer:
    session: int
    pid: int | None  # the API process that holds this session's connection
    sent: float  # time.time() before the request
    done: float  # time.time() after the answer (or the failure)
    status: int | None
    version: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


class Load:
    """Client threads posting /predict (or ``path``) on keep-alive sessions until stopped."""

    def __init__(self, url: str, threads: int = 8, path: str = "/predict") -> None:
        self.url = url
        self.threads = threads
        self.path = path  # e.g. /models/<name>/predict on a service with many models
        self._stop = threading.Event()
        self._answers: list[list[Answer]] = [[] for _ in range(threads)]
        self._workers: list[threading.Thread] = []

    def start(self) -> Load:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)
        return sorted((a for answers in self._answers for a in answers), key=lambda a: a.sent)

    def answers(self) -> list[Answer]:
        """Return a snapshot of the answers so far."""
        return sorted((a for answers in self._answers for a in list(answers)), key=lambda a: a.sent)

    def _run(self, index: int) -> None:
        out = self._answers[index]
        with requests.Session() as session:
            pid = session.get(self.url + "/health", timeout=10).json().get("pid")
            while not self._stop.is_set():
                sent = time.time()
                try:
                    r = session.post(self.url + self.path, json={"X_test": ROW}, timeout=10)
                    version = r.json().get("model_version") if r.status_code == 200 else None
                    out.append(Answer(index, pid, sent, time.time(), r.status_code, version))
                except Exception as exc:  # a refused or reset connection is a failed request
                    out.append(Answer(index, pid, sent, time.time(), None, None, repr(exc)))


def summarize(answers: list[Answer], start: float, end: float) -> dict[str, float]:
    """Requests/s, p50 and p99 latency (ms) and failures of the answers sent in [start, end)."""
    window = [a for a in answers if start <= a.sent < end]
    latencies = sorted(a.done - a.sent for a in window if a.ok)
    return {
        "requests": len(window),
        "rps": len(window) / (end - start) if end > start else 0.0,
        "p50_ms": 1000 * _quantile(latencies, 0.50),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
        "failed": sum(not a.ok for a in window),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def switch_seconds(answers: list[Answer], version: str, promoted_at: float) -> dict[int, float]:
    """Per API process: seconds from the promotion to its first answer from ``version``."""
    first: dict[int, float] = {}
    for a in sorted(answers, key=lambda a: a.done):
        if a.version == version and a.pid is not None and a.pid not in first:
            first[a.pid] = a.done - promoted_at
    return first


def stale_after_switch(answers: list[Answer], version: str) -> int:
    """Count answers from an older version sent after that process already answered ``version``."""
    switched: dict[int, float] = {}
    for a in sorted(answers, key=lambda a: a.done):
        if a.version == version and a.pid is not None:
            switched.setdefault(a.pid, a.done)
    return sum(
        1
        for a in answers
        if a.ok and a.version != version and a.pid in switched and a.sent > switched[a.pid]
    )


def iso_to_epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def new_training_drop(inbox: Path, name: str = "more.csv", rows: int = 200) -> Path:
    """Drop a labelled file the way producers should: write elsewhere, rename into the inbox."""
    frame = pd.read_csv(SAMPLE).head(rows)
    frame["target"] = frame["target"] * 1.1 + 5  # different content, same columns
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox.parent / f".{name}.part"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, inbox / name)
    return inbox / name


# -- real processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(ROOT / "settings.toml"),
        DROPSCORE__PATHS__DATA_DIR=str(data_dir),
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__INGEST__STABLE_SECONDS="0.3",
        DROPSCORE__INGEST__RESCAN_SECONDS="1.0",
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
        DROPSCORE__TRAINING__PROMOTE="always",
    )
    env.update(extra)
    return env


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``dropscore ARGS`` and stop it with SIGTERM (kill after 30 s) on the way out."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scoring", *args], env=env, stdout=fh, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if requests.get(url + "/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # refused while starting, or slow under load
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s")


def wait_run(url: str, run_id: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/runs/{run_id}", timeout=5).json()
        if body["state"] in ("succeeded", "skipped", "failed"):
            return body
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id} did not finish within {timeout}s")


def wait_files(url: str, count: int, timeout: float = 90) -> None:
    """Wait until the ledger holds ``count`` normalized training files."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = requests.get(url + "/files?status=normalized", timeout=5).json()["files"]
        if sum(f["kind"] == "train" for f in files) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} training files not ingested within {timeout}s")


def promote_under_load(url: str, data_dir: Path) -> tuple[str, float]:
    """Drop new data, retrain through the API, and return the new version and its promotion time."""
    new_training_drop(data_dir / "inbox" / "train")
    wait_files(url, 2)
    response = requests.post(url + "/train", timeout=10)
    response.raise_for_status()
    run = wait_run(url, response.json()["run_id"])
    if run["state"] != "succeeded" or not run["promoted"]:
        raise RuntimeError(f"retrain did not promote: {run}")
    model = requests.get(f"{url}/models/{run['version']}", timeout=5).json()
    return run["version"], iso_to_epoch(model["promoted_at"])


@contextmanager
def contextmanager_for(
    mode: str, env: dict[str, str], folder: Path
) -> Iterator[list[subprocess.Popen]]:
    """Start serve, or api --workers 2 after a worker has trained the first model."""
    if mode == "serve":
        with running(["serve"], env, folder / "serve.log") as proc:
            yield [proc]
        return
    with running(["worker"], env, folder / "worker.log") as worker:
        _wait_for_champion(env, worker)
        with running(["api", "--workers", "2"], env, folder / "api.log") as api:
            yield [api, worker]


def _wait_for_champion(env: dict[str, str], worker: subprocess.Popen) -> None:
    models = Path(env["DROPSCORE__PATHS__DATA_DIR"]) / "models" / "1"
    deadline = time.monotonic() + 90
    while not models.is_dir():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not train a first model")
        time.sleep(0.1)
