"""Promotion under load: client threads posting ``/predict``, and the figures read off them.

Shared by ``tests/test_e2e_load.py`` (which asserts on them) and ``bench/reload.py`` (which
prints them). Client threads with keep-alive sessions post ``/predict`` until stopped; each
answer records the process that served it and the model version, so a promotion's switch time
can be read off.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.base.atomic import replacing
from scoring.testing.checkout import ROW, SAMPLE
from scoring.testing.waiting import wait_for


@dataclass(frozen=True)
class Answer:
    """One request of the load and what came back."""

    session: int
    pid: int | None  # the API process that holds this session's connection
    sent: float  # time.time() before the request
    done: float  # time.time() after the answer (or the failure)
    status: int | None
    version: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the request was answered 200."""
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
        """Start the client threads."""
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> list[Answer]:
        """Stop the client threads and return every answer, in the order they were sent."""
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)
        return sorted((a for answers in self._answers for a in answers), key=lambda a: a.sent)

    def answers(self) -> list[Answer]:
        """Return a snapshot of the answers so far."""
        return sorted((a for answers in self._answers for a in list(answers)), key=lambda a: a.sent)

    def _run(self, index: int) -> None:
        import requests

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
    """Turn an ISO-8601 time from the API into seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp()


def new_training_drop(inbox: Path, name: str = "more.csv", rows: int = 200) -> Path:
    """Drop a labelled file the way producers should: write a temporary, rename it into place.

    The temporary is the atomic writer's (a dot name the watcher passes over), so the watcher
    only ever sees the whole file.
    """
    import pandas as pd

    frame = pd.read_csv(SAMPLE).head(rows)
    frame["target"] = frame["target"] * 1.1 + 5  # different content, same columns
    inbox.mkdir(parents=True, exist_ok=True)
    with replacing(inbox / name) as tmp:
        frame.to_csv(tmp, index=False)
    return inbox / name


def wait_run(url: str, run_id: int, timeout: float = 180) -> dict[str, Any]:
    """Wait until a retrain run has finished (succeeded, skipped or failed); return it."""
    import requests

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = requests.get(f"{url}/runs/{run_id}", timeout=5).json()
        return body if body["state"] in ("succeeded", "skipped", "failed") else None

    run: dict[str, Any] = wait_for(finished, timeout, 0.05, f"run {run_id} to finish")
    return run


def wait_files(url: str, count: int, timeout: float = 90) -> None:
    """Wait until the ledger holds ``count`` normalized training files."""
    import requests

    def ingested() -> bool:
        files = requests.get(url + "/files?status=normalized", timeout=5).json()["files"]
        return sum(f["kind"] == "train" for f in files) >= count

    wait_for(ingested, timeout, 0.1, f"{count} training files ingested")


def promote_under_load(url: str, data_dir: Path) -> tuple[str, float]:
    """Drop new data, retrain through the API, and return the new version and its promotion time."""
    import requests

    new_training_drop(data_dir / "inbox" / "train")
    wait_files(url, 2)
    response = requests.post(url + "/train", timeout=10)
    response.raise_for_status()
    run = wait_run(url, response.json()["run_id"])
    if run["state"] != "succeeded" or not run["promoted"]:
        raise RuntimeError(f"retrain did not promote: {run}")
    model = requests.get(f"{url}/models/{run['version']}", timeout=5).json()
    return run["version"], iso_to_epoch(model["promoted_at"])
