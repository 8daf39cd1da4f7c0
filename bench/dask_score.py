"""Bulk rows/s on a real Dask cluster (1 and 2 workers) beside the local engine, same file.

A generated Parquet file (``--rows``, default 1,000,000 rows × the sample model's 10 float
features, row groups of 250,000), or with ``--input csv`` the same rows as CSV (parsed by the
workers in byte ranges, ``scoring.bulk.csv_parts``), is scored to Parquet three ways, in
alternating pairs with the order rotated each pair:

- ``local``:  ``score_path`` in this process (the local engine: read, score, write threads);
- ``dask-1``: ``score_remote`` on a cluster of one ``dask worker`` process (1 thread, 1 GiB);
- ``dask-2``: the same on a cluster of two worker processes.

Both clusters are real processes on 127.0.0.1 (``scoring.testing.cluster``), started once; the
workers read the file, score and write parts themselves and one commit task publishes the
output. Reported: median seconds and rows/s per path, the per-pair ratio to the local engine,
and the workers' peak RSS (``VmHWM``, fresh clusters for each setting) beside their RSS once
done, at two ``batch_rows`` settings, to show worker memory follows ``batch_rows`` rather than
the file. One untimed run per path first loads the model into each worker's cache.

    .venv/bin/python -m bench.dask_score                 # 1,000,000 rows, 3 pairs
    .venv/bin/python -m bench.dask_score --rows 4000000 --pairs 5
    .venv/bin/python -m bench.dask_score --input csv --batch-rows 20000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import machine_load, ratios
from bench._data import csv_to_parquet, generate_csv
from scoring.testing.cluster import Cluster, dask_cluster
from scoring.testing.memory import status_kb


def train(data: Path) -> None:
    """Train the sample model into a fresh data folder, as a user would."""
    from scoring.testing.processes import process_env

    env = process_env(data, 0)
    done = subprocess.run([sys.executable, "-m", "scoring", "train"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"dropscore train failed:\n{done.stdout}\n{done.stderr}")


def main() -> None:
    """Run the pairs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[100_000, 20_000])
    parser.add_argument("--input", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    print(f"machine load: {machine_load()}")
    with tempfile.TemporaryDirectory(prefix="dropscore-bench-dask-") as tmp:
        work = Path(tmp)
        csv, src = work / "in.csv", work / "in.parquet"
        generate_csv(csv, args.rows)
        if args.input == "csv":
            src = csv
        else:
            csv_to_parquet(csv, src, group=250_000)
            csv.unlink()
        size = src.stat().st_size / 2**20
        print(f"input: {args.rows:,} rows, {size:.0f} MiB {args.input.upper()}")
        data = work / "data"
        train(data)
        for batch_rows in args.batch_rows:  # fresh clusters: each peak RSS is this setting's
            c1, c2 = work / f"c1-{batch_rows}", work / f"c2-{batch_rows}"
            with dask_cluster(c1, 1) as one, dask_cluster(c2, 2) as two:
                run_pairs(src, work, data, one, two, batch_rows, args.rows, args.pairs)


def run_pairs(src: Path, work: Path, data: Path, one: Cluster, two: Cluster, batch_rows: int,
              rows: int, pairs: int) -> None:  # fmt: skip
    """Alternate the three paths ``pairs`` times; print the medians, ratios and worker RSS."""
    from distributed import Client

    from ingest.base.config import ReadOptions
    from scoring.bulk.batch import score_path
    from scoring.bulk.remote import score_remote
    from scoring.bulk.worker_models import model_ref
    from scoring.lifecycle.champion import load_version
    from scoring.models.factory import open_model
    from scoring.settings import load_settings

    overrides = {"paths": {"data_dir": str(data)}, "training": {"bootstrap_data": ""}}
    model = open_model(load_settings(None, env={}, overrides=overrides))
    version = model.registry.champion_version()
    assert version is not None, "the training did not make a champion"
    loaded = load_version(model.registry, version)
    ref = model_ref(model.name, model.registry, version)
    c1 = Client(one.address, set_as_default=False)
    c2 = Client(two.address, set_as_default=False)

    def local(out: Path) -> object:
        return score_path(src, out, loaded, read=ReadOptions(batch_rows=batch_rows), fmt="parquet")

    def on(client: Client) -> Callable[[Path], object]:
        return lambda out: score_remote(
            client, str(src), str(out), ref, batch_rows=batch_rows, fmt="parquet"
        )

    paths = {"local": local, "dask-1": on(c1), "dask-2": on(c2)}
    for name, path in paths.items():  # untimed: each worker loads the model once, here
        path(work / f"warm-{name}.parquet")
        (work / f"warm-{name}.parquet").unlink()
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    print(f"\nbatch_rows = {batch_rows:,}")
    try:
        for pair in range(pairs):
            order = names[pair % len(names) :] + names[: pair % len(names)]
            for name in order:
                out = work / f"{name}.parquet"
                started = time.perf_counter()
                paths[name](out)
                seconds[name].append(time.perf_counter() - started)
                out.unlink()
                print(f"  pair {pair + 1} {name}: {seconds[name][-1]:.2f}s", flush=True)
    finally:
        c1.close()
        c2.close()
    idle = {"dask-1": _rss(one), "dask-2": _rss(two)}  # after: the model and libraries loaded
    peak = {"dask-1": _peak(one), "dask-2": _peak(two)}
    print(f"  {'path':<8} {'median s':>9} {'rows/s':>12}  vs local (per pair)")
    for name, values in seconds.items():
        median = statistics.median(values)
        vs = "" if name == "local" else str(ratios(seconds["local"], values))
        print(f"  {name:<8} {median:>9.2f} {rows / median:>12,.0f}  {vs}")
    for name in ("dask-1", "dask-2"):
        print(f"  {name} worker RSS: now {idle[name]:.0f} MiB, peak {peak[name]:.0f} MiB"
              " (VmHWM since the worker started)")  # fmt: skip


def _rss(cluster: Cluster) -> float:
    return max(status_kb(pid, "VmRSS") for pid in cluster.worker_pids()) / 1024


def _peak(cluster: Cluster) -> float:
    return cluster.peak_rss_kb() / 1024


if __name__ == "__main__":
    main()
