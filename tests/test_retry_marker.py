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

from ingest.ledger import Ledger
from ingest.watcher import Watcher
from scoring.api.app import create_app
from scoring.ingest_options import ingest_config
from scoring.service.runtime import open_intake
from tests._wait import wait_for
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
    watcher = Watcher(ingest_config(settings), intake)
    watcher.start()
    try:
        client = create_app(settings, ledger=ledger).test_client()
        yield inbox, ledger, rejected.id, watcher, client
    finally:
        watcher.stop(timeout=30)


def test_a_retried_drop_gets_its_ready_marker_and_is_taken(marked: Any) -> None:
    inbox, ledger, file_id, _watcher, client = marked
    answer = client.post(f"/files/{file_id}/retry")
    assert answer.status_code == 202, answer.get_data(as_text=True)

    def copied() -> Any:
        record = ledger.get(file_id)
        again = record.retried_as and ledger.get(record.retried_as)
        return again and again.state in TERMINAL and again

    again = wait_for(copied, timeout=60, what="the watcher to take the retry's copy")
    assert again.state == "quarantined" and again.original_name == "broken.csv"
    assert ledger.get(file_id).state == "retried"
    assert wait_for(lambda: os.listdir(inbox) == [], timeout=30, what="an empty inbox")
    stored = ledger.resolve(again.quarantine_path)
    assert stored is not None and stored.read_bytes() == BROKEN
    assert Path(f"{stored}.done").is_file()  # the marker followed its file
    # the drop was taken, so it cannot be retried a second time (and says so: a 409)
    assert client.post(f"/files/{file_id}/retry").status_code == 409
