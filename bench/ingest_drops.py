"""Drop-to-ledger latency: small files renamed into a running Watcher's inbox until normalized.

Prints p50/p95/max beside two baselines measured in the same run: ``stable_seconds`` (the wait
the contract asks for) and a direct ``Intake.take`` of the same file (the work itself). The goal
is latency within ``stable_seconds + 0.5 s``.

``--growth N`` measures instead how a training drop's time grows with the lake: N three-row
drops taken one after another, the median time of drops 6-15 beside that of the last ten, once
with the lake's schema kept in its record (now) and once read from every lake file's footer
(before issue 18), in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.lake import lakefile
from ingest.lake.store import lake_files, unify_schemas
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.ledger import FileRecord, Ledger


def _csv(i: int, rows: int = 20) -> str:
    """Build a small distinct CSV drop."""
    return "id,x,label\n" + "".join(f"{i * rows + r},{r}.5,l{r % 3}\n" for r in range(rows))


def _percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def direct_take_seconds(root: Path, samples: int = 10) -> float:
    """Measure the median time of the intake's own work, with no watcher in front of it."""
    config = IngestConfig(DataLayout(root / "direct"))
    config.make_dirs()
    intake = Intake(config, Ledger.at(config.db_path))
    times = []
    for i in range(samples):
        path = config.inbox("score") / f"d{i}.csv"
        path.write_text(_csv(10_000 + i))
        t0 = time.perf_counter()
        intake.take(path, "score")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def watched_latencies(
    root: Path, drops: int, stable: float, interval: float, poll: bool
) -> tuple[list[float], str]:
    """Rename drops into a running watcher's inbox and time each until it is normalized."""
    config = IngestConfig(DataLayout(root / "watched"), stable_seconds=stable, poll=poll)
    config.make_dirs()
    done: dict[str, float] = {}
    all_done = threading.Event()

    def on_normalized(record: FileRecord) -> None:
        done[record.original_name] = time.monotonic()
        if len(done) == drops:
            all_done.set()

    watcher = Watcher(config, Intake(config, Ledger.at(config.db_path), on_normalized))
    watcher.start()
    try:
        staging = root / "staging"
        staging.mkdir()
        dropped: dict[str, float] = {}
        for i in range(drops):
            name = f"drop{i:03d}.csv"
            (staging / name).write_text(_csv(i))
            (staging / name).rename(config.inbox("score") / name)
            dropped[name] = time.monotonic()
            time.sleep(interval)
        if not all_done.wait(timeout=stable * 10 + drops):
            raise SystemExit(f"only {len(done)} of {drops} drops were normalized")
        kind = watcher.status()["observer"]
    finally:
        watcher.stop(timeout=30)
    return [done[name] - dropped[name] for name in dropped], kind


def _footers_every_time(folder: Path) -> pa.Schema | None:
    """The lake schema as it was computed before the record: every file's footer, each drop."""
    return unify_schemas(pq.read_schema(p).remove_metadata() for p in lake_files(folder))


def growth_seconds(root: Path, drops: int, *, record: bool) -> list[float]:
    """Take ``drops`` small training drops in turn and return each one's seconds."""
    config = IngestConfig(DataLayout(root / ("record" if record else "footers")))
    config.make_dirs()
    intake = Intake(config, Ledger.at(config.db_path))
    original = lakefile.lake_schema
    lakefile.lake_schema = original if record else _footers_every_time  # type: ignore[assignment]
    try:
        times = []
        for i in range(drops):
            path = config.inbox("train") / f"t{i:05d}.csv"
            path.write_text(f"age,x,target\n{i},{i}.5,1\n{i + 1},{i}.25,0\n{i + 2},1.0,1\n")
            t0 = time.perf_counter()
            record_ = intake.take(path, "train")
            times.append(time.perf_counter() - t0)
            if record_.state != "normalized":
                raise SystemExit(f"drop {i} was {record_.state}: {record_.error}")
    finally:
        lakefile.lake_schema = original  # type: ignore[assignment]
    return times


def growth(drops: int) -> None:
    """Print the per-drop time early and late in a growing lake, now beside before."""
    with tempfile.TemporaryDirectory(prefix="dropscore-growth-") as tmp:
        before = growth_seconds(Path(tmp), drops, record=False)
        now = growth_seconds(Path(tmp), drops, record=True)
    print(f"training drop time as the lake grows to {drops} files (median of 10 drops, ms)")
    print(f"  {'':28s} {'drops 6-15':>12s} {f'drops {drops - 9}-{drops}':>14s}  ratio")
    for name, times in (("before: every footer", before), ("now: schema record", now)):
        early = statistics.median(times[5:15]) * 1000
        late = statistics.median(times[-10:]) * 1000
        print(f"  {name:28s} {early:12.1f} {late:14.1f}  {late / early:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    """Run both measurements and print the latency beside its baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--growth", type=int, default=0, help="measure N drops into a lake")
    parser.add_argument("--drops", type=int, default=50)
    parser.add_argument("--stable-seconds", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between drops")
    parser.add_argument("--poll", action="store_true", help="use the polling observer")
    args = parser.parse_args(argv)
    if args.growth:
        growth(args.growth)
        return
    with tempfile.TemporaryDirectory(prefix="dropscore-drops-") as tmp:
        work = direct_take_seconds(Path(tmp))
        latencies, observer = watched_latencies(
            Path(tmp), args.drops, args.stable_seconds, args.interval, args.poll
        )
    stable = args.stable_seconds
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    print(
        f"drop-to-ledger latency over {len(latencies)} drops ({observer} observer, "
        f"one drop every {args.interval:g} s)"
    )
    print(f"  baseline stable_seconds      {stable:8.3f} s")
    print(f"  baseline direct take (p50)   {work:8.3f} s")
    print(f"  p50                          {p50:8.3f} s   (+{p50 - stable:.3f} s over stable)")
    print(f"  p95                          {p95:8.3f} s   (+{p95 - stable:.3f} s over stable)")
    print(f"  max                          {max(latencies):8.3f} s")
    verdict = "within" if p95 <= stable + 0.5 else "OVER"
    print(f"  goal p95 <= stable + 0.5 s = {stable + 0.5:.3f} s: {verdict}")


if __name__ == "__main__":
    main()
