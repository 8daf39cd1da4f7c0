"""Fixtures for the ingest tests: a real data folder, a real SQLite ledger, a real intake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.ledger import FileRecord, Ledger
from scoring.testing.waiting import wait_for as _wait_for
from tests.ingest._watching import MakeWatcher

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
    return Ledger.at(config.db_path)


@pytest.fixture
def intake(config: IngestConfig, ledger: Ledger) -> Intake:
    """Build an intake with no listener."""
    return Intake(config, ledger)


@pytest.fixture
def make_watcher(config: IngestConfig, ledger: Ledger) -> Iterator[MakeWatcher]:
    """Build and start watchers over the fixture's data folder; always stopped at teardown.

    ``observer`` is "native" or "polling"; other keywords change the config (``ready_marker``).
    """
    started: list[Watcher] = []

    def make(
        observer: str = "native",
        on_normalized: Callable[[FileRecord], None] | None = None,
        **changes: Any,
    ) -> Watcher:
        cfg = replace(config, poll=observer == "polling", **changes)
        watcher = Watcher(cfg, Intake(cfg, ledger, on_normalized=on_normalized))
        watcher.start()
        started.append(watcher)
        return watcher

    yield make
    for watcher in started:
        watcher.stop(timeout=10)
