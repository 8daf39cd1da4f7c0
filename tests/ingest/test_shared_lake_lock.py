"""The lake lock replicas share through PostgreSQL: lost mid-write, and waited for by many.

An advisory lock lives as long as its connection, so a lake write that lost it must not publish
(another replica may be writing the kind's lake meanwhile); and a backlog of intake threads
waiting for it must not each park a server connection (max_connections is the API's too).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from sqlalchemy import text

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.lake.store import Lake
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from ingest.state.locks import AdvisoryLock, AdvisoryLocks
from ingest.state.records import NORMALIZED
from scoring.testing.checkout import SAMPLE
from tests._pg_sessions import end_lock_session

PATIENCE = 60.0  # a loaded 2-core machine

_LOCK_SESSIONS = text(  # the sessions of unnamed locks (a replica's presence names itself)
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'dropscore:'"
)


class LosesTheFirstLock(AdvisoryLocks):
    """The shared locks, whose first lock taken loses its session right after (a network cut)."""

    def __init__(self, db: StateDB) -> None:
        super().__init__(db)
        self.lost = 0

    def acquire(self, name: str, holder: str | None = None) -> AdvisoryLock:
        """Take the lock; the first time, end its session on the server before handing it on."""
        lock = super().acquire(name, holder)
        if not self.lost:
            self.lost += 1
            end_lock_session(self.db, name)
        return lock


def test_a_lake_write_that_lost_the_lock_publishes_nothing_and_is_tried_again(
    tmp_path: Path, pg_url: str
) -> None:
    db = StateDB(pg_url)
    locks = LosesTheFirstLock(db)
    lake = tmp_path / "shared-lake"
    config = IngestConfig(
        DataLayout(tmp_path / "a"),
        stable_seconds=0.3,
        max_attempts=3,
        lakes=lambda kind: Lake.local(lake / kind),
        locks=locks,
    )
    config.make_dirs()
    (lake / "score").mkdir(parents=True)
    intake = Intake(config, Ledger(db, tmp_path / "a"))
    drop = config.inbox("score") / "batch.csv"
    shutil.copyfile(SAMPLE, drop)

    record = intake.take(drop, "score")

    assert locks.lost == 1
    assert record.state == NORMALIZED, record.error
    assert record.attempts == 2  # the write under the lost lock was abandoned, not published
    assert [p.name for p in (lake / "score").iterdir()] == [f"{record.sha256}.parquet"]


def test_threads_waiting_for_a_held_lock_do_not_each_hold_a_connection(
    pg_url: str, wait_for
) -> None:
    db = StateDB(pg_url)
    other_replica = AdvisoryLocks(db).acquire(".lake-score.lock")
    backlog = AdvisoryLocks(db)  # one replica's intake, many drops waiting for the lake
    got: list[str] = []

    def take() -> None:
        with backlog.acquire(".lake-score.lock") as lock:
            got.append(lock.name)

    threads = [threading.Thread(target=take) for _ in range(5)]
    for thread in threads:
        thread.start()

    def sessions() -> int:
        with db.read() as conn:
            return int(conn.execute(_LOCK_SESSIONS).scalar() or 0)

    # The holder plus one waiter; before, each thread parked a session of its own (6). Watch a
    # while: waiters connect within milliseconds, so more than two would show by then.
    wait_for(lambda: sessions() >= 2, PATIENCE, 0.05, "a waiter to try for the lock")
    seen = [sessions()]
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and max(seen) <= 2:
        time.sleep(0.05)
        seen.append(sessions())
    assert max(seen) == 2, seen

    other_replica.release()
    for thread in threads:
        thread.join(PATIENCE)
    assert not any(t.is_alive() for t in threads)
    assert len(got) == 5  # every waiter had the lock in turn
    assert sessions() == 0
