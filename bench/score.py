"""Bulk scoring throughput and peak memory: ``dropscore score`` beside two peers, as they ship.

A generated CSV (``--rows``; ``make bench FULL=1``: 5,000,000 rows × the sample model's 10 float
features, about 1 GB) is scored to Parquet, each path in its own fresh process so that peak RSS
is per path:

- ``floor``:     ``bench/floor_peer.py``: ``pyarrow.csv.read_csv`` (or ``pq.read_table``) of the
                 whole file, ``pq.write_table`` without dictionaries, no model (the raw pyarrow
                 floor: what the hardware does at best, in any memory);
- ``naive``:     ``bench/naive_peer.py``: ``pandas.read_csv`` → ``pipeline.predict`` →
                 ``to_parquet``, whole file at once;
- ``dropscore``: ``dropscore score IN -o OUT --format parquet`` at the default ``batch_rows``.

Every pair runs dropscore and each peer once, the order rotated pair by pair, with the same
OMP/BLAS thread settings; the median per-pair ratio of rows/s (dropscore / peer) is reported with
its range, and the peak RSS of each. The same is repeated for a Parquet copy of the input. Then
``POST /score-file`` on a real ``dropscore api --workers 1`` (upload streamed from disk as a raw
``text/csv`` body, response streamed to disk) alternates with ``dropscore score`` on a
1,000,000-row file. Peak RSS: ``bench/_measure.py``.

Goals (issue 23): dropscore ≥ 0.9× the floor's rows/s on both inputs, ≥ 2× naive's on CSV
(≥ 2.5× on Parquet, issue 13), and dropscore's peak RSS ≤ 400 MiB at the default ``batch_rows``.

    .venv/bin/python -m bench.score                 # small (200,000 rows)
    .venv/bin/python -m bench.score --rows 5000000  # the size the goals are stated at
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from bench._common import machine_load, ratios, thread_settings  # noqa: E402
from bench._data import SAMPLE, csv_to_parquet, generate_csv, parquet_rows  # noqa: E402
from bench._measure import LIMIT_SECONDS, PeakWatch, Result, end_all, measure, track  # noqa: E402

SETTINGS = ROOT / "settings.toml"
GOAL_CSV = 2.0  # dropscore / naive rows/s, CSV in
GOAL_PARQUET = 2.5  # the same, Parquet in
GOAL_FLOOR = 0.9  # dropscore / floor rows/s, either input
GOAL_RSS_MB = 400.0
PEERS = ("floor", "naive")
BASELINE = "baseline"  # --baseline: the same command on another checkout's source
CHUNK = 1 << 20


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


# ---------------------------------------------------------------- the paths, in pairs


def paired_paths(
    src: Path,
    rows: int,
    work: Path,
    env: dict[str, str],
    model: Path,
    pairs: int,
    baseline: Path | None = None,
) -> dict[str, list[Result]]:
    """Score src with dropscore and each peer once a pair, order rotated, each a fresh process.

    With ``baseline`` (another checkout's source folder), the same command run on that source
    (``PYTHONPATH``) is one more path of each pair: a change's effect, in the same pairs.
    """
    out = work / "out.parquet"
    commands = {
        "dropscore": [dropscore_bin(), "score", str(src), "-o", str(out), "--format", "parquet"],
        "floor": [sys.executable, "-m", "bench.floor_peer", str(src), str(out)],
        "naive": [sys.executable, "-m", "bench.naive_peer", str(src), str(out), str(model)],
    }
    envs = {name: env for name in commands}
    if baseline is not None:
        commands[BASELINE] = commands["dropscore"]
        envs[BASELINE] = {**env, "PYTHONPATH": str(baseline)}
    results: dict[str, list[Result]] = {name: [] for name in commands}
    names = list(commands)
    for pair in range(pairs):
        order = names[pair % len(names) :] + names[: pair % len(names)]
        for name in order:
            print(f"  pair {pair + 1} {name} …", end="", flush=True)
            log = work / f"{name}.log"
            result = measure(name, commands[name], envs[name], rows, log, cwd=ROOT)
            cores = result.cpu_seconds / result.seconds
            print(f" {result.seconds:.2f}s {result.peak_mb:.0f} MiB, {cores:.2f} cores", flush=True)
            got = parquet_rows(out)
            out.unlink()
            if got != rows:
                raise SystemExit(f"{name} wrote {got} rows, expected {rows}")
            results[name].append(result)
    return results


def print_table(title: str, results: dict[str, list[Result]], goal: float) -> bool:
    """Print each path's median figures and the pair ratios; return whether the goals were met."""
    print(f"\n{title}")
    print(
        f"  {'path':<10} {'runs':>4} {'median s':>9} {'rows/s':>12} {'peak RSS MiB':>13}"
        f" {'CPU s':>6} {'cores':>6}"
    )
    for name, runs in results.items():
        seconds = statistics.median(r.seconds for r in runs)
        peak = max(r.peak_mb for r in runs)
        cpu = statistics.median(r.cpu_seconds for r in runs)
        cores = statistics.median(r.cpu_seconds / r.seconds for r in runs)
        print(
            f"  {name:<10} {len(runs):>4} {seconds:>9.2f} {runs[0].rows / seconds:>12,.0f}"
            f" {peak:>13.0f} {cpu:>6.2f} {cores:>6.2f}"
        )
    print("  (CPU s: user + system of the process; cores: CPU s / wall s, both cores busy = 2)")
    ds = results["dropscore"]
    speed = {peer: ratios([r.rate for r in ds], [r.rate for r in results[peer]]) for peer in PEERS}
    if BASELINE in results:
        base = results[BASELINE]
        rate = ratios([r.rate for r in ds], [r.rate for r in base])
        print(f"  dropscore / {BASELINE} rows/s: {rate}")
        cpu = ratios([r.cpu_seconds for r in base], [r.cpu_seconds for r in ds])
        print(f"  {BASELINE} / dropscore CPU s: {cpu}")
    for peer in PEERS:
        print(f"  dropscore / {peer} rows/s: {speed[peer]}")
        memory = ratios([r.peak_mb for r in results[peer]], [r.peak_mb for r in ds])
        print(f"  {peer} / dropscore peak RSS: {memory}")
    peak = max(r.peak_mb for r in ds)
    ok = speed["floor"].median >= GOAL_FLOOR and speed["naive"].median >= goal
    ok = ok and peak <= GOAL_RSS_MB
    print(
        f"  goal (×{GOAL_FLOOR:.1f} floor, ×{goal:.1f} naive, ≤ {GOAL_RSS_MB:.0f} MiB):"
        f" {'met' if ok else 'NOT met'}"
    )
    return ok


# ---------------------------------------------------------------- /score-file


def start_api(work: Path, data_dir: Path, size_mb: float) -> tuple[str, int]:
    """Start `dropscore api --workers 1`; return its URL and the worker's pid once ready."""
    import psutil
    import requests

    from scoring.testing.ports import free_port

    port = free_port()
    (work / "api-tmp").mkdir()
    api_env = dropscore_env(
        data_dir,
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__SERVER__MAX_REQUEST_MB=str(int(size_mb) + 64),
        TMPDIR=str(work / "api-tmp"),
    )
    url = f"http://127.0.0.1:{port}"
    with open(work / "api.log", "wb") as log:
        api = subprocess.Popen(
            [dropscore_bin(), "api", "--workers", "1"],
            env=api_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    track(api)
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
    return url, workers[0].pid if workers else api.pid


def post_file(url: str, worker: int, src: Path, rows: int, out: Path) -> Result:
    """POST src to /score-file, stream the answer to out; time it and the worker's peak RSS."""
    import requests

    with PeakWatch(worker) as watch, open(src, "rb") as body:
        started = time.perf_counter()
        with requests.post(
            url + "/score-file?format=parquet",
            data=body,
            headers={"Content-Type": "text/csv"},
            stream=True,
            timeout=(5, LIMIT_SECONDS),
        ) as response:
            if response.status_code != 200:
                raise SystemExit(
                    f"/score-file answered {response.status_code}: {response.text[:500]}"
                )
            with open(out, "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
            scored = int(response.headers["X-Rows-Scored"])
        seconds = time.perf_counter() - started
    if scored != rows or parquet_rows(out) != rows:
        raise SystemExit(f"/score-file scored {scored} rows, expected {rows}")
    out.unlink()
    return Result("/score-file", rows, seconds, watch.peak_mb)


def score_file_vs_cli(
    src: Path, rows: int, work: Path, data_dir: Path, env: dict[str, str], pairs: int
) -> bool:
    """Alternate POST /score-file on a real `dropscore api --workers 1` with `dropscore score`."""
    size_mb = src.stat().st_size / (1 << 20)
    url, worker = start_api(work, data_dir, size_mb)
    cli_out = work / "cli.parquet"
    cli_cmd = [dropscore_bin(), "score", str(src), "-o", str(cli_out), "--format", "parquet"]
    http: list[Result] = []
    cli: list[Result] = []
    for pair in range(pairs):
        for name in ("http", "cli") if pair % 2 == 0 else ("cli", "http"):
            print(f"  pair {pair + 1} {name} …", end="", flush=True)
            if name == "http":
                http.append(post_file(url, worker, src, rows, work / "api-out.parquet"))
            else:
                cli.append(measure("dropscore score", cli_cmd, env, rows, work / "cli.log"))
                cli_out.unlink()
            print(f" {(http if name == 'http' else cli)[-1].seconds:.1f}s", flush=True)
    end_all()
    print(f"\n/score-file vs `dropscore score`: {rows:,} rows, {size_mb:,.0f} MiB CSV → Parquet")
    print(f"  {'path':<16} {'median s':>9} {'rows/s':>12} {'peak RSS MiB':>13}")
    for runs in (http, cli):
        seconds = statistics.median(r.seconds for r in runs)
        print(
            f"  {runs[0].name:<16} {seconds:>9.2f} {rows / seconds:>12,.0f}"
            f" {max(r.peak_mb for r in runs):>13.0f}"
        )
    print(f"  /score-file / cli rows/s: {ratios([r.rate for r in http], [r.rate for r in cli])}")
    print("  (server RSS is the gunicorn worker's, model and app loaded before the request)")
    left = list((work / "api-tmp").iterdir())
    if left:
        print(f"  WARNING: the API left {len(left)} temp file(s) behind: {left[:3]}")
    return max(r.peak_mb for r in http) <= GOAL_RSS_MB


# ---------------------------------------------------------------- main


def _on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-score-", dir=args.tmp))
    try:
        data_dir = work / "data"
        extra = {"DROPSCORE__SCORING__BATCH_ROWS": str(args.batch_rows)} if args.batch_rows else {}
        if args.no_drift:  # what drift on scoring costs: the same runs without it
            extra["DROPSCORE__MONITORING__DRIFT_ON_SCORING"] = "false"
        print(f"[monitoring] drift_on_scoring: {'off' if args.no_drift else 'as shipped'}")
        env = dropscore_env(data_dir, **extra, **thread_settings())
        print(f"thread settings for every path: {thread_settings() or 'library defaults'}")
        print(f"training the sample model in {data_dir} …", flush=True)
        train(env, work / "train.log")
        model = data_dir / "models" / "1" / "model.skops"

        csv = work / "in.csv"
        print(f"generating {args.rows:,} rows …", flush=True)
        generate_csv(csv, args.rows)
        mb = csv.stat().st_size / (1 << 20)
        ok = True
        if "csv" in args.inputs:
            ok &= print_table(
                f"CSV in ({args.rows:,} rows, {mb:,.0f} MiB) → Parquet out",
                paired_paths(csv, args.rows, work, env, model, args.pairs, args.baseline),
                GOAL_CSV,
            )

        if "parquet" in args.inputs:
            parquet = work / "in.parquet"
            csv_to_parquet(csv, parquet)
            pmb = parquet.stat().st_size / (1 << 20)
            ok &= print_table(
                f"Parquet in ({args.rows:,} rows, {pmb:,.0f} MiB) → Parquet out",
                paired_paths(parquet, args.rows, work, env, model, args.pairs, args.baseline),
                GOAL_PARQUET,
            )
            parquet.unlink()

        if not args.skip_api:
            upload_rows = min(args.upload_rows, args.rows)
            upload = work / "upload.csv"
            generate_csv(upload, upload_rows, seed=11)
            csv.unlink()
            ok &= score_file_vs_cli(upload, upload_rows, work, data_dir, env, args.pairs)
        return 0 if ok else 1
    finally:
        end_all()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the generated CSV")
    parser.add_argument(
        "--upload-rows",
        type=int,
        default=1_000_000,
        help="rows in the /score-file upload (capped at --rows)",
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=0,
        help="override [scoring] batch_rows (default: the shipped setting)",
    )
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs per comparison")
    parser.add_argument(
        "--no-drift",
        action="store_true",
        help="score with [monitoring] drift_on_scoring off (shipped on), to see what drift costs",
    )
    parser.add_argument("--skip-api", action="store_true", help="skip the /score-file part")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout's source folder (e.g. `git worktree add` of main): its"
        " `dropscore score` runs as one more path of every pair",
    )
    parser.add_argument(
        "--inputs",
        type=lambda text: set(text.split(",")) - {""},
        default={"csv", "parquet"},
        help="input formats to compare, comma-separated (default: csv,parquet)",
    )
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.upload_rows < 1 or args.pairs < 1:
        parser.error("--rows, --upload-rows and --pairs must be positive")
    print(machine_load(), flush=True)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; temporary files and processes cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
