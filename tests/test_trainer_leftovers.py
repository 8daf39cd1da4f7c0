"""A `dropscore serve` killed with SIGKILL during a retrain leaves no trainer files behind.

Real serve processes on free ports, a real trainer child (a forest slow enough to be caught
fitting), real signals. Each server's TMPDIR is a folder of the test's own, so what a trainer
would leave in the system temp folder is seen there, apart from other processes' files.
"""

from __future__ import annotations

import psutil
import pytest

from .conftest import free_port, wait_for
from .test_e2e_serve import Server, cli_env

pytestmark = pytest.mark.slow

SLOW_FIT = {  # a first training that takes seconds, so the kill lands while it runs
    "DROPSCORE__MODEL__ESTIMATOR": "random_forest",
    "DROPSCORE__MODEL__PARAMS": "{ n_estimators = 5000 }",
}


def start(tmp_path, name: str, **extra: str) -> Server:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    port = free_port()
    env = cli_env(tmp_path / "data", port, TMPDIR=str(temp), **extra)
    return Server(["serve"], env, port, tmp_path / f"{name}.log")


def trainer_of(server: Server) -> psutil.Process:
    """Wait for the serve process's trainer child and return it."""

    def find() -> psutil.Process | None:
        assert server.proc.poll() is None, server.log.read_text()
        for child in psutil.Process(server.proc.pid).children():
            try:
                if "scoring.lifecycle.trainer" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    return wait_for(find, timeout=180, interval=0.05, what="the first training's trainer")


def leftovers(tmp_path) -> list[str]:
    """Every trainer file in the server's temp folder and in the data folder's scratch."""
    temp = [p.name for p in (tmp_path / "tmp").iterdir() if "trainer" in p.name]
    scratch = tmp_path / "data" / ".trainer"
    kept = [f".trainer/{p.name}" for p in scratch.iterdir()] if scratch.is_dir() else []
    return temp + kept


def test_a_trainer_whose_server_is_killed_removes_its_files(tmp_path):
    server = start(tmp_path, "serve", **SLOW_FIT)
    try:
        trainer = trainer_of(server)
        server.proc.kill()  # SIGKILL: the server gets no chance to clean anything
        server.proc.wait(timeout=30)
        assert trainer.is_running(), "the training ended before the kill: make it slower"
        trainer.wait(timeout=60)  # it notices its server is gone and ends
    finally:
        server.stop()
    assert leftovers(tmp_path) == []


def test_files_of_a_trainer_killed_with_its_server_are_removed_by_the_next_trainer(tmp_path):
    server = start(tmp_path, "first", **SLOW_FIT)
    try:
        trainer = trainer_of(server)
        trainer.suspend()  # stopped, it cannot clean up: as if killed in the same instant
        server.proc.kill()
        server.proc.wait(timeout=30)
        trainer.kill()
        trainer.wait(timeout=30)
    finally:
        server.stop()
    assert [p.name for p in (tmp_path / "tmp").iterdir() if "trainer" in p.name] == []
    assert leftovers(tmp_path), "a trainer killed with its server leaves its folder"

    again = start(tmp_path, "second")  # a quick estimator: it trains the first model at start
    try:
        assert again.ready(timeout=180)["models"] == {"default": "1"}
    finally:
        again.stop()
    assert leftovers(tmp_path) == []
