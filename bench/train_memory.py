"""Benchmark what a retrain over a large lake costs the process that starts it.

One run, one machine, a temporary data folder with a synthetic training lake (``--rows`` rows of
five float features and a target, in three lake files). It prints:

1. retrain — ``run_retrain`` with ``[training] max_rows``: the caller's RSS growth (sampled by
   /proc while it runs), seconds, and the trainer child's peak RSS from the run record;
2. baseline — what the caller used to do before training moved out: read the whole lake into
   pandas in-process (its RSS growth and seconds);
3. CLI — wall seconds of ``dropscore runs`` idle and while a retrain runs.

    .venv/bin/python -m bench.train_memory                  # 3M rows, max_rows 100k
    .venv/bin/python -m bench.train_memory --rows 1000000 --max-rows 20000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.lake.store import read_lake
from ingest.state.db import StateDB
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.settings import load_settings
from scoring.testing.memory import rss_growth as measure

ROOT = Path(__file__).resolve().parent.parent


def make_lake(lake: Path, rows: int) -> None:
    """Write three lake files of synthetic regression data, with provenance columns."""
    lake.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part in range(3):
        n = rows // 3
        x = rng.normal(size=(n, 5))
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
        frame = frame.assign(target=x.sum(axis=1), _file_id=part + 1, _row=np.arange(n))
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), lake / f"p{part}.parquet")


def cli_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "scoring", "runs"], env=env, capture_output=True, check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--max-rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropscore-bench-") as tmp:
        data = Path(tmp) / "data"
        overrides = {
            "paths": {"data_dir": str(data)},
            "training": {"bootstrap_data": "", "max_rows": args.max_rows},
        }
        settings = load_settings(None, env={}, overrides=overrides)
        make_lake(data / "lake" / "train", args.rows)
        registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
        grew, secs, run = measure(lambda: run_retrain(settings, registry, "cli", force=True))
        print(
            f"retrain  : caller +{grew:6.0f} MB  {secs:5.1f} s  trainer peak "
            f"{run.peak_rss_mb} MB  rows {run.rows} of {run.sampled_from} ({run.state})"
        )
        grew, secs, _ = measure(lambda: len(read_lake(data / "lake" / "train").to_pandas()))
        print(f"baseline : caller +{grew:6.0f} MB  {secs:5.1f} s  (whole lake read in-process)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
        env.update(
            DROPSCORE__PATHS__DATA_DIR=str(data),
            DROPSCORE__TRAINING__BOOTSTRAP_DATA="",
            DROPSCORE_SETTINGS=str(ROOT / "settings.toml"),
        )
        idle = cli_seconds(env)
        background = threading.Thread(
            target=lambda: run_retrain(settings, registry, "cli", force=True)
        )
        background.start()
        time.sleep(1.0)  # the trainer is starting or reading
        during = cli_seconds(env)
        background.join()
        print(f"cli      : dropscore runs {idle:4.1f} s idle, {during:4.1f} s during a retrain")


if __name__ == "__main__":
    main()
