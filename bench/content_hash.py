"""The content hash's cost: the CSV → lake write with and without hashing the normalized table.

Run: ``python -m bench.content_hash [--rows N] [--pairs N]``. It writes the CSV of
``bench/ingest.py`` (ten numeric columns, one text, one date), then alternates the two paths on
it in this process — (a) baseline: ``open_table`` → ``normalize_file`` → ``write_parquet_atomic``;
(b) hashed: the same batches passed through ``ingest.lake.content.hashed`` on their way to the
writer, as ``ingest/lake/lakefile.py`` does — and prints each pair's times and the median ratio.
Also the hash alone, over the normalized batches already in memory. Not a test: shared machines
drift, which is why the two paths alternate in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.ingest import generate_csv


def lake_write(src: Path, dest: Path, hashed: bool) -> tuple[int, float]:
    """Write src's lake file (optionally hashing on the way); return rows and seconds."""
    from ingest.base.config import ReadOptions
    from ingest.lake.content import ContentHash
    from ingest.lake.content import hashed as hashing
    from ingest.lake.store import write_parquet_atomic
    from ingest.pipeline.normalize import normalize_file
    from ingest.readers import open_table

    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    table = normalize_file(open_table(src, ReadOptions()), file_id=1)
    batches = hashing(table.batches, ContentHash()) if hashed else table.batches
    rows = write_parquet_atomic(batches, table.schema, dest)
    return rows, time.perf_counter() - started


def hash_only(src: Path) -> tuple[int, float]:
    """Time the hash alone over the file's normalized batches, read into memory first."""
    import pyarrow.parquet as pq

    from ingest.lake.content import ContentHash

    batches = pq.ParquetFile(src).iter_batches(batch_size=65_536)
    loaded = list(batches)
    digest = ContentHash()
    started = time.perf_counter()
    for batch in loaded:
        digest.update(batch)
    digest.hexdigest()
    return sum(b.num_rows for b in loaded), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Generate the file, alternate both paths, print the pairs and the median ratio."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropscore-bench-") as tmp:
        src, dest = Path(tmp) / "bench.csv", Path(tmp) / "lake.parquet"
        size = generate_csv(src, args.rows)
        print(f"generated {size / 1e6:,.0f} MB, {args.rows:,} rows")
        ratios = []
        for pair in range(1, args.pairs + 1):
            _, plain = lake_write(src, dest, hashed=False)
            _, hashed = lake_write(src, dest, hashed=True)
            ratios.append(hashed / plain)
            print(f"pair {pair}: lake write {plain:6.2f} s, with the content hash {hashed:6.2f} s")
        print(f"median ratio hashed / plain = {statistics.median(ratios):.2f}")
        n, alone = hash_only(dest)
        print(f"the hash alone: {n:,} rows in {alone:.2f} s = {n / alone:,.0f} rows/s")


if __name__ == "__main__":
    main()
