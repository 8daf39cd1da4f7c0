"""Benchmark the protocols against ``/predict``: same model, same server, same run.

One server process (waitress, 4 threads, the app from ``create_app``) serves a linear model
trained on the bundled sample. One keep-alive client posts, back to back, a 1-row and a
1,000-row payload to ``/predict`` (``X_test``), ``/invocations`` (``dataframe_split``) and
``/v2/models/default/infer`` (one FP64 tensor ``[rows, 10]``, as JSON and as binary tensor
data). Each protocol run is paired with a ``/predict`` run of the same payload right before
it, so drift on a shared machine hits both; the report gives each pair's requests/s ratio
to ``/predict`` (median and range over the pairs) and the median p50 latency.

    .venv/bin/python bench/protocols.py                 # 3 pairs of 3 s runs per case
    .venv/bin/python bench/protocols.py --pairs 5 --seconds 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if not __package__:  # run as a file: bench/ingest.py must not shadow the ingest package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
SAMPLE = ROOT / "data" / "sample" / "diabetes.csv"
SERVER = """
import logging, sys
logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" lines are noise here
from waitress import serve
from scoring.api.app import create_app, warm
from scoring.settings import load_settings
settings = load_settings(None, env={}, overrides={
    "paths": {"data_dir": sys.argv[1]}, "training": {"bootstrap_data": ""}})
serve(warm(create_app(settings)), host="127.0.0.1", port=int(sys.argv[2]), threads=4,
      _quiet=True)
"""


def train(data_dir: Path) -> list[str]:
    """Train and promote a linear model in data_dir; return its feature names."""
    import pandas as pd

    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.training import train as fit
    from scoring.settings import load_settings

    settings = load_settings(
        None, env={}, overrides={"paths": {"data_dir": str(data_dir)}, "training": {}}
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    result = fit(pd.read_csv(SAMPLE), settings.model)
    card = {
        "estimator": settings.model.estimator,
        "metrics": result.metrics,
        "schema": result.schema.to_dict(),
    }
    registry = Registry(settings.models_dir, settings.db_path)
    registry.promote(registry.register(result.pipeline, card))
    return result.schema.names


def payloads(features: list[str], rows: int) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Each endpoint's request for the same rows: (path, body, headers)."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE)[features]
    matrix = np.resize(frame.to_numpy(dtype=np.float64), (rows, len(features)))
    data = matrix.tolist()
    jsonh = {"Content-Type": "application/json"}
    tensor = {"name": "input-0", "shape": [rows, len(features)], "datatype": "FP64"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": matrix.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return {
        "/predict": (
            "/predict",
            json.dumps({"X_test": data[0] if rows == 1 else data}).encode(),
            jsonh,
        ),
        "/invocations": (
            "/invocations",
            json.dumps({"dataframe_split": {"columns": features, "data": data}}).encode(),
            jsonh,
        ),
        "/v2 infer (JSON)": (
            "/v2/models/default/infer",
            json.dumps({"inputs": [{**tensor, "data": data}]}).encode(),
            jsonh,
        ),
        "/v2 infer (binary)": (
            "/v2/models/default/infer",
            header + matrix.astype("<f8").tobytes(),
            {"Inference-Header-Content-Length": str(len(header))},
        ),
    }


def run(port: int, path: str, body: bytes, headers: dict[str, str], seconds: float):
    """Post the body back to back on one keep-alive connection; (requests/s, p50 ms)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    conn.close()
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def start_server(data_dir: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(data_dir), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not get ready within 60 s")


def compare(port: int, base: tuple, case: tuple, pairs: int, seconds: float) -> str:
    """Alternate /predict and one protocol on the same payload; one report line."""
    run(port, *case, seconds=1.0)  # warm up
    ratios, rps, p50, base_rps, base_p50 = [], [], [], [], []
    for _ in range(max(3, pairs)):
        b_rps, b_p50 = run(port, *base, seconds=seconds)
        c_rps, c_p50 = run(port, *case, seconds=seconds)
        ratios.append(c_rps / b_rps)
        rps.append(c_rps)
        p50.append(c_p50)
        base_rps.append(b_rps)
        base_p50.append(b_p50)
    med = statistics.median
    return (
        f"{med(rps):>8.0f} {med(p50):>8.2f}   {med(base_rps):>7.0f} {med(base_p50):>7.2f}"
        f"   x{med(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="runs of each case (>= 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    args = parser.parse_args(argv)
    title = "rows endpoint                 req/s   p50 ms  /predict req/s  p50 ms   ratio [range]"
    lines = [title]
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as tmp:
        features = train(Path(tmp))
        proc, port = start_server(Path(tmp))
        try:
            print(title, flush=True)
            for rows in (1, 1000):
                cases = payloads(features, rows)
                base = cases.pop("/predict")
                run(port, *base, seconds=1.0)  # warm up
                for name, case in cases.items():
                    line = compare(port, base, case, args.pairs, args.seconds)
                    lines.append(f"{rows:>4} {name:<20} {line}")
                    print(lines[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\nload average {os.getloadavg()[0]:.1f}; ratio = protocol req/s / /predict req/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
