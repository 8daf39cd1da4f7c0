"""Helpers for tests that run the real watcher (the ``make_watcher`` fixture is in conftest)."""

from __future__ import annotations

from collections.abc import Callable

from ingest.pipeline.watcher import Watcher
from ingest.state.ledger import FileRecord, Ledger

MakeWatcher = Callable[..., Watcher]
OBSERVERS = ["native", "polling"]


def terminal(ledger: Ledger) -> list[FileRecord]:
    """Return the drops ingest is done with."""
    return [r for r in ledger.list(limit=None) if r.terminal]
