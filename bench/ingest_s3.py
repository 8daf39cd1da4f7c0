"""Ingest with the files in an object store (moto_server) vs on the local disk, alternating.

Each pair runs the same N small score drops through a running watcher twice: once dropped into
a local inbox (the watchdog Watcher, the lake on disk) and once put into a bucket's inbox (the
BucketWatcher polling it, the lake in the bucket), with the same ``stable_seconds`` and
``rescan_seconds``. Prints drops/s (first drop to last ledger row) and drop-to-ledger latency
p50/p95 for both sides of each pair, and the median per-pair ratio. The S3 here is moto on
127.0.0.1: it measures what the polling, the claims, the downloads and the object writes cost,
not a network's latency.

    python -m bench.ingest_s3 --pairs 3 --drops 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import machine_load, ratios
from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.lake.remote import open_storage
from ingest.lake.store import Lake
from ingest.pipeline.bucket import Bucket, BucketClaims, BucketWatcher
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.db import StateDB
from ingest.state.ledger import FileRecord, Ledger
from scoring.testing.moto import S3Endpoint, moto_endpoint


def _csv(i: int, rows: int = 20) -> bytes:
    """Build a small distinct CSV drop."""
    return (
        "id,x,label\n" + "".join(f"{i * rows + r},{r}.5,l{r % 3}\n" for r in range(rows))
    ).encode()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Run:
    """Timestamps of one run: when each drop was put, when its ledger row became normalized."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.put: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.all_done = threading.Event()

    def on_normalized(self, record: FileRecord) -> None:
        self.done[record.original_name] = time.monotonic()
        if len(self.done) == self.drops:
            self.all_done.set()

    def wait(self, timeout: float) -> None:
        if not self.all_done.wait(timeout):
            raise SystemExit(f"only {len(self.done)} of {self.drops} drops were normalized")

    def figures(self) -> tuple[float, list[float]]:
        """Drops per second (first put to last row) and each drop's latency."""
        span = max(self.done.values()) - min(self.put.values())
        return self.drops / span, [self.done[n] - self.put[n] for n in self.put]


def _drop_all(run: Run, put: Callable[[str, bytes], None], interval: float) -> None:
    for i in range(run.drops):
        name = f"drop{i:03d}.csv"
        put(name, _csv(i))
        run.put[name] = time.monotonic()
        time.sleep(interval)


def local_run(root: Path, drops: int, stable: float, rescan: float, interval: float) -> Run:
    """Drops renamed into a local inbox; the watchdog watcher; the lake on disk."""
    config = IngestConfig(DataLayout(root), stable_seconds=stable, rescan_seconds=rescan)
    config.make_dirs()
    run = Run(drops)
    watcher = Watcher(config, Intake(config, Ledger(StateDB.at(config.db_path)), run.on_normalized))
    watcher.start()
    staging = root / "staging"
    staging.mkdir()

    def put(name: str, body: bytes) -> None:
        (staging / name).write_bytes(body)
        (staging / name).rename(config.inbox("score") / name)

    try:
        _drop_all(run, put, interval)
        run.wait(stable * 10 + drops * 2)
    finally:
        watcher.stop(timeout=30)
    return run


def s3_run(
    root: Path, s3: S3Endpoint, drops: int, stable: float, rescan: float, interval: float
) -> Run:
    """Drops put into a bucket's inbox; the bucket poller; the lake in the bucket."""
    prefix = s3.fresh_prefix("bench")
    layout = DataLayout(root)
    storage = open_storage(s3.url(prefix), root, endpoint_url=s3.endpoint, env=s3.env)

    def lakes(kind: str) -> Lake:
        return Lake(storage.fs, storage.join(layout.key(layout.lake(kind))))

    config = IngestConfig(layout, stable_seconds=stable, rescan_seconds=rescan, lakes=lakes)
    config.make_dirs()
    run = Run(drops)
    intake = Intake(config, Ledger(StateDB.at(config.db_path)), run.on_normalized)
    bucket = Bucket(s3.bucket, endpoint_url=s3.endpoint, env=s3.env)
    claims = BucketClaims(StateDB.at(root / "shared.db"))
    watcher = BucketWatcher(
        bucket, prefix, claims, [intake], stable_seconds=stable, rescan_seconds=rescan
    )
    watcher.start()

    def put(name: str, body: bytes) -> None:
        bucket.client.put_object(Bucket=s3.bucket, Key=f"{prefix}/inbox/score/{name}", Body=body)

    try:
        _drop_all(run, put, interval)
        run.wait(stable * 10 + drops * 2)
    finally:
        watcher.stop(timeout=30)
    return run


def main(argv: list[str] | None = None) -> None:
    """Alternate local and S3 runs, print each pair and the median ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--drops", type=int, default=40)
    parser.add_argument("--stable-seconds", type=float, default=0.5)
    parser.add_argument("--rescan-seconds", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between drops")
    args = parser.parse_args(argv)
    print(machine_load())
    print(
        f"{args.drops} score drops per run, one every {args.interval:g} s; stable_seconds "
        f"{args.stable_seconds:g}, rescan_seconds {args.rescan_seconds:g}; S3 = moto_server"
    )
    rates: dict[str, list[float]] = {"local": [], "s3": []}
    p50s: dict[str, list[float]] = {"local": [], "s3": []}
    with (
        tempfile.TemporaryDirectory(prefix="dropscore-ingest-s3-") as tmp,
        moto_endpoint(Path(tmp) / "moto.log") as s3,
    ):
        for pair in range(args.pairs):
            for side in ("local", "s3"):
                where = Path(tmp) / f"{side}-{pair}"
                timing = (args.drops, args.stable_seconds, args.rescan_seconds, args.interval)
                run = local_run(where, *timing) if side == "local" else s3_run(where, s3, *timing)
                rate, latencies = run.figures()
                rates[side].append(rate)
                p50s[side].append(statistics.median(latencies))
                p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
                print(
                    f"  pair {pair + 1} {side:5s}  {rate:7.1f} drops/s   latency p50 "
                    f"{p50:6.3f} s  p95 {p95:6.3f} s  max {max(latencies):6.3f} s"
                )
    print(f"drops/s, S3 / local: {ratios(rates['s3'], rates['local'])}")
    # latency: lower is better, so local / S3 keeps "higher is better for the project side"
    print(f"latency p50, local / S3 (below 1: S3 slower): {ratios(p50s['local'], p50s['s3'])}")
    print(
        f"medians: local {statistics.median(rates['local']):.1f} drops/s, p50 "
        f"{statistics.median(p50s['local']):.3f} s; S3 {statistics.median(rates['s3']):.1f} "
        f"drops/s, p50 {statistics.median(p50s['s3']):.3f} s"
    )


if __name__ == "__main__":
    main()
