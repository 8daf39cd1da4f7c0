"""Fixtures for the ingest tests: a real data folder, a real SQLite ledger, a real intake."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.config import IngestConfig
from ingest.intake import Intake
from ingest.layout import DataLayout
from ingest.ledger import Ledger
from tests._wait import wait_for as _wait_for

WaitFor = Callable[..., None]


@pytest.fixture
def wait_for() -> WaitFor:
    """Hand tests the polling helper, so none of them sleeps a fixed time."""
    return _wait_for


@pytest.fixture
def config(tmp_path: Path) -> IngestConfig:
    """Build a small-timing config over a fresh data folder."""
    cfg = IngestConfig(
        DataLayout(tmp_path / "data"),
        stable_seconds=0.3,
        rescan_seconds=1.0,
        max_file_mb=1.0,
        max_attempts=3,
    )
    cfg.make_dirs()
    return cfg


@pytest.fixture
def ledger(config: IngestConfig) -> Ledger:
    """Open the ledger in the fixture's state.db."""
    return Ledger(config.db_path)


@pytest.fixture
def intake(config: IngestConfig, ledger: Ledger) -> Intake:
    """Build an intake with no listener."""
    return Intake(config, ledger)
