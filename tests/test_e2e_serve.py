"""A real `dropscore serve` process on a free port: first start, predictions, hot swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, SAMPLE, free_port, wait_for

pytestmark = pytest.mark.slow

ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
NAMED = dict(zip(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], ROW, strict=True))


def cli_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(ROOT / "settings.toml"),
        DROPSCORE__PATHS__DATA_DIR=str(data_dir),
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__INGEST__STABLE_SECONDS="0.3",
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
        **extra,
    )
    return env


def dropscore(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scoring", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


class Server:
    def __init__(
        self, args: list[str], env: dict[str, str], port: int, log: Path, cwd: Path | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scoring", *args],
            cwd=cwd,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def ready(self, timeout: float = 60) -> dict:
        def probe():
            assert self.proc.poll() is None, self.log.read_text()
            try:
                r = requests.get(self.url + "/ready", timeout=1)
            except (requests.ConnectionError, requests.Timeout):  # refused, or in the backlog
                return None  # (serve listens from the start; it answers once the app is up)
            return r.json() if r.status_code == 200 else None

        return wait_for(probe, timeout, interval=0.1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._fh.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(*args: str, **extra: str) -> Server:
        port = free_port()
        server = Server(
            list(args),
            cli_env(tmp_path / "data", port, **extra),
            port,
            tmp_path / f"server{len(servers)}.log",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_serve_first_start_predict_promote_and_stop(serve, tmp_path):
    server = serve("serve")
    ready = server.ready()
    # trained at first start
    assert ready == {"status": "ready", "model_version": "1", "models": {"default": "1"}}
    named = requests.post(server.url + "/predict", json={"features": NAMED}, timeout=5)
    positional = requests.post(server.url + "/predict", json={"X_test": ROW}, timeout=5)
    assert named.status_code == positional.status_code == 200
    assert named.json() == positional.json()
    assert named.json()["model_version"] == "1"

    # a second version, kept as challenger, then promoted from the CLI
    env = cli_env(
        tmp_path / "data",
        0,
        DROPSCORE__MODEL__ESTIMATOR="ridge",
        DROPSCORE__TRAINING__PROMOTE="never",
    )
    trained = dropscore("train", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "version 2: not promoted" in trained.stdout
    assert (
        requests.post(server.url + "/predict", json={"X_test": ROW}).json()["model_version"] == "1"
    )
    promoted = dropscore("models", "promote", "2", env=env)
    assert promoted.returncode == 0, promoted.stderr
    started = time.monotonic()
    answer = wait_for(
        lambda: (
            (r := requests.post(server.url + "/predict", json={"X_test": ROW}).json())
            and r["model_version"] == "2"
            and r
        ),
        timeout=1.0,
        interval=0.02,
    )
    assert time.monotonic() - started <= 1.0
    assert answer["prediction"] != named.json()["prediction"]  # ridge answers differently

    bad = requests.post(server.url + "/predict", json={"X_test": [1, 2]}, timeout=5)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
    garbage = requests.post(server.url + "/predict", data=b"\x00\xff", timeout=5)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "bad_request"
    assert requests.get(server.url + "/health").json()["watcher"]["alive"] is True

    assert server.stop() == 0
    log = server.log.read_text()
    assert '"event": "listening"' in log and "Traceback" not in log


def test_second_serve_on_the_same_folder_is_refused(serve):
    first = serve("serve")
    first.ready()
    second = serve("serve")
    assert second.proc.wait(timeout=60) == 1
    assert "is already served by pid" in second.log.read_text()


def test_api_workers_follow_a_promotion_within_a_second(serve, tmp_path):
    first = serve("serve")
    first.ready()
    assert first.stop() == 0
    env = cli_env(
        tmp_path / "data",
        0,
        DROPSCORE__MODEL__ESTIMATOR="ridge",
        DROPSCORE__TRAINING__PROMOTE="never",
    )
    assert dropscore("train", env=env).returncode == 0
    api = serve("api", "--workers", "2")
    api.ready()
    pids = set()
    for _ in range(40):  # fresh connections spread over both workers
        r = requests.post(
            api.url + "/predict", json={"X_test": ROW}, headers={"Connection": "close"}
        )
        assert r.json()["model_version"] == "1"
    assert dropscore("models", "promote", "2", env=env).returncode == 0
    time.sleep(1.0)
    for _ in range(40):
        r = requests.get(api.url + "/health", headers={"Connection": "close"}).json()
        pids.add(r["pid"])
        assert r["model"]["version"] == "2"
    assert len(pids) == 2, "both gunicorn workers answered"
    metrics = requests.get(api.url + "/metrics").text
    assert "dropscore_requests_total" in metrics
    assert api.stop() == 0
