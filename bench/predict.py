"""Benchmark ``POST /predict``: ``dropscore api`` against a bare Flask baseline, same run.

Both servers run under the same gunicorn settings (``service.server.serve_gunicorn``: gthread,
2 workers, ``[server] threads``, keepalive 5, one BLAS thread per worker) on the same pipeline,
trained by ``dropscore train`` into a temporary data folder. The baseline
(``bench/predict_baseline.py``) does only ``np.array(request.json["X_test"]).reshape(1, -1)``
and ``pipeline.predict``. Only one server runs at a time; each concurrency level runs the
baseline and then dropscore back to back, so drift on a shared machine hits both alike.

Load comes from ``wrk`` (``apt-get install -y wrk``) with a Lua script that posts the body,
counts every non-200 answer and prints the latency percentiles; without wrk a Python client
(threads, keep-alive ``http.client``) stands in, and the table says which one ran.

    .venv/bin/python bench/predict.py                 # 15 s per run, concurrency 1 and 16
    .venv/bin/python bench/predict.py --seconds 5     # shorter
    .venv/bin/python bench/predict.py --auth          # dropscore with an API key on every run

Goal: dropscore / baseline requests per second >= 1.0 at concurrency 16.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if not __package__:
    # Run as a file, bench/ would come first on sys.path and bench/ingest.py would shadow the
    # project's ``ingest`` package for everything imported below.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))

SETTINGS_FILE = ROOT / "settings.toml"
HOST = "127.0.0.1"
X_TEST = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
BODY = json.dumps({"X_test": X_TEST})
API_KEY = "bench-predict-key-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")

READY_TIMEOUT = 90.0  # seconds for a server to answer its readiness probe
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 30 s
TRAIN_TIMEOUT = 300.0
TRAIN_RETRY_WAIT = 60.0
NOISY_PCT = 25.0  # % of one core used by other work during a run before the report warns


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or iowait) since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- processes --------------------------------------------------------------------------------


class Server:
    """One gunicorn master in its own session: started, probed, measured, stopped."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, logs: Path):
        self.name = name
        self.port = free_port()
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = logs / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        cmd = [c.replace("{port}", str(self.port)) for c in self.cmd]
        env = {k: v.replace("{port}", str(self.port)) for k, v in self.env.items()}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        _LIVE.append(self)

    def wait_ready(self, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited before it was ready\n{self.log_tail()}")
            try:
                status, body = request(self.port, "GET", "/ready", None, headers, timeout=2)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s ({last})")

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        pid = self.proc.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) per worker process."""
        out = {}
        for pid in self.workers():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {STOP_TIMEOUT:.0f}s; killing its group")
        # Anything left in the server's own session (a stuck worker) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)


_LIVE: list[Server] = []


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def request(
    port: int, method: str, path: str, body: str | None, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Result:
    concurrency: int
    server: str
    client: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non200: int = 0
    socket_errors: int = 0
    error_detail: str = ""
    mean_ms: float = 0.0
    max_ms: float = 0.0
    cpu_us_per_req: float | None = None
    client_cpu_pct: float | None = None
    load: str = ""
    others_pct: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


WRK_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  non200 = 0
  last_bad = 0
end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    last_bad = status
  end
end
function done(summary, latency, requests)
  local bad, last = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    if t:get("last_bad") ~= 0 then last = t:get("last_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p99_us": %%.1f, ' ..
    '"mean_us": %%.1f, "max_us": %%.1f, "non200": %%d, "last_bad_status": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, bad, last,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_lua(path: Path, headers: dict[str, str]) -> Path:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(WRK_LUA % {"body": BODY, "headers": lines})
    return path


def run_wrk(
    wrk: str, port: int, lua: Path, concurrency: int, seconds: float
) -> tuple[dict[str, Any], str, list[str]]:
    threads = min(2, concurrency)  # wrk needs at least one connection per thread
    cmd = [
        wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency", "-s", str(lua), f"http://{HOST}:{port}/predict",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL
    )
    match = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    return json.loads(match.group(1)), proc.stdout, cmd


def run_python_client(
    port: int, headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Closed-loop keep-alive clients in threads; the GIL makes this the weaker load source."""
    all_headers = {"Content-Type": "application/json", **headers}
    payload = BODY.encode()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    non200 = [0] * concurrency
    errors = [0] * concurrency
    last_bad = [0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        start_gate.wait()
        lat = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline[0]:
                break
            try:
                conn.request("POST", "/predict", body=payload, headers=all_headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
                continue
            lat.append(time.perf_counter() - t0)
            if resp.status != 200:
                non200[i] += 1
                last_bad[i] = resp.status
        conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.wait()
    for w in workers:
        w.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - began
    flat = sorted(x for lat in latencies for x in lat)

    def pct(q: float) -> float:
        return flat[min(len(flat) - 1, int(q / 100 * len(flat)))] * 1e6 if flat else 0.0

    return {
        "requests": len(flat),
        "duration_us": elapsed * 1e6,
        "mean_us": statistics.fmean(flat) * 1e6 if flat else 0.0,
        "max_us": flat[-1] * 1e6 if flat else 0.0,
        "p50_us": pct(50),
        "p99_us": pct(99),
        "non200": sum(non200),
        "last_bad_status": max(last_bad),
        "connect": 0,
        "read": sum(errors),
        "write": 0,
        "status": 0,
        "timeout": 0,
    }


class Load:
    def __init__(self, client: str, wrk: str | None, work: Path):
        self.client = client
        self.wrk = wrk
        self.work = work
        self.commands: list[str] = []

    def run(
        self,
        server: Server,
        name: str,
        headers: dict[str, str],
        concurrency: int,
        seconds: float,
        record: bool = True,
    ) -> Result:
        cpu0 = server.cpu()
        busy0 = busy_cpu_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if self.client == "wrk":
            assert self.wrk is not None
            lua = write_lua(
                self.work / f"post-{name}.lua", {"Content-Type": "application/json", **headers}
            )
            raw, _out, cmd = run_wrk(self.wrk, server.port, lua, concurrency, seconds)
            if record:
                self.commands.append(" ".join(cmd))
        else:
            raw = run_python_client(server.port, headers, concurrency, seconds)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1 = busy_cpu_seconds()
        cpu1 = server.cpu()
        requests = int(raw["requests"])
        worker_cpu = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1)
        client_cpu = None
        client_used = 0.0
        if self.client == "wrk":
            client_used = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            client_cpu = 100.0 * client_used / wall if wall > 0 else None
        # Everything else the machine did meanwhile (other jobs, the kernel's network work, the
        # gunicorn master, this harness): high values mean the figures are noisy.
        others = busy1 - busy0 - worker_cpu - client_used
        socket_errors = sum(int(raw[k]) for k in ("connect", "read", "write", "timeout"))
        detail = ""
        if raw["non200"] or socket_errors or raw["status"]:
            detail = (
                f"non-200 responses: {raw['non200']} (last status {raw['last_bad_status']});"
                f" wrk status errors (>=400): {raw['status']}; socket errors: connect"
                f" {raw['connect']}, read {raw['read']}, write {raw['write']},"
                f" timeout {raw['timeout']}"
            )
        return Result(
            concurrency=concurrency,
            server=name,
            client=self.client,
            requests=requests,
            seconds=float(raw["duration_us"]) / 1e6,
            p50_ms=float(raw["p50_us"]) / 1000,
            p99_ms=float(raw["p99_us"]) / 1000,
            mean_ms=float(raw.get("mean_us", 0.0)) / 1000,
            max_ms=float(raw.get("max_us", 0.0)) / 1000,
            non200=int(raw["non200"]),
            socket_errors=socket_errors,
            error_detail=detail,
            cpu_us_per_req=(worker_cpu / requests * 1e6) if requests and cpu1 else None,
            client_cpu_pct=client_cpu,
            load=loadavg(),
            others_pct=100.0 * others / wall if wall > 0 else 0.0,
        )


# -- set-up -----------------------------------------------------------------------------------


def base_env(data_dir: Path, proc_tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DROPSCORE") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "DROPSCORE_SETTINGS": str(SETTINGS_FILE),
            "DROPSCORE__PATHS__DATA_DIR": str(data_dir),
            "TMPDIR": str(proc_tmp),  # anything a server leaves behind goes with our folder
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def dropscore_cli() -> str:
    exe = Path(sys.executable).with_name("dropscore")
    if exe.exists():
        return str(exe)
    found = shutil.which("dropscore")
    if not found:
        raise SystemExit("the dropscore command is not installed in this environment")
    return found


def train(env: dict[str, str], cwd: Path, retries: int) -> None:
    """``dropscore train`` into the temporary data folder (it bootstraps the sample data)."""
    cmd = [dropscore_cli(), "train"]
    for attempt in range(retries + 1):
        proc = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TRAIN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                if line.strip():
                    log(f"  train: {line}")
            return
        if "0 training rows" in out and attempt < retries:
            log(f"dropscore train refused (0 training rows); retry in {TRAIN_RETRY_WAIT:.0f}s")
            time.sleep(TRAIN_RETRY_WAIT)
            continue
        raise RuntimeError(f"dropscore train failed (exit {proc.returncode}):\n{out}")


def champion_path(env: dict[str, str]) -> tuple[str, Path]:
    from scoring.lifecycle.registry import MODEL_FILE, Registry
    from scoring.settings import load_settings

    settings = load_settings(env=env)
    registry = Registry(settings.models_dir, settings.db_path)
    version = registry.champion_version()
    if version is None:
        raise RuntimeError("dropscore train left no champion")
    return str(version), settings.models_dir / str(version) / MODEL_FILE


def server_threads(env: dict[str, str]) -> tuple[int, int]:
    from scoring.settings import load_settings

    server = load_settings(env=env).server
    return server.workers, server.threads


# -- in-process -------------------------------------------------------------------------------


def per_call_us(fn: Callable[[], Any], budget: float) -> tuple[float, float]:
    """Best and median µs per call over 5 repeats sized to ``budget`` seconds in all."""
    fn()
    n, t = 1, 0.0
    while n < 1_000_000:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= budget / 25:
            break
        n *= 4
    reps = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        reps.append((time.perf_counter() - t0) / n * 1e6)
    return min(reps), statistics.median(reps)


def in_process(env: dict[str, str], model_path: Path, version: str, budget: float) -> list[str]:
    """µs per call of each layer, one BLAS thread like a worker: what a request spends where."""
    # Like `dropscore api`: prometheus_client picks its multiprocess values at import.
    metrics_dir = Path(env["TMPDIR"]) / "inproc-metrics"
    metrics_dir.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from bench.predict_baseline import make_app
    from scoring.api.app import create_app
    from scoring.lifecycle.predictor import LoadedModel
    from scoring.lifecycle.registry import Registry, load_trusted
    from scoring.lifecycle.rows import positional_to_array
    from scoring.settings import load_settings

    settings = load_settings(env=env)
    registry = Registry(settings.models_dir, settings.db_path)
    pipeline = load_trusted(model_path)
    model = LoadedModel.build(version, pipeline, registry.card(int(version)))
    row = positional_to_array(list(X_TEST), model.schema)
    x = np.array(X_TEST).reshape(1, -1)
    expected = float(pipeline.predict(x)[0])
    got = model.predict_row(row)["prediction"]
    lines = [
        f"model v{version}: {model.card.get('estimator')}, {len(model.schema.features)} features;"
        f" fast path {'ON' if model.fast is not None else 'OFF'};"
        f" prediction {got:.6f} (pipeline {expected:.6f})"
    ]

    base_app = make_app(model_path)
    ds_app = create_app(settings)
    base_client, ds_client = base_app.test_client(), ds_app.test_client()
    headers = {"Content-Type": "application/json"}

    def via(client: Any) -> Callable[[], Any]:
        def call() -> Any:
            resp = client.post("/predict", data=BODY, headers=headers)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            return resp

        return call

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("pipeline.predict(np.array(X).reshape(1,-1))  [baseline core]",
         lambda: pipeline.predict(np.array(X_TEST).reshape(1, -1))),
        ("LoadedModel.predict_row(row)                 [dropscore core]",
         lambda: model.predict_row(row)),
        ("positional_to_array(X) + predict_row          [dropscore validate+predict]",
         lambda: model.predict_row(positional_to_array(X_TEST, model.schema))),
        ("Flask test client POST /predict, baseline app", via(base_client)),
        ("Flask test client POST /predict, dropscore app", via(ds_client)),
    ]  # fmt: skip
    with threadpool_limits(1):
        for label, fn in cases:
            best, median = per_call_us(fn, budget)
            lines.append(f"{label:<76} {best:9.1f} µs best  {median:9.1f} µs median")
    ds_app.extensions["dropscore"].champion.stop()
    return lines


# -- report -----------------------------------------------------------------------------------


def fmt_table(results: list[Result]) -> str:
    header = (
        f"{'concurrency':<12}{'server':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'ratio':>8}{'mean ms':>9}{'max ms':>9}{'non-200':>9}{'sock err':>9}"
        f"{'cpu µs/req':>12}{'other cpu':>11}  load"
    )
    rows = [header, "-" * len(header)]
    baseline: dict[int, Result] = {}
    for r in results:
        ratio = ""
        if r.server == "baseline":
            baseline[r.concurrency] = r
        elif r.concurrency in baseline and baseline[r.concurrency].rps > 0:
            ratio = f"{r.rps / baseline[r.concurrency].rps:.2f}"
        cpu = f"{r.cpu_us_per_req:.0f}" if r.cpu_us_per_req is not None else "?"
        rows.append(
            f"{r.concurrency:<12}{r.server:<18}{r.rps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{ratio:>8}{r.mean_ms:>9.2f}{r.max_ms:>9.1f}{r.non200:>9}{r.socket_errors:>9}"
            f"{cpu:>12}{r.others_pct:>10.0f}%  {r.load}"
        )
    return "\n".join(rows)


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded load after start-up")
    p.add_argument(
        "--concurrency", default="1,16", help="comma-separated connection counts (default 1,16)"
    )
    p.add_argument("--auth", action="store_true", help="run dropscore with an API key throughout")
    p.add_argument(
        "--no-auth-run",
        action="store_true",
        help="skip the extra dropscore-with-API-key run at the highest concurrency",
    )
    p.add_argument(
        "--estimator",
        default="",
        help="train this [model] estimator instead of settings.toml's (e.g. ridge, random_forest)",
    )
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--inprocess-seconds", type=float, default=2.0, help="budget per µs figure")
    p.add_argument("--train-retries", type=int, default=3, help="retries of a refused train")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    return p.parse_args(argv)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit and SIGINT KeyboardInterrupt, so clean-up always runs
    (a shell starts background jobs with SIGINT ignored; we want Ctrl-C and kill -INT alike)."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        raise SystemExit("--concurrency needs positive integers")
    wrk = shutil.which("wrk")
    client = args.client
    if client == "auto":
        client = "wrk" if wrk else "python"
    if client == "wrk" and not wrk:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    if client == "python":
        log(
            "load generator: Python threads + http.client keep-alive"
            + ("" if wrk else " (wrk not found; install it: apt-get install -y wrk)")
        )

    work = Path(tempfile.mkdtemp(prefix="dropscore-bench-predict-"))
    data_dir, proc_tmp, logs = work / "data", work / "tmp", work / "logs"
    for d in (data_dir, proc_tmp, logs):
        d.mkdir()
    results: list[Result] = []
    load = Load(client, wrk, work)
    try:
        with signals_raise():
            env = base_env(data_dir, proc_tmp)
            if args.estimator:
                env["DROPSCORE__MODEL__ESTIMATOR"] = args.estimator
            log(f"temporary folder {work}; load average {loadavg()}; {os.cpu_count()} CPUs")
            log("training with `dropscore train` ...")
            train(env, work, args.train_retries)
            version, model_path = champion_path(env)
            workers, threads = server_threads(env)
            log(f"champion v{version} at {model_path}; gunicorn {workers} workers × {threads}"
                " gthread threads for both servers")  # fmt: skip

            def baseline() -> tuple[Server, dict[str, str]]:
                cmd = [
                    sys.executable, "-m", "bench.predict_baseline", "--model", str(model_path),
                    "--bind", f"{HOST}:{{port}}", "--workers", str(workers),
                    "--threads", str(threads),
                ]  # fmt: skip
                return Server("baseline", cmd, env, ROOT, logs), {}

            def dropscore(auth: bool) -> tuple[Server, dict[str, str]]:
                denv = {**env, "DROPSCORE__SERVER__HOST": HOST, "DROPSCORE__SERVER__PORT": "{port}"}
                headers = {}
                if auth:
                    denv["DROPSCORE_API_KEYS"] = API_KEY
                    headers = {"Authorization": f"Bearer {API_KEY}"}
                cmd = [dropscore_cli(), "api", "--workers", str(workers)]
                name = "dropscore+auth" if auth else "dropscore"
                return Server(name, cmd, denv, work, logs), headers

            predictions: dict[str, float] = {}

            def measure(make: Callable[[], tuple[Server, dict[str, str]]], c: int) -> Result:
                server, headers = make()
                log(f"c={c}: starting {server.name} on {server.url}")
                server.start()
                try:
                    server.wait_ready(headers)
                    check(server, headers, predictions)
                    if args.warmup > 0:  # every worker loads its model before the clock runs
                        warm = load.run(
                            server, server.name, headers, max(c, 4), args.warmup, record=False
                        )
                        if warm.error_detail:
                            log(f"!!! {server.name} warm-up: {warm.error_detail}")
                    warm_every_worker(server, headers)
                    log(f"c={c}: {server.name} load for {args.seconds:g}s ({client})")
                    result = load.run(server, server.name, headers, c, args.seconds)
                    if server.proc is None or server.proc.poll() is not None:
                        raise RuntimeError(f"{server.name} died\n{server.log_tail()}")
                finally:
                    server.stop()
                log(f"c={c}: {server.name}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms,"
                    f" p99 {result.p99_ms:.2f} ms")  # fmt: skip
                if result.error_detail:
                    log(f"!!! {server.name} c={c}: {result.error_detail}")
                return result

            for c in levels:
                results.append(measure(baseline, c))
                results.append(measure(lambda: dropscore(args.auth), c))
            if not args.auth and not args.no_auth_run:
                results.append(measure(lambda: dropscore(True), max(levels)))

            log("in-process µs per call ...")
            micro = in_process(env, model_path, version, args.inprocess_seconds)

        report(results, micro, load, args, version)
        bad = [r for r in results if r.non200 or r.socket_errors]
        return 1 if bad else 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        stop_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def warm_every_worker(server: Server, headers: dict[str, str], limit: float = 30.0) -> None:
    """dropscore loads the champion on a worker's first request: see every worker log it."""
    if not server.name.startswith("dropscore"):
        return  # the baseline loads its pipeline before its worker accepts a connection
    all_headers = {"Content-Type": "application/json", **headers}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        text = server.log_path.read_text(errors="replace")
        loaded = {int(p) for p in re.findall(r'"champion loaded".*?"pid": (\d+)', text)}
        workers = set(server.workers())
        if workers and workers <= loaded:
            return
        for _ in range(8):  # fresh connections spread over the workers' accept()
            request(server.port, "POST", "/predict", BODY, all_headers, timeout=30)
    log(f"!!! {server.name}: not every worker logged 'champion loaded' within {limit:.0f}s")


def check(server: Server, headers: dict[str, str], predictions: dict[str, float]) -> None:
    """One request by hand: 200, a number, the same number from every server; auth enforced."""
    all_headers = {"Content-Type": "application/json", **headers}
    status, body = request(server.port, "POST", "/predict", BODY, all_headers, timeout=30)
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status}: {body[:300]!r}")
    value = float(json.loads(body)["prediction"])
    for other, v in predictions.items():
        if abs(v - value) > 1e-6 * max(1.0, abs(v)):
            raise RuntimeError(f"{server.name} predicts {value}, {other} predicted {v}")
    predictions[server.name] = value
    if "Authorization" in headers:
        status, _ = request(
            server.port, "POST", "/predict", BODY, {"Content-Type": "application/json"}, 10
        )
        if status != 401:
            raise RuntimeError(f"{server.name}: a request without the key got {status}, not 401")


def report(
    results: list[Result], micro: list[str], load: Load, args: argparse.Namespace, version: str
) -> None:
    print()
    print("=" * 100)
    print(
        f"POST /predict, model v{version}, {args.seconds:g} s per run, load generator:"
        f" {load.client}{' (Python threads: the client itself may be the limit)' if load.client == 'python' else ''}"  # noqa: E501
    )
    print("ratio = dropscore req/s ÷ baseline req/s at the same concurrency (goal ≥ 1.00 at 16);")
    print("cpu µs/req = user+system CPU of the gunicorn workers ÷ requests; other cpu = busy CPU")
    print(f"of everything else on the machine meanwhile (of {os.cpu_count()} cores × 100%, kernel")
    print("network work included); load = 1/5/15-min load average after the run")
    print()
    print(fmt_table(results))
    bad = [r for r in results if r.non200 or r.socket_errors or r.error_detail]
    if bad:
        print()
        print("!" * 100)
        for r in bad:
            print(f"!!! FAILED REQUESTS: {r.server} c={r.concurrency}: {r.error_detail}")
        print("!" * 100)
    else:
        print("\nevery response was 200 (no non-2xx, no socket errors)")
    noisy = [r for r in results if r.others_pct > NOISY_PCT]
    if noisy:
        print(
            f"NOTE: other work used more than {NOISY_PCT:.0f}% of a core during"
            f" {', '.join(f'{r.server} c={r.concurrency}' for r in noisy)}: req/s and latency"
            " there are noisy; cpu µs/req (per request, not per second) is the steadier figure"
        )
    auth = [r for r in results if r.server == "dropscore+auth"]
    plain = {r.concurrency: r for r in results if r.server == "dropscore"}
    for r in auth:
        if r.concurrency in plain and plain[r.concurrency].rps > 0:
            print(
                f"auth cost at c={r.concurrency}: dropscore+auth / dropscore req/s ="
                f" {r.rps / plain[r.concurrency].rps:.2f}"
            )
    if load.client == "wrk":
        cpu = [f"{r.client_cpu_pct:.0f}%" for r in results if r.client_cpu_pct is not None]
        print(f"wrk CPU (of one core) per run: {', '.join(cpu)}")
        print("wrk commands:")
        for cmd in dict.fromkeys(re.sub(r"post-[\w+]+\.lua", "post-<server>.lua", c)
                                 for c in load.commands):  # fmt: skip
            print(f"  {cmd}")
    print()
    print("in-process, one BLAS thread (µs per call):")
    for line in micro:
        print(f"  {line}")
    print("=" * 100)


if __name__ == "__main__":
    sys.exit(main())
