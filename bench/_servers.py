"""The processes ``bench/predict.py`` measures: start, probe, check and stop gunicorn servers.

Also the set-up they need: the environment, ``dropscore train`` into a temporary data folder,
and where the champion it wrote lives. One request by hand (``request``) is all the HTTP here;
load comes from ``bench/_wrk.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from scoring.testing.checkout import ROW as X_TEST
from scoring.testing.checkout import SETTINGS_FILE
from scoring.testing.ports import HOST, free_port

BODY = json.dumps({"X_test": X_TEST})
CLK_TCK = os.sysconf("SC_CLK_TCK")

READY_TIMEOUT = 90.0  # seconds for a server to answer its readiness probe
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 30 s
TRAIN_TIMEOUT = 300.0
TRAIN_RETRY_WAIT = 60.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Server:
    """One gunicorn master in its own session: started, probed, measured, stopped."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        cwd: Path,
        logs: Path,
        single: bool = False,
    ):
        self.name = name
        self.single = single  # one process serves (`dropscore serve`): it is its own worker
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

    # The route that answers 200 once the server can score, and how often to ask it.
    ready_path = "/ready"
    ready_interval = 0.2

    def wait_ready(self, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited before it was ready\n{self.log_tail()}")
            try:
                status, body = request(self.port, "GET", self.ready_path, None, headers, timeout=2)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(self.ready_interval)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s ({last})")

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        pid = self.proc.pid
        if self.single:
            return [pid]
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


def request(
    port: int,
    method: str,
    path: str,
    body: str | bytes | None,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes]:
    """One request by hand on a fresh connection: the probes, checks and warm-ups."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


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


def gunicorn_cli() -> str:
    """The ``gunicorn`` command of this environment: the peer's own server, as it ships."""
    exe = Path(sys.executable).with_name("gunicorn")
    found = str(exe) if exe.exists() else shutil.which("gunicorn")
    if not found:
        raise SystemExit("the gunicorn command is not installed in this environment")
    return found


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
    from ingest.state.db import StateDB
    from scoring.lifecycle.registry import MODEL_FILE, Registry
    from scoring.settings import load_settings

    settings = load_settings(env=env)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    version = registry.champion_version()
    if version is None:
        raise RuntimeError("dropscore train left no champion")
    return str(version), settings.models_dir / str(version) / MODEL_FILE


def server_threads(env: dict[str, str]) -> tuple[int, int]:
    from scoring.settings import load_settings

    server = load_settings(env=env).server
    return server.workers, server.threads


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
