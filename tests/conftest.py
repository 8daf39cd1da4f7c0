"""Shared fixtures: settings on a temporary data folder → registry → trained model → app."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hypothesis
import pandas as pd
import pytest

from ingest.state.db import StateDB
from scoring.settings import Settings, load_settings
from scoring.testing.checkout import ROOT, SAMPLE
from scoring.testing.ports import free_port as free_port  # re-exported: tests import it from here
from scoring.testing.shared import session_folder
from scoring.testing.waiting import wait_for as wait_for  # re-exported: tests import it from here

from ._dask import dask_address as dask_address  # the session's Dask cluster, on first use


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings isolated from the environment and the shipped file, on tmp_path/data."""
    overrides: dict[str, dict[str, Any]] = {
        "paths": {"data_dir": str(tmp_path / "data")},
        "training": {"bootstrap_data": ""},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(None, env={}, overrides=overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


@pytest.fixture
def registry(settings: Settings):
    from scoring.lifecycle.registry import Registry

    return Registry(settings.models_dir, StateDB.at(settings.db_path))


def register_trained(settings: Settings, registry, frame: pd.DataFrame, promote: bool = True):
    """Train on a frame (no lake needed) and register it the way a retrain does."""
    from scoring.lifecycle.training import train

    result = train(frame, settings.model)
    card = {
        "estimator": settings.model.estimator,
        "metrics": result.metrics,
        "schema": result.schema.to_dict(),
    }
    version = registry.register(result.pipeline, card)
    if promote:
        registry.promote(version)
    return version, result


@pytest.fixture
def trained(settings: Settings, registry, diabetes: pd.DataFrame) -> int:
    version, _ = register_trained(settings, registry, diabetes)
    return version


@pytest.fixture
def app(settings: Settings, registry):
    from scoring.api.app import create_app

    return create_app(settings, registry=registry)


@pytest.fixture
def client(app):
    return app.test_client()


def assert_error(response, status: int, code: str, *fragments: str) -> dict:
    """Check the one error shape of DESIGN.md; return the error object for more checks."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    text = error["message"] + " " + str(error["details"])
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert "Traceback" not in text
    return error


def pytest_configure(config) -> None:
    """Give an xdist worker the environment of a plain run, and Hypothesis no timing checks.

    pytest-xdist sets ``COLUMNS=80`` and ``LINES=24`` in each worker, so commands that wrap
    their listings to the terminal (``dropscore runs``) would wrap where a piped run does not.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
    # Hypothesis times its own input generation and fails a test whose inputs came slowly; on a
    # shared 2-core machine under load that measures the machine, not the code (a float strategy
    # took 1.3 s for 3 inputs at load 30). Examples and shrinking are unchanged.
    hypothesis.settings.register_profile(
        "shared-machine",
        suppress_health_check=[hypothesis.HealthCheck.too_slow],
        deadline=None,
    )
    hypothesis.settings.load_profile("shared-machine")


def pytest_terminal_summary(terminalreporter) -> None:
    """Say where the dashboard's browser tests left their screenshots."""
    shots = ROOT / "build" / "screenshots"
    if shots.is_dir() and any(shots.glob("*.png")):
        terminalreporter.write_line(f"dashboard screenshots: {shots}")


@pytest.fixture
def schedules():
    """Start real Schedules (APScheduler on the data folder's state.db); always stop them."""
    from ingest.state.ledger import Ledger
    from schedules.scheduler import Schedule

    started: list[Schedule] = []

    def start(settings: Settings) -> Schedule:
        # As in runtime.background(), each model's ledger opens its state.db (in WAL mode)
        # before the scheduler starts. A scheduler first on a fresh state.db leaves it in
        # rollback-journal mode, where a job's first ledger access (PRAGMA journal_mode = WAL)
        # fails at once with "database is locked" whenever the scheduler is writing its job row.
        for view in settings.each_model():
            Ledger(StateDB.at(view.db_path)).initialize()
        Ledger(StateDB.at(settings.shared_db_path)).initialize()
        schedule = Schedule(settings)
        started.append(schedule)
        schedule.start()
        return schedule

    yield start
    for schedule in started:
        schedule.stop(wait=True)


@pytest.fixture(scope="session")
def shared_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Name the folder where the session's processes share its servers (scoring.testing.shared)."""
    return session_folder(tmp_path_factory.getbasetemp(), os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.fixture(scope="session")
def postgres(shared_session: Path):
    """Use the session's one real PostgreSQL server (tests/_postgres.py), shared by its workers."""
    from tests._postgres import shared_postgres

    yield from shared_postgres(shared_session)


@pytest.fixture
def pg_url(postgres) -> Any:
    """Make a fresh database on the session's server for one test; drop it afterwards."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_state(request, tmp_path: Path):
    """Open state databases of one backend (the test runs once per backend).

    ``open_state(name)`` gives a new ``StateDB`` each call, as another process would open it:
    the SQLite file ``tmp_path/<name>/state.db`` (a folder each, as each model has), or the
    schema ``<name>`` of the test's PostgreSQL database (None: the default schema).
    """
    if request.param == "sqlite":
        return lambda name=None: StateDB.at(tmp_path / (name or "shared") / "state.db")
    url = request.getfixturevalue("pg_url")
    return lambda name=None: StateDB(url, schema=name)


@pytest.fixture(scope="session")
def s3(shared_session: Path):
    """The session's S3 endpoint (one moto_server, one fresh bucket): see tests/_s3.py."""
    from tests._s3 import s3_session

    yield from s3_session(shared_session)
