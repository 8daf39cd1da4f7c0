"""Bulk scoring throughput and peak memory: ``dropscore score`` beside two baselines.

A generated CSV (default 5,000,000 rows × the sample model's 10 float features, about 1 GB) is
scored to Parquet three ways, each in its own fresh process so that peak RSS is per path:

- ``naive``:     ``pandas.read_csv`` → ``pipeline.predict`` → ``to_parquet``, whole file at once;
- ``pyarrow``:   ``pyarrow.csv.open_csv`` (or ``ParquetFile.iter_batches`` without pre_buffer)
                 streamed into ``pq.ParquetWriter``, no model at all (the floor: parse + write);
- ``dropscore``: ``dropscore score IN -o OUT --format parquet`` at the default ``batch_rows``.

The same is repeated for a Parquet copy of the input. Then ``POST /score-file`` on a real
``dropscore api --workers 1`` (upload streamed from disk as a raw ``text/csv`` body, response
streamed to disk) is timed against ``dropscore score`` on the same 1,000,000-row file.

Peak RSS is the child's own high-water mark: ``VmHWM`` from ``/proc/<pid>/status`` polled every
20 ms (it is per address space and starts afresh at exec, so nothing of this harness leaks in),
cross-checked with an RSS sample at the same rate. Goals (from the issue): dropscore / naive
rows/s ≥ 1.0 and dropscore's peak RSS < 400 MB.

    .venv/bin/python -m bench.score                 # full size
    .venv/bin/python -m bench.score --rows 500000   # quick run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if not __package__:
    # Run as a file, this folder would shadow the project's top-level packages (bench/ingest.py).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
SAMPLE = ROOT / "data" / "sample" / "diabetes.csv"
SETTINGS = ROOT / "settings.toml"
GOAL_RATIO = 1.0
GOAL_RSS_MB = 400.0
POLL = 0.02
CHUNK = 1 << 20
LIMIT_SECONDS = 1800.0  # no single measured process may run longer than this

_live: list[subprocess.Popen[bytes]] = []  # children to end on the way out, whatever happens


# ---------------------------------------------------------------- measured workers (children)


def _worker(argv: list[str]) -> None:
    """Run one baseline path in this (fresh) process; print the row count as JSON."""
    kind, src, dst = argv[0], Path(argv[1]), Path(argv[2])
    if kind == "naive":
        import pandas as pd

        from scoring.lifecycle.registry import load_trusted

        pipeline = load_trusted(Path(argv[3]))
        frame = pd.read_parquet(src) if src.suffix == ".parquet" else pd.read_csv(src)
        frame["prediction"] = pipeline.predict(frame[FEATURES].to_numpy())
        frame.to_parquet(dst)
        rows = len(frame)
    elif kind == "pyarrow":
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if src.suffix == ".parquet":
            source = pq.ParquetFile(src, pre_buffer=False)  # pre_buffer holds the bytes read
            batches: Any = source.iter_batches()
            schema = source.schema_arrow
        else:
            batches = pacsv.open_csv(src)
            schema = batches.schema
        rows = 0
        with pq.ParquetWriter(dst, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps({"rows": rows}))


# ---------------------------------------------------------------- measuring a child process


def _status_kb(pid: int, key: str) -> int:
    """Read one ``kB`` field of /proc/<pid>/status; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PeakWatch:
    """Poll a process's VmHWM and VmRSS in a thread; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hwm_kb = 0
        self.rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(POLL)

    def sample(self) -> None:
        self.hwm_kb = max(self.hwm_kb, _status_kb(self.pid, "VmHWM"))
        self.rss_kb = max(self.rss_kb, _status_kb(self.pid, "VmRSS"))

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_mb(self) -> float:
        return max(self.hwm_kb, self.rss_kb) / 1024


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    peak_mb: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure(name: str, cmd: list[str], env: dict[str, str], rows: int, log: Path) -> Result:
    """Run cmd as a fresh process; wall time and its own peak RSS (see the module docstring)."""
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _live.append(proc)
        watch = PeakWatch(proc.pid)
        try:
            # Reap with wait4 ourselves so the last VmHWM sample is taken just before exit
            # and the kernel's own maxrss for this child comes back as a cross-check.
            deadline = time.monotonic() + LIMIT_SECONDS
            with watch:
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} ran longer than {LIMIT_SECONDS:.0f}s")
                    watch.sample()
                    time.sleep(POLL)
            seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            _end(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    # ru_maxrss may include this harness's own memory when the child was spawned with vfork
    # (Linux folds the old address space's high-water mark in at exec), so it is used only
    # when it cannot be ours: when it exceeds this process's own high-water mark.
    kernel_mb = usage.ru_maxrss / 1024
    own_mb = _status_kb(os.getpid(), "VmHWM") / 1024
    peak = max(watch.peak_mb, kernel_mb if kernel_mb > own_mb else 0.0)
    return Result(name, rows, seconds, peak)


def _end(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Stop a child we started (and its own children, e.g. gunicorn workers), by pid."""
    if proc in _live:
        _live.remove(proc)
    if proc.returncode is not None:
        return
    try:
        import psutil

        kids = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # already gone
        kids = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    for kid in kids:
        with contextlib.suppress(Exception):
            kid.kill()


# ---------------------------------------------------------------- inputs


def feature_scale() -> tuple[Any, Any]:
    """Mean and standard deviation of each feature in the bundled sample."""
    import numpy as np

    sample = np.loadtxt(SAMPLE, delimiter=",", skiprows=1)[:, : len(FEATURES)]
    return sample.mean(axis=0), sample.std(axis=0)


def generate_csv(path: Path, rows: int, seed: int = 7, chunk: int = 250_000) -> None:
    """Write rows of normally distributed features on the sample's scale, chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    mean, std = feature_scale()
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in FEATURES])
    with pacsv.CSVWriter(str(path), schema) as writer:
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            values = rng.normal(mean, std, size=(n, len(FEATURES)))
            writer.write_table(pa.table(dict(zip(FEATURES, values.T, strict=True))))
            done += n


def csv_to_parquet(src: Path, dst: Path, group: int = 1 << 20) -> None:
    """Convert the CSV to Parquet in row groups of pyarrow's (and pandas') default 1Mi rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    reader = pacsv.open_csv(src)
    pending: list[pa.RecordBatch] = []
    with pq.ParquetWriter(dst, reader.schema) as writer:
        for batch in reader:
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= group:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=group)
                pending = []
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=group)


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def dropscore_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a user would have: the shipped settings on a private data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(SETTINGS),
        DROPSCORE__PATHS__DATA_DIR=str(data_dir),
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", ""),
        **extra,
    )
    if not env["OMP_NUM_THREADS"]:
        del env["OMP_NUM_THREADS"]
    return env


def dropscore_bin() -> str:
    found = Path(sys.executable).with_name("dropscore")
    return str(found) if found.exists() else shutil.which("dropscore") or "dropscore"


def train(env: dict[str, str], log: Path) -> None:
    done = subprocess.run(
        [dropscore_bin(), "train"], env=env, capture_output=True, text=True, timeout=300
    )
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"dropscore train failed:\n{done.stdout}\n{done.stderr}")


# ---------------------------------------------------------------- the three paths


def three_paths(
    src: Path, rows: int, work: Path, env: dict[str, str], model: Path
) -> dict[str, Result]:
    """Score src with naive, pyarrow and dropscore, each in a fresh process."""
    me = [sys.executable, "-m", "bench.score", "_worker"]
    out = work / "out.parquet"
    runs = {
        "pyarrow": [*me, "pyarrow", str(src), str(out)],
        "naive": [*me, "naive", str(src), str(out), str(model)],
        "dropscore": [dropscore_bin(), "score", str(src), "-o", str(out), "--format", "parquet"],
    }
    results = {}
    for name, cmd in runs.items():
        print(f"  {name} …", end="", flush=True)
        results[name] = measure(name, cmd, env, rows, work / f"{name}.log")
        print(f" {results[name].seconds:.1f}s", flush=True)
        got = parquet_rows(out)
        out.unlink()
        if got != rows:
            raise SystemExit(f"{name} wrote {got} rows, expected {rows}")
    return results


def print_table(title: str, results: dict[str, Result]) -> bool:
    print(f"\n{title}")
    print(f"  {'path':<10} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}")
    for r in results.values():
        print(f"  {r.name:<10} {r.seconds:>8.1f} {r.rate:>12,.0f} {r.peak_mb:>12.0f}")
    ds, naive, arrow = results["dropscore"], results["naive"], results["pyarrow"]
    speed_naive, speed_arrow = ds.rate / naive.rate, ds.rate / arrow.rate
    ok = speed_naive >= GOAL_RATIO and ds.peak_mb < GOAL_RSS_MB
    for base, speed in ((naive, speed_naive), (arrow, speed_arrow)):
        print(f"  dropscore / {base.name + ':':<8} rows/s ×{speed:.2f}"
              f"  peak RSS ×{ds.peak_mb / base.peak_mb:.2f}")
    print(
        f"  goal (×{GOAL_RATIO:.1f} naive, < {GOAL_RSS_MB:.0f} MB): {'met' if ok else 'NOT met'}"
    )
    return ok


# ---------------------------------------------------------------- /score-file


def score_file_vs_cli(
    src: Path, rows: int, work: Path, data_dir: Path, env: dict[str, str]
) -> bool:
    """Time POST /score-file on a real `dropscore api --workers 1` against `dropscore score`."""
    import psutil
    import requests

    from tests.conftest import free_port  # tests/ ships in the repo; no pytest needed

    size_mb = src.stat().st_size / (1 << 20)
    port = free_port()
    spool = work / "api-tmp"
    spool.mkdir()
    api_env = dropscore_env(
        data_dir,
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__SERVER__MAX_REQUEST_MB=str(int(size_mb) + 64),
        TMPDIR=str(spool),
    )
    url = f"http://127.0.0.1:{port}"
    with open(work / "api.log", "wb") as log:
        api = subprocess.Popen(
            [dropscore_bin(), "api", "--workers", "1"], env=api_env, stdout=log,
            stderr=subprocess.STDOUT,
        )
    _live.append(api)
    try:
        deadline = time.monotonic() + 60
        while True:
            if api.poll() is not None:
                raise SystemExit(f"dropscore api exited:\n{(work / 'api.log').read_text()}")
            try:
                if requests.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("dropscore api was not ready within 60s")
            time.sleep(0.1)
        workers = psutil.Process(api.pid).children(recursive=True)
        worker = workers[0].pid if workers else api.pid
        out = work / "api-out.parquet"
        with PeakWatch(worker) as watch, open(src, "rb") as body:
            started = time.perf_counter()
            with requests.post(
                url + "/score-file?format=parquet", data=body,
                headers={"Content-Type": "text/csv"}, stream=True, timeout=(5, LIMIT_SECONDS),
            ) as response:
                if response.status_code != 200:
                    raise SystemExit(f"/score-file answered {response.status_code}: "
                                     f"{response.text[:500]}")
                with open(out, "wb") as fh:
                    for chunk in response.iter_content(CHUNK):
                        fh.write(chunk)
                scored = int(response.headers["X-Rows-Scored"])
            seconds = time.perf_counter() - started
        if scored != rows or parquet_rows(out) != rows:
            raise SystemExit(f"/score-file scored {scored} rows, expected {rows}")
        out.unlink()
        http = Result("/score-file", rows, seconds, watch.peak_mb)
    finally:
        _end(api)
    cli = measure(
        "dropscore score",
        [dropscore_bin(), "score", str(src), "-o", str(work / "cli.parquet"), "--format",
         "parquet"],
        env, rows, work / "cli.log",
    )
    (work / "cli.parquet").unlink()
    print(f"\n/score-file vs `dropscore score`: {rows:,} rows, {size_mb:,.0f} MB CSV → Parquet")
    print(f"  {'path':<16} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}")
    for r in (http, cli):
        print(f"  {r.name:<16} {r.seconds:>8.1f} {r.rate:>12,.0f} {r.peak_mb:>12.0f}")
    print(f"  /score-file / cli: rows/s ×{http.rate / cli.rate:.2f}"
          " (server RSS is the gunicorn worker's, model and app loaded before the request)")
    left = list(spool.iterdir())
    if left:
        print(f"  WARNING: the API left {len(left)} temp file(s) behind: {left[:3]}")
    return http.peak_mb < GOAL_RSS_MB


# ---------------------------------------------------------------- main


def _on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-score-", dir=args.tmp))
    try:
        data_dir = work / "data"
        extra = {"DROPSCORE__SCORING__BATCH_ROWS": str(args.batch_rows)} if args.batch_rows else {}
        env = dropscore_env(data_dir, **extra)
        print(f"training the sample model in {data_dir} …", flush=True)
        train(env, work / "train.log")
        model = data_dir / "models" / "1" / "model.skops"

        csv = work / "in.csv"
        print(f"generating {args.rows:,} rows …", flush=True)
        generate_csv(csv, args.rows)
        mb = csv.stat().st_size / (1 << 20)
        ok = print_table(
            f"CSV in ({args.rows:,} rows, {mb:,.0f} MB) → Parquet out",
            three_paths(csv, args.rows, work, env, model),
        )

        parquet = work / "in.parquet"
        csv_to_parquet(csv, parquet)
        pmb = parquet.stat().st_size / (1 << 20)
        ok &= print_table(
            f"Parquet in ({args.rows:,} rows, {pmb:,.0f} MB) → Parquet out",
            three_paths(parquet, args.rows, work, env, model),
        )
        parquet.unlink()

        if not args.skip_api:
            upload_rows = min(args.upload_rows, args.rows)
            upload = work / "upload.csv"
            generate_csv(upload, upload_rows, seed=11)
            csv.unlink()
            ok &= score_file_vs_cli(upload, upload_rows, work, data_dir, env)
        return 0 if ok else 1
    finally:
        for proc in list(_live):
            _end(proc, grace=5)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        _worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows in the generated CSV")
    parser.add_argument("--upload-rows", type=int, default=1_000_000,
                        help="rows in the /score-file upload (capped at --rows)")
    parser.add_argument("--batch-rows", type=int, default=0,
                        help="override [scoring] batch_rows (default: the shipped setting)")
    parser.add_argument("--skip-api", action="store_true", help="skip the /score-file part")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.upload_rows < 1:
        parser.error("--rows and --upload-rows must be positive")
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; temporary files and processes cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
