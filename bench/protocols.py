"""Benchmark the protocols against ``/predict`` and against MLflow's server: same model and run.

One server process (waitress, 4 threads, the app from ``create_app``) serves a linear model
trained on the bundled sample. One keep-alive client posts, back to back, a 1-row and a
1,000-row payload to ``/predict`` (``X_test``), ``/invocations`` (``dataframe_split``) and
``/v2/models/default/infer`` (one FP64 tensor ``[rows, 10]``, as JSON and as binary tensor
data). Each protocol run is paired with a ``/predict`` run of the same payload right before
it, so drift on a shared machine hits both; the report gives each pair's requests/s ratio
to ``/predict`` (median and range over the pairs) and the median p50 latency.

Then (``--mlflow``, on by default) the same pipeline is served by ``dropscore api`` (gunicorn,
``[server] workers`` x ``threads`` gthread) and by ``mlflow models serve --env-manager local``
from its own cached virtualenv (``bench/_mlflow.py``), twice: ``-w <the same workers>`` and
``-w 1`` (uvicorn's multi-worker socket answers keep-alive requests ~40 ms late, which a
``GET /ping`` probe prints; one worker does not stall). All run at once, idle but for the one
under load. For a 1-row and a 1,000-row payload at concurrency 1 and 16, each pair measures
dropscore's ``/predict``, ``/invocations`` (``dataframe_split``) and ``/v2`` infer (JSON FP64
tensor) and both MLflows' ``/invocations`` on the same ``dataframe_split`` body, the order
reversed every other pair. A pair's ratio is dropscore's req/s over the faster MLflow's in
that pair. Load comes from ``wrk`` (else Python threads). Goals (issue 10): single-row >= 5x
MLflow's req/s on every protocol; 1,000 rows >= 3x MLflow's rows/s.

    .venv/bin/python -m bench.protocols                 # 3 pairs of 3 s / 5 s runs per case
    .venv/bin/python -m bench.protocols --pairs 5 --seconds 5
    .venv/bin/python -m bench.protocols --quick         # 3 pairs of 1 s runs: does it all work
    .venv/bin/python -m bench.protocols --no-protocols  # only the MLflow comparison
    .venv/bin/python -m bench.protocols --no-protocols --no-mlflow  # CPU per request only
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

from scoring.testing.checkout import ROOT, SAMPLE

HOST = "127.0.0.1"
TRAIN_ROWS = "bench-train-rows.csv"  # the rows dropscore's model was fitted on (in data_dir)
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
    """Train and promote a linear model in data_dir; return its feature names.

    The rows it was fitted on go to ``TRAIN_ROWS`` in data_dir, for MLflow's copy of the model.
    """
    import pandas as pd

    from ingest.state.db import StateDB
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.training import split
    from scoring.lifecycle.training import train as fit
    from scoring.settings import load_settings

    settings = load_settings(
        None, env={}, overrides={"paths": {"data_dir": str(data_dir)}, "training": {}}
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(SAMPLE)
    result = fit(frame, settings.model)
    schema = result.schema
    fitted_on, _ = split(frame, settings.model, schema.target, schema.task)
    fitted_on[[*schema.names, schema.target]].to_csv(data_dir / TRAIN_ROWS, index=False)
    card = {
        "estimator": settings.model.estimator,
        "metrics": result.metrics,
        "schema": result.schema.to_dict(),
    }
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    registry.promote(registry.register(result.pipeline, card))
    return result.schema.names


def payloads(features: list[str], rows: int) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Each endpoint's request for the same rows: (path, body, headers)."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE)[features]
    matrix = np.resize(frame.to_numpy(dtype=np.float64), (rows, len(features)))
    data = matrix.tolist()
    records = [dict(zip(features, row, strict=True)) for row in data]
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
        "/predict (named)": (
            "/predict",
            json.dumps({"instances": records}).encode(),
            jsonh,
        ),
        "/invocations": (
            "/invocations",
            json.dumps({"dataframe_split": {"columns": features, "data": data}}).encode(),
            jsonh,
        ),
        "/invocations (records)": (
            "/invocations",
            json.dumps({"dataframe_records": records}).encode(),
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
    """One waitress process on a free port, ready once ``/ready`` answers 200."""
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


def load(
    port: int, case: tuple, concurrency: int, seconds: float, wrk: str | None, work: Path
) -> tuple[float, float]:
    """Closed-loop load on one case at this concurrency; (requests/s, p50 ms), every answer 200."""
    path, body, headers = case
    if wrk is None:
        return threaded(port, case, concurrency, seconds)
    from bench._wrk import WRK_LUA, run_wrk

    lines = [f'wrk.path = "{path}"'] + [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lua = work / "case.lua"
    lua.write_text(WRK_LUA % {"body": body.decode(), "headers": "\n".join(lines)})
    raw, _, _ = run_wrk(wrk, port, lua, concurrency, seconds)
    bad = sum(int(raw[k]) for k in ("non200", "connect", "read", "write", "timeout"))
    if bad or not raw["requests"]:
        raise SystemExit(f"{path} on port {port}: {bad} failed requests of {raw['requests']}")
    return raw["requests"] / (raw["duration_us"] / 1e6), raw["p50_us"] / 1000


def threaded(port: int, case: tuple, concurrency: int, seconds: float) -> tuple[float, float]:
    """Without wrk: ``run`` on one keep-alive connection per thread; (requests/s, p50 ms)."""
    from concurrent.futures import ThreadPoolExecutor

    path, body, headers = case
    with ThreadPoolExecutor(concurrency) as pool:
        got = list(pool.map(lambda _: run(port, path, body, headers, seconds), range(concurrency)))
    return sum(r for r, _ in got), statistics.median(p for _, p in got)


def vs_mlflow(data_dir: Path, features: list[str], pairs: int, seconds: float) -> None:
    """dropscore's three protocols against ``mlflow models serve`` on the same pipeline."""
    import shutil

    from bench import _mlflow
    from bench._servers import (
        Server,
        base_env,
        champion_path,
        dropscore_cli,
        log,
        server_threads,
        warm_every_worker,
    )

    wrk = shutil.which("wrk")
    _mlflow.ensure_venv()
    work = data_dir / "bench-mlflow"
    proc_tmp, logs = work / "tmp", work / "logs"
    proc_tmp.mkdir(parents=True)
    logs.mkdir()
    env = base_env(data_dir, proc_tmp)
    version, model_file = champion_path(env)
    workers, threads = server_threads(env)
    _mlflow.export(model_file, work / "mlflow-model", data_dir / TRAIN_ROWS, features)
    denv = {**env, "DROPSCORE__SERVER__HOST": HOST, "DROPSCORE__SERVER__PORT": "{port}"}
    api = [dropscore_cli(), "api", "--workers", str(workers)]
    ours = Server("dropscore", api, denv, work, logs)
    # MLflow with dropscore's worker count, and with one worker. For -w > 1 uvicorn binds the
    # socket itself with proto 0, so asyncio never sets TCP_NODELAY (it checks proto ==
    # IPPROTO_TCP) and a keep-alive answer written in two pieces waits for the client's delayed
    # ACK (~40 ms; the /ping probe shows it). With one worker asyncio binds and sets it.
    theirs = {
        f"MLflow -w {w}": _mlflow.server(work / "mlflow-model", w, env, work, logs)
        for w in dict.fromkeys((workers, 1))
    }
    log(f"load average {loadavg()} on {os.cpu_count()} CPUs before the MLflow comparison")
    servers = [ours, *theirs.values()]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready({})
        warm_every_worker(ours, {})
        one_row = payloads(features, 1)["/invocations"]
        for server in theirs.values():
            _mlflow.same_prediction(ours.port, server.port, one_row)
        ports = {name: server.port for name, server in theirs.items()}
        print(
            f"\ndropscore api: model v{version}, gunicorn {workers} workers x {threads} gthread"
            f" threads; mlflow models serve --env-manager local (uvicorn) -w {workers} and -w 1;"
            f" one BLAS thread each\nMLflow side: {_mlflow.versions()}\n"
            f"GET keep-alive p50 ms: dropscore /ready {_mlflow.ping(ours.port, '/ready'):.2f}, "
            + ", ".join(f"{n} /ping {_mlflow.ping(port, '/ping'):.2f}" for n, port in ports.items())
            + f"\nload: {'wrk' if wrk else 'Python threads'}, {seconds:g} s per run,"
            f" {max(3, pairs)} alternating pairs; load average {loadavg()}"
        )
        print(MLFLOW_TITLE, flush=True)
        for rows in (1, 1000):
            cases = payloads(features, rows)
            cases.pop("/v2 infer (binary)")
            for c in (1, 16):
                measured = pair_up(ours.port, ports, cases, c, pairs, seconds, wrk, work)
                for line in mlflow_lines(rows, c, measured, list(ports)):
                    print(line, flush=True)
    finally:
        for server in servers:
            server.stop()
    print(
        f"load average after: {loadavg()}. vs MLflow = dropscore req/s / the faster MLflow's req/s"
        " in the same pair, median [min-max] over the pairs (second figure: against MLflow with"
        f" -w {workers} alone); goals: 1 row >= 5x, 1,000 rows >= 3x"
    )


MLFLOW_TITLE = (
    "rows   c  endpoint             req/s   p50 ms     rows/s  vs MLflow [range]   (-w N)  goal"
)


def pair_up(
    ours: int,
    theirs: dict[str, int],
    cases: dict,
    c: int,
    pairs: int,
    seconds: float,
    wrk: str | None,
    work: Path,
) -> dict[str, list[tuple[float, float]]]:
    """Alternating pairs: dropscore's endpoints then MLflow's, the other way round the next time."""
    mlflow_case = cases["/invocations"]
    order = [(ours, name, case) for name, case in cases.items()]
    order += [(port, name, mlflow_case) for name, port in theirs.items()]
    for port, _, case in order:
        load(port, case, c, 1.0, wrk, work)  # warm up, unrecorded
    got: dict[str, list[tuple[float, float]]] = {name: [] for _, name, _ in order}
    for i in range(max(3, pairs)):
        for port, name, case in order if i % 2 == 0 else order[::-1]:
            got[name].append(load(port, case, c, seconds, wrk, work))
    return got


def mlflow_lines(
    rows: int, c: int, got: dict[str, list[tuple[float, float]]], mlflows: list[str]
) -> list[str]:
    """One line per endpoint: medians, rows/s and the per-pair ratio to MLflow."""
    med = statistics.median
    best = [max(runs) for runs in zip(*([r for r, _ in got[m]] for m in mlflows), strict=True)]
    matched = [r for r, _ in got[mlflows[0]]]
    goal = 5.0 if rows == 1 else 3.0
    lines = []
    for name, runs in got.items():
        rps = med(r for r, _ in runs)
        head = f"{rows:>4} {c:>3}  {name:<18} {rps:>8.0f} {med(p for _, p in runs):>8.2f} "
        if name in mlflows:
            lines.append(head + f"{rps * rows:>10.0f}")
            continue
        ratios = [r / t for (r, _), t in zip(runs, best, strict=True)]
        vs_matched = med(r / t for (r, _), t in zip(runs, matched, strict=True))
        verdict = "met" if med(ratios) >= goal else "MISSED"
        lines.append(
            head + f"{rps * rows:>10.0f}  x{med(ratios):<6.2f}[{min(ratios):.1f}-"
            f"{max(ratios):.1f}]  (x{vs_matched:.0f})  >={goal:g}x {verdict}"
        )
    return lines


def loadavg() -> str:
    """The 1/5/15-minute load averages: how shared the two cores were while we measured."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="runs of each case (>= 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one protocol run")
    parser.add_argument(
        "--mlflow-seconds", type=float, default=5.0, help="length of one run against MLflow"
    )
    parser.add_argument(
        "--mlflow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also race MLflow's own server (builds bench/out/mlflow-venv once)",
    )
    parser.add_argument(
        "--protocols",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the protocols against /predict on one waitress server",
    )
    parser.add_argument(
        "--cpu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each protocol's CPU per request inside the app: steady on a shared machine",
    )
    parser.add_argument("--quick", action="store_true", help="1 s runs: check that it all works")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = args.mlflow_seconds = 1.0
    print(f"load average {loadavg()} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as tmp:
        features = train(Path(tmp))
        if args.cpu:
            cpu_per_request(Path(tmp), features, args.pairs, args.seconds)
        if args.protocols:
            against_predict(Path(tmp), features, args.pairs, args.seconds)
        if args.mlflow:
            vs_mlflow(Path(tmp), features, args.pairs, args.mlflow_seconds)
    return 0


def cpu_per_request(data_dir: Path, features: list[str], pairs: int, seconds: float) -> None:
    """Each protocol's CPU per request inside the app (Flask's test client), in rounds.

    The CPU time of the calling thread, not the wall clock: the figure other processes on a
    shared machine move least. Each round runs every case once (the order reversed every other
    round); a case's ratio in a round is the fastest case's CPU per request over its own, so
    1.00 is the fastest JSON body and the goal (issue 23) is every case >= 0.90 on the same rows.
    """
    from scoring.api.app import create_app, warm
    from scoring.settings import load_settings

    settings = load_settings(
        None,
        env={},
        overrides={"paths": {"data_dir": str(data_dir)}, "training": {"bootstrap_data": ""}},
    )
    client = warm(create_app(settings)).test_client()

    def ms(case: tuple[str, bytes, dict[str, str]], budget: float) -> float:
        path, body, headers = case
        n, spent = 0, 0.0
        started = time.thread_time()
        while spent < budget or n < 5:
            answer = client.post(path, data=body, headers=headers)
            if answer.status_code != 200:
                raise SystemExit(f"{path} answered {answer.status_code}: {answer.get_data()!r}")
            n += 1
            spent = time.thread_time() - started
        return spent / n * 1000

    print(
        f"\nCPU ms per request in the app (test client, thread CPU time), {max(3, pairs)} rounds"
        f" of {seconds:g} s per case; ratio = the round's fastest JSON case / this case; load"
        f" {loadavg()}"
    )
    print("rows endpoint                 CPU ms  ratio to fastest JSON [range]  goal >= 0.90")
    for rows in (1, 1000):
        cases = payloads(features, rows)
        for case in cases.values():
            ms(case, 0.2)  # warm up, unrecorded
        got: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(max(3, pairs)):
            for name, case in list(cases.items())[:: 1 if i % 2 == 0 else -1]:
                got[name].append(ms(case, seconds))
        # The fastest JSON body sets the bar: binary tensors skip JSON and are in a class of
        # their own (their ratio shows how far ahead).
        json_runs = [got[name] for name, case in cases.items() if "Content-Type" in case[2]]
        fastest = [min(r) for r in zip(*json_runs, strict=True)]
        for name, runs in got.items():
            ratio = [f / r for f, r in zip(fastest, runs, strict=True)]
            med = statistics.median(ratio)
            print(
                f"{rows:>4} {name:<22} {statistics.median(runs):>7.3f}  x{med:.2f}"
                f" [{min(ratio):.2f}-{max(ratio):.2f}]  {'met' if med >= 0.9 else 'MISSED'}",
                flush=True,
            )
    print(f"load average after: {loadavg()}")


def against_predict(data_dir: Path, features: list[str], pairs: int, seconds: float) -> None:
    """Each protocol against /predict on one in-process waitress server (Python client)."""
    title = "rows endpoint                 req/s   p50 ms  /predict req/s  p50 ms   ratio [range]"
    proc, port = start_server(data_dir)
    try:
        print(title, flush=True)
        for rows in (1, 1000):
            cases = payloads(features, rows)
            base = cases.pop("/predict")
            run(port, *base, seconds=1.0)  # warm up
            for name, case in cases.items():
                line = compare(port, base, case, pairs, seconds)
                print(f"{rows:>4} {name:<20} {line}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nload average {loadavg()}; ratio = protocol req/s / /predict req/s")


if __name__ == "__main__":
    raise SystemExit(main())
