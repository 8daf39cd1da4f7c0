"""Ingest throughput: dropscore's CSV → lake path against raw pyarrow, on the same file.

Run: ``python -m bench.ingest [--rows N] [--batch-rows N]``. It writes a CSV (about 1 GB by
default: ten numeric columns, one text, one date) to a temporary folder, then measures, each in
its own subprocess so peak RSS is per path:

  (a) baseline: ``pyarrow.csv.read_csv`` of the whole file + ``pyarrow.parquet.write_table``;
  (b) dropscore: ``open_table`` → ``normalize_file`` → ``write_parquet_atomic``.

It prints rows/s, MB/s and peak RSS for both and the ratio (goal: ours ≥ 70% of the baseline's
rate, with peak memory bounded by batch size rather than file size). Not a test: absolute times
drift on shared machines, which is why the baseline is measured in the same run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

DEFAULT_ROWS = 9_000_000  # ≈ 1 GB with the columns below
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def generate_csv(path: Path, rows: int, seed: int = 7) -> int:
    """Write the benchmark CSV in chunks (constant memory) and return its size in bytes."""
    rng = random.Random(seed)
    header = ",".join([f"x{i}" for i in range(10)] + ["label", "day"]) + "\n"
    start = date(2020, 1, 1)
    days = [(start + timedelta(days=d)).isoformat() for d in range(1500)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(header)
        chunk = []
        for i in range(rows):
            numbers = [str(rng.randint(0, 1_000_000)) for _ in range(5)]
            numbers += [f"{rng.random() * 1000:.4f}" for _ in range(5)]
            label = f"{rng.choice(WORDS)} {i % 977}"
            chunk.append(",".join([*numbers, label, days[i % len(days)]]))
            if len(chunk) == 50_000:
                fh.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            fh.write("\n".join(chunk) + "\n")
    return path.stat().st_size


def run_baseline(src: Path, dest: Path) -> int:
    """Read the whole CSV with pyarrow and write it as one Parquet file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(src)
    pq.write_table(table, dest)
    return table.num_rows


def run_dropscore(src: Path, dest: Path, batch_rows: int) -> int:
    """Run the same file through dropscore's reader, normalizer and atomic lake writer."""
    from ingest.base.config import ReadOptions
    from ingest.lake.store import write_parquet_atomic
    from ingest.pipeline.normalize import normalize_file
    from ingest.readers import open_table

    raw = open_table(src, ReadOptions(batch_rows=batch_rows))
    table = normalize_file(raw, file_id=1)
    return write_parquet_atomic(table.batches, table.schema, dest)


def child(path: str, out: str, mode: str, batch_rows: int) -> None:
    """Run one path in this (child) process and print its figures as JSON."""
    started = time.perf_counter()
    if mode == "baseline":
        rows = run_baseline(Path(path), Path(out))
    else:
        rows = run_dropscore(Path(path), Path(out), batch_rows)
    seconds = time.perf_counter() - started
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": rss_kb / 1024}))


def measure(src: Path, mode: str, batch_rows: int) -> dict[str, float]:
    """Run one path in a fresh subprocess, so its peak RSS is its own."""
    out = src.with_name(f"{mode}.parquet")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.ingest", "--child", mode, "--src", str(src),
           "--out", str(out), "--batch-rows", str(batch_rows)]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, figures: dict[str, float], size: int) -> float:
    """Print one path's figures and return its rows/s."""
    rate = figures["rows"] / figures["seconds"]
    mb_s = size / 1e6 / figures["seconds"]
    print(f"{name:<10} {figures['rows']:>12,} rows  {figures['seconds']:8.2f} s  "
          f"{rate:>12,.0f} rows/s  {mb_s:8.1f} MB/s  peak RSS {figures['rss_mb']:8.1f} MB")
    return rate


def main(argv: list[str] | None = None) -> None:
    """Generate the file, measure both paths, print the comparison, then the drop benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--child", choices=("baseline", "dropscore"))
    parser.add_argument("--src")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.child:
        child(args.src, args.out, args.child, args.batch_rows)
        return
    with tempfile.TemporaryDirectory(prefix="dropscore-bench-") as tmp:
        src = Path(tmp) / "bench.csv"
        t0 = time.perf_counter()
        size = generate_csv(src, args.rows)
        print(f"generated {size / 1e6:,.0f} MB, {args.rows:,} rows "
              f"in {time.perf_counter() - t0:.1f} s")
        base = report("pyarrow", measure(src, "baseline", args.batch_rows), size)
        ours = report("dropscore", measure(src, "dropscore", args.batch_rows), size)
        print(f"ratio      dropscore / pyarrow = {ours / base:.0%} (goal ≥ 70%)")
    run_drops_benchmark()


def run_drops_benchmark() -> None:
    """HOOK: drop-to-ledger latency lives in bench/ingest_drops.py (another module); run it here."""
    try:
        from bench.ingest_drops import main as drops_main
    except ImportError:
        print("bench.ingest_drops not available; skipping drop-to-ledger latency")
        return
    takes_argv = bool(inspect.signature(drops_main).parameters)
    drops_main([]) if takes_argv else drops_main()  # our own flags are not theirs


if __name__ == "__main__":
    main()
