"""Benchmark the dashboard's pages on a 100,000-row ledger, beside the JSON API's same query.

Builds a temporary data folder with a trained champion, a run history and N ledger rows inserted
straight into SQLite (a tenth of them quarantined), starts the real app under waitress on a free
port, and times each page (median of several loads over HTTP) next to ``GET /files?limit=50``,
the JSON answer from the same ledger query, as the baseline measured in the same run.

    .venv/bin/python -m bench.pages            # 100,000 rows, 7 loads per page
    .venv/bin/python -m bench.pages --rows 20000
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent

from ingest.state.db import StateDB  # noqa: E402
from ingest.state.ledger import Ledger  # noqa: E402
from scoring.api.app import create_app  # noqa: E402
from scoring.lifecycle.registry import Registry  # noqa: E402
from scoring.lifecycle.runs import RunStore  # noqa: E402
from scoring.lifecycle.training import holdout_sample, train  # noqa: E402
from scoring.settings import load_settings  # noqa: E402

PAGES = (
    "/files?limit=50",  # baseline: the JSON API over the same ledger query
    "/",
    "/ui/models",
    "/ui/runs",
    "/ui/files",
    "/ui/files?state=quarantined&kind=train&offset=5000",
    "/ui/files?offset=99000",
)


def build(data_dir: Path, rows: int) -> object:
    """Make a data folder with a champion, 30 runs and ``rows`` ledger rows."""
    settings = load_settings(
        None, env={}, overrides={"paths": {"data_dir": str(data_dir)}, "training": {}}
    )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    frame = pd.read_csv(ROOT / "data" / "sample" / "diabetes.csv")
    for _ in range(3):
        result = train(frame, settings.model)
        card = {
            "estimator": settings.model.estimator,
            "metrics": result.metrics,
            "schema": result.schema.to_dict(),
        }
        sample = holdout_sample(result.pipeline, result.schema, result.holdout)
        registry.promote(registry.register(result.pipeline, card, holdout=sample), "bench")
    store = RunStore(StateDB.at(settings.db_path))
    for _ in range(30):
        run = store.create("schedule")
        store.update(run, state="succeeded", reason="bench", metrics={"r2": 0.45}, rows=442)
    Ledger(StateDB.at(settings.db_path)).initialize()
    now = "2026-01-01T00:00:00.000000Z"
    error = '{"code": "ragged_rows", "message": "row 3 has 4 fields"}'
    with sqlite3.connect(settings.db_path) as conn:
        conn.executemany(
            "INSERT INTO files (original_name, kind, state, error, received_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    f"drop-{i}.csv",
                    "score" if i % 2 else "train",
                    "quarantined" if i % 10 == 0 else "normalized",
                    error if i % 10 == 0 else None,
                    now,
                    now,
                )
                for i in range(rows)
            ),
        )
    return settings


def serve(settings: object) -> str:
    """Start the app under waitress in a thread; return its base URL."""
    from waitress import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server(create_app(settings), host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropscore-bench-pages-") as tmp:
        settings = build(Path(tmp) / "data", args.rows)
        base = serve(settings)
        http = requests.Session()
        print(f"{args.rows:,} ledger rows; median of {args.loads} loads over HTTP")
        print(f"{'page':<55} {'ms':>8} {'x JSON':>8} {'bytes':>9}")
        baseline = None
        for path in PAGES:
            http.get(base + path, timeout=60).raise_for_status()  # warm
            times = []
            for _ in range(args.loads):
                started = time.perf_counter()
                answer = http.get(base + path, timeout=60)
                times.append(time.perf_counter() - started)
                answer.raise_for_status()
            ms = statistics.median(times) * 1000
            baseline = baseline or ms
            print(f"{path:<55} {ms:>8.1f} {ms / baseline:>8.2f} {len(answer.content):>9,}")


if __name__ == "__main__":
    main()
