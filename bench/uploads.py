"""``POST /score-file`` uploads, two code trees side by side: the same upload, alternately.

Two real ``dropscore api --workers 1`` servers run on one data folder (one model): ``after`` on
this checkout, ``before`` on another tree (``--before DIR``, e.g. ``git archive <commit> | tar
-x -C DIR``; its packages shadow this checkout's through PYTHONPATH). A generated CSV (the
/score-file case of ``bench/score.py``) is posted to each in turn, as ``multipart/form-data``
(streamed from disk, with its Content-Length) or as a raw ``text/csv`` body, the order swapped
every pair; per request: seconds, the worker's peak RSS and the bytes it wrote (``wchar``).

    .venv/bin/python -m bench.uploads --before /tmp/before --rows 1000000 --pairs 3
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench._common import machine_load, ratios, thread_settings
from bench._data import generate_csv, parquet_rows
from bench._measure import LIMIT_SECONDS, PeakWatch, end_all, track
from bench.score import CHUNK, dropscore_env, train

MB = 1 << 20
BOUNDARY = "dropscore-bench-boundary"


@dataclass
class Upload:
    """One request: which tree, seconds, the worker's peak RSS and bytes written."""

    tree: str
    seconds: float
    peak_mb: float
    written_mb: float


class MultipartFile:
    """A multipart body read from disk in chunks, with a length (so no chunked encoding)."""

    def __init__(self, path: Path) -> None:
        self.head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.size = len(self.head) + path.stat().st_size + len(self.tail)
        data = open(path, "rb")  # noqa: SIM115 - closed in read() once it is sent
        self.parts: list[IO[bytes]] = [_bytes(self.head), data, _bytes(self.tail)]

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        """Read up to n bytes across the head, the file and the tail."""
        while self.parts:
            chunk = self.parts[0].read(n)
            if chunk:
                return chunk
            self.parts.pop(0).close()
        return b""


def _bytes(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)


def start_api(tree: str, work: Path, env: dict[str, str], port: int, pythonpath: str) -> int:
    """Start `python -m scoring api --workers 1` on the tree; return its worker's pid."""
    import psutil
    import requests

    api_env = {**env, "DROPSCORE__SERVER__PORT": str(port), "PYTHONPATH": pythonpath}
    with open(work / f"api-{tree}.log", "wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "scoring", "api", "--workers", "1"],
            env=api_env,
            cwd=pythonpath,  # `-m` puts the working folder first on sys.path
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    track(api)
    deadline = time.monotonic() + 60
    while True:
        if api.poll() is not None:
            raise SystemExit(f"{tree} api exited:\n{(work / f'api-{tree}.log').read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{tree} api was not ready within 60s")
        time.sleep(0.1)
    workers = psutil.Process(api.pid).children(recursive=True)
    return workers[0].pid if workers else api.pid


def post(tree: str, port: int, worker: int, src: Path, rows: int, multipart: bool) -> Upload:
    """POST src, stream the scored Parquet to disk; measure time, peak RSS and bytes written."""
    import psutil
    import requests

    out = src.with_name(f"out-{tree}.parquet")
    if multipart:
        body: object = MultipartFile(src)
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
    else:
        body = open(src, "rb")  # noqa: SIM115 - closed by requests after sending
        content_type = "text/csv"
    before = psutil.Process(worker).io_counters().write_chars
    with PeakWatch(worker) as watch:
        started = time.perf_counter()
        with requests.post(
            f"http://127.0.0.1:{port}/score-file?format=parquet",
            data=body,
            headers={"Content-Type": content_type},
            stream=True,
            timeout=(5, LIMIT_SECONDS),
        ) as response:
            if response.status_code != 200:
                raise SystemExit(f"{tree} answered {response.status_code}: {response.text[:500]}")
            with open(out, "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
        seconds = time.perf_counter() - started
    written = psutil.Process(worker).io_counters().write_chars - before
    if parquet_rows(out) != rows:
        raise SystemExit(f"{tree} scored {parquet_rows(out)} rows, expected {rows}")
    out.unlink()
    return Upload(tree, seconds, watch.peak_mb, written / MB)


def run(args: argparse.Namespace) -> int:
    """Alternate the two trees for args.pairs pairs and print medians and the ratio."""
    print(f"machine load: {machine_load()}")
    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-uploads-", dir=args.tmp))
    try:
        return _compare(args, work)
    finally:
        end_all()
        shutil.rmtree(work, ignore_errors=True)


def _compare(args: argparse.Namespace, work: Path) -> int:
    """Train, generate the upload, start both servers and alternate the posts."""
    from scoring.testing.ports import free_port

    env = dropscore_env(work / "data", **thread_settings())
    train(env, work / "train.log")
    src = work / "upload.csv"
    generate_csv(src, args.rows, seed=11)
    size_mb = src.stat().st_size / MB
    env["DROPSCORE__SERVER__MAX_UPLOAD_MB"] = str(int(size_mb) + 64)
    here = str(Path(__file__).resolve().parent.parent)
    trees = {"before": str(Path(args.before).resolve()), "after": here}
    ports = {tree: free_port() for tree in trees}
    workers = {tree: start_api(tree, work, env, ports[tree], path) for tree, path in trees.items()}
    results: dict[str, list[Upload]] = {tree: [] for tree in trees}
    try:
        for pair in range(args.pairs):
            for tree in ("before", "after") if pair % 2 == 0 else ("after", "before"):
                done = post(tree, ports[tree], workers[tree], src, args.rows, args.multipart)
                results[tree].append(done)
                print(f"  pair {pair + 1} {tree}: {done.seconds:.2f}s", flush=True)
    finally:
        end_all()
    kind = "multipart" if args.multipart else "raw text/csv"
    print(f"\n/score-file, {args.rows:,} rows ({size_mb:,.0f} MiB CSV, {kind}) → Parquet")
    print(f"  {'tree':<8} {'median s':>9} {'peak RSS MiB':>13} {'written MiB':>12}")
    for tree, runs in results.items():
        print(
            f"  {tree:<8} {statistics.median(r.seconds for r in runs):>9.2f}"
            f" {max(r.peak_mb for r in runs):>13.0f}"
            f" {statistics.median(r.written_mb for r in runs):>12.0f}"
        )
    speed = ratios(
        [1 / r.seconds for r in results["after"]], [1 / r.seconds for r in results["before"]]
    )
    print(f"  after / before rows/s: {speed}")
    left = [p for p in (work / "data").glob(".upload-*")]
    if left:
        print(f"  WARNING: spool folders left behind: {left[:3]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other code tree (a checkout)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the upload")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs")
    parser.add_argument("--raw", dest="multipart", action="store_false", help="raw body")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
