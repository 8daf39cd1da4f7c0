"""Two real `dropscore serve` replicas sharing one PostgreSQL state database: one leads the
schedules, the other stands by; a promotion on one is served by the other; kill -9 of the leader
and the standby leads, its sweep running.

Each replica has its own data folder. The model versions' files are still on local disk in this
release's state half (the object store is ``[storage] url``'s), so the second replica's
``models/`` folder is a link to the first's: the one thing they share besides the database.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from ingest.state.db import masked
from scoring.models.factory import open_models
from scoring.settings import load_settings

from .conftest import ROOT, free_port, register_trained, wait_for
from .test_e2e_serve import ROW, Server, cli_env

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pw-never-shown"
PATIENCE = 120.0  # a loaded 2-core machine; takeover is designed for 30 s (5 s retries)


def health(server: Server) -> dict:
    """Read a replica's /health."""
    return requests.get(server.url + "/health", timeout=10).json()


def role(server: Server) -> str | None:
    """Say whether a replica leads the schedules, or None while it cannot answer."""
    try:
        return health(server)["scheduler"]["role"]
    except (requests.ConnectionError, requests.Timeout, KeyError):
        return None


def served_version(server: Server) -> str:
    """Ask a replica which version answers a prediction."""
    answer = requests.post(server.url + "/predict", json={"X_test": ROW}, timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"])


@pytest.fixture
def pg_url(pg_url: str) -> str:
    """The test's database, reached with a password (trust auth ignores it; it must never show)."""
    return pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str):
    """Start replicas on their own data folders and the test's database; kill what is left."""
    started: list[Server] = []

    def start(name: str) -> Server:
        port, data = free_port(), tmp_path / name
        env = cli_env(
            data,
            port,
            DROPSCORE__STATE__URL=pg_url,
            DROPSCORE__SCORING__SWEEP_SECONDS="1",
        )
        if started:  # the versions' files: shared with the first replica until the object store
            data.mkdir()
            (data / "models").symlink_to(tmp_path / started[0].name / "models")
        server = Server(["serve"], env, port, tmp_path / f"{name}.log")
        server.name = name  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_two_replicas_one_leader_a_promotion_everywhere_and_a_takeover(
    replicas, tmp_path: Path, pg_url: str, diabetes
) -> None:
    first = replicas("a")
    assert first.ready(PATIENCE)["model_version"] == "1"  # trained at its first start
    second = replicas("b")
    assert second.ready(PATIENCE)["model_version"] == "1"  # the same champion, not retrained
    assert (role(first), role(second)) == ("leader", "standby")
    assert health(second)["scheduler"]["jobs"] == []  # a standby runs nothing
    assert health(second)["state"] == {"backend": "postgresql", "url": masked(pg_url)}
    assert PASSWORD not in str(health(first)) and ":***@" in masked(pg_url)

    # a second version, registered by another process, promoted through the first replica
    settings = load_settings(
        ROOT / "settings.toml",
        env={"DROPSCORE__PATHS__DATA_DIR": str(tmp_path / "a"), "DROPSCORE__STATE__URL": pg_url},
    )
    model = open_models(settings).default
    version, _ = register_trained(model.settings, model.registry, diabetes, promote=False)
    assert version == 2 and served_version(second) == "1"
    promoted = requests.post(first.url + f"/models/{version}/promote", timeout=10)
    assert promoted.status_code == 200, promoted.text
    wait_for(lambda: served_version(second) == "2", PATIENCE, interval=0.02, what="b to serve 2")

    # kill -9 of the leader: the standby takes the schedules over, and its sweep runs
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=60)
    killed = time.monotonic()
    wait_for(lambda: role(second) == "leader", PATIENCE, interval=0.2, what="b to lead")
    print(f"takeover after kill -9: {time.monotonic() - killed:.1f} s")  # shown with -s
    wait_for(
        lambda: health(second)["scheduler"]["by_job"]["score_sweep"]["executed"] >= 1,
        PATIENCE,
        interval=0.2,
        what="the sweep to run on b",
    )
    scheduler = health(second)["scheduler"]
    assert scheduler["alive"] and {job["id"] for job in scheduler["jobs"]} == {
        "retrain",
        "score_sweep",
        "canary_check",
    }
    assert served_version(second) == "2"
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert PASSWORD not in logs and "postgresql+psycopg://postgres:***@" in logs
