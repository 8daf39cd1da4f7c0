"""A retried drop with a ready marker on: the retry writes the copy's marker, so it is taken.

The watcher takes a file only once ``<name><marker>`` exists. A retry that put the copy in the
inbox without its marker left the drop ``retried`` and the copy there for good. Here a real
watcher with ``ready_marker = ".done"`` takes the retry's copy to a terminal state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline.watcher import Watcher
from ingest.state.ledger import Ledger
from scoring.api.app import create_app
from scoring.ingest_options import ingest_config
from scoring.service.runtime import open_intake
from scoring.testing.waiting import wait_for
from tests.conftest import make_settings

BROKEN = b"a,b\n1,2,3,4\n5\n"  # ragged rows: quarantined again when retried
TERMINAL = {"normalized", "scored", "quarantined", "duplicate"}


@pytest.fixture
def marked(tmp_path: Path) -> Iterator[tuple[Path, Ledger, int, Watcher, Any]]:
    """A drop quarantined under a ready marker, a running watcher and the app's test client."""
    settings = make_settings(
        tmp_path, ingest={"ready_marker": ".done", "stable_seconds": 0.1, "rescan_seconds": 0.5}
    )
    _config, ledger, intake = open_intake(settings)
    inbox = settings.data_dir / "inbox" / "score"
    (inbox / "broken.csv").write_bytes(BROKEN)
    rejected = intake.take(inbox / "broken.csv", "score")
    assert rejected.state == "quarantined"
    watcher = Watcher(ingest_config(settings), intake)  # each test starts it
    try:
        client = create_app(settings, ledger=ledger).test_client()
        yield inbox, ledger, rejected.id, watcher, client
    finally:
        if watcher.status()["threads"]:
            watcher.stop(timeout=30)


def _taken(ledger: Ledger, file_id: int) -> Any:
    """Wait until the drop the retry's copy became reached a terminal state; return it."""

    def copied() -> Any:
        record = ledger.get(file_id)
        again = record.retried_as and ledger.get(record.retried_as)
        return again and again.state in TERMINAL and again

    return wait_for(copied, timeout=60, what="the watcher to take the retry's copy")


def test_a_retried_drop_gets_its_ready_marker_and_is_taken(marked: Any) -> None:
    inbox, ledger, file_id, watcher, client = marked
    watcher.start()
    answer = client.post(f"/files/{file_id}/retry")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    again = _taken(ledger, file_id)
    assert again.state == "quarantined" and again.original_name == "broken.csv"
    assert ledger.get(file_id).state == "retried"
    assert wait_for(lambda: os.listdir(inbox) == [], timeout=30, what="an empty inbox")
    stored = ledger.resolve(again.quarantine_path)
    assert stored is not None and stored.read_bytes() == BROKEN
    assert Path(f"{stored}.done").is_file()  # the marker followed its file
    # the drop was taken, so it cannot be retried a second time (and says so: a 409)
    assert client.post(f"/files/{file_id}/retry").status_code == 409


def test_retrying_again_announces_a_copy_left_without_its_marker(marked: Any) -> None:
    """An older release (or a crash after the copy landed) left the copy with no marker."""
    inbox, ledger, file_id, watcher, client = marked
    first = client.post(f"/files/{file_id}/retry")
    assert first.status_code == 202, first.get_data(as_text=True)
    queued = first.get_json()["queued_as"]
    (inbox / f"{queued}.done").unlink()  # as the release before the fix left it
    watcher.start()
    scans = watcher.status()["scans"]
    wait_for(lambda: watcher.status()["scans"] >= scans + 3, what="three rescans")
    assert sorted(os.listdir(inbox)) == [queued]  # never taken without its marker
    second = client.post(f"/files/{file_id}/retry")
    assert second.status_code == 202, second.get_data(as_text=True)
    assert second.get_json()["queued_as"] == queued  # the same copy, not a second one
    again = _taken(ledger, file_id)
    assert again.state == "quarantined"
    assert wait_for(lambda: os.listdir(inbox) == [], timeout=30, what="an empty inbox")
    assert len(ledger.list(limit=None)) == 2  # the drop and its one retry
