"""Real ``dropscore`` processes on a temporary data folder: their environment, start and stop.

Used by the end-to-end tests (which assert on what the processes do) and by ``bench/`` (which
measures them). A process runs ``python -m scoring`` with this interpreter, with settings from
the checkout's ``settings.toml`` and ``DROPSCORE__…`` variables pointing at its own data folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scoring.testing.checkout import SAMPLE, SETTINGS_FILE
from scoring.testing.waiting import wait_for

Process = subprocess.Popen[bytes]


def process_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """Return this environment without DROPSCORE variables, plus a fast-ingesting service's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(SETTINGS_FILE),
        DROPSCORE__PATHS__DATA_DIR=str(data_dir),
        DROPSCORE__SERVER__PORT=str(port),
        DROPSCORE__INGEST__STABLE_SECONDS="0.3",
        DROPSCORE__INGEST__RESCAN_SECONDS="1.0",
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
        DROPSCORE__TRAINING__PROMOTE="always",
    )
    env.update(extra)
    return env


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    """Run ``dropscore ARGS`` and stop it with SIGTERM (kill after 30 s) on the way out."""
    with started([sys.executable, "-m", "scoring", *args], env, log) as proc:
        yield proc


@contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    """Run ``ARGS`` with its output in ``log``; SIGTERM it (kill after 30 s) on the way out."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(url: str, proc: Process, timeout: float = 90) -> None:
    """Wait until ``GET /ready`` answers 200; fail at once if the process exits first."""
    import requests

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            return requests.get(url + "/ready", timeout=5).status_code == 200
        except requests.RequestException:  # refused while starting, or slow under load
            return False

    wait_for(ready, timeout, 0.1, f"{url}/ready")


@contextmanager
def contextmanager_for(mode: str, env: dict[str, str], folder: Path) -> Iterator[list[Process]]:
    """Start serve, or api --workers 2 after a worker has trained the first model."""
    if mode == "serve":
        with running(["serve"], env, folder / "serve.log") as proc:
            yield [proc]
        return
    with running(["worker"], env, folder / "worker.log") as worker:
        _wait_for_champion(env, worker)
        with running(["api", "--workers", "2"], env, folder / "api.log") as api:
            yield [api, worker]


def _wait_for_champion(env: dict[str, str], worker: Process) -> None:
    models = Path(env["DROPSCORE__PATHS__DATA_DIR"]) / "models" / "1"

    def trained() -> bool:
        if worker.poll() is not None:
            raise RuntimeError("the worker did not train a first model")
        return models.is_dir()

    wait_for(trained, 90, 0.1, "the worker's first model")
