"""Issue 18 (4): our own write failing (a full disk) is not the file's fault and loses nothing.

A real watcher runs in a child process whose ``RLIMIT_FSIZE`` stands in for a full disk: Python
ignores SIGXFSZ, so the lake write past the limit raises ``OSError(EFBIG)`` as ENOSPC would.
The drop must wait in processing/ with a ledger row saying why, never be quarantined, and be
taken on a rescan once the child raises its limit again (its hard limit stays unlimited).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.lake.store import lake_files
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from scoring.testing.waiting import wait_for

CHILD = textwrap.dedent(
    """
    import logging, resource, sys, time
    from pathlib import Path

    root, limit = Path(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    from ingest.base.config import IngestConfig
    from ingest.pipeline.intake import Intake
    from ingest.base.layout import DataLayout
    from ingest.state.db import StateDB
    from ingest.state.ledger import Ledger
    from ingest.pipeline.watcher import Watcher

    config = IngestConfig(DataLayout(root), stable_seconds=0.2, rescan_seconds=0.5,
                          max_file_mb=64)
    watcher = Watcher(config, Intake(config, Ledger(StateDB.at(config.db_path))))
    watcher.start()
    print("started", flush=True)
    release, stop = root / "room-again", root / "stop"
    while not release.exists():
        time.sleep(0.05)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("room again", flush=True)
    while not stop.exists():
        time.sleep(0.05)
    watcher.stop(timeout=30)
    """
)


@pytest.mark.slow
def test_a_full_disk_leaves_the_drop_waiting_and_a_rescan_takes_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "inbox" / "train").mkdir(parents=True)
    rows = "".join(f"{i},{i * 0.37:.6f},{(i * 7919) % 1000 / 3:.6f}\n" for i in range(150_000))
    staging = tmp_path / "big.csv"
    staging.write_text("id,x,target\n" + rows)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(1 << 20)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        staging.rename(root / "inbox" / "train" / "big.csv")
        ledger = Ledger(StateDB.at(root / "state.db"))

        def waiting():  # type: ignore[no-untyped-def]
            rows = ledger.list(limit=None)
            return rows and rows[0].error and rows[0]

        record = wait_for(waiting, timeout=120, what="the drop to wait for room")
        assert record.state == "received"
        assert record.error["code"] == "disk_full"
        assert "Nothing is wrong with the file" in record.error["message"]
        # Each rescan tries again and gives the attempt back: more rescans than max_attempts
        # (5) leave it waiting, never quarantined as retries exhausted.
        seen: set[str] = set()

        def retried_often() -> bool:
            seen.add(ledger.get(record.id).updated_at)
            return len(seen) > 7

        wait_for(retried_often, timeout=120, interval=0.02, what="retries on rescans")
        still = ledger.get(record.id)
        assert still.state == "received" and still.attempts <= 1
        assert list((root / "quarantine").iterdir()) == []
        assert [p.name for p in (root / "processing" / "train").rglob("*.csv")] == ["big.csv"]
        assert lake_files(root / "lake" / "train") == []  # nothing published (a retry may be
        # writing its temporary right now)

        (root / "room-again").touch()
        assert child.stdout.readline().strip() == "room again"
        done = wait_for(
            lambda: ledger.get(record.id).state == "normalized" and ledger.get(record.id),
            timeout=120,
            what="a rescan to take the waiting drop",
        )
        assert done.error is None and done.rows == 150_000
        assert list((root / "quarantine").iterdir()) == []
    finally:
        (root / "stop").touch()
        try:
            _, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
    assert "disk full" in err, err[-2000:]
