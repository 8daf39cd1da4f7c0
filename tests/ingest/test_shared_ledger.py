"""Two replicas' intakes on one shared PostgreSQL ledger and one lake, each with its own folder.

What one machine got from its own disk it must get from the shared database instead: the lake
lock (``processing/.lake-<kind>.lock`` is per machine) and the start-up recovery's idea of which
``received`` drops are its own to finish.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

from sqlalchemy import text, update

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.lake.store import Lake
from ingest.pipeline.bucket import BucketClaims, BucketWatcher
from ingest.pipeline.intake import Intake
from ingest.pipeline.recovery import orphan_rows
from ingest.state.claims import lake_lock
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from ingest.state.ledger_schema import FILES
from ingest.state.ledger_table import presence_name
from ingest.state.records import DUPLICATE, NORMALIZED, QUARANTINED, RECEIVED, FileRecord
from scoring.ingest_options import ingest_config
from scoring.models.factory import open_model
from scoring.storage import bucket_watcher
from scoring.testing.checkout import SAMPLE
from tests._pg_sessions import end_lock_session
from tests._s3 import storage_settings
from tests.conftest import make_settings

PATIENCE = 60.0  # a loaded 2-core machine

# A lock's holder and a waiter trying for it: each has a session of its own (unnamed locks;
# a replica's presence lock names its holder).
_WAITING = text(
    "SELECT count(*) > 1 FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'dropscore:'"
)


def replica(tmp_path: Path, name: str, url: str) -> Intake:
    """An intake as one replica has it: its own data folder, the shared ledger and lake."""
    lake = tmp_path / "shared-lake"  # stands for the bucket's lake every replica writes
    config = IngestConfig(
        DataLayout(tmp_path / name),
        stable_seconds=0.3,
        max_attempts=3,
        lakes=lambda kind: Lake.local(lake / kind),
    )
    config.make_dirs()
    for kind in ("train", "score"):
        (lake / kind).mkdir(parents=True, exist_ok=True)
    return Intake(config, Ledger(StateDB(url), tmp_path / name))


def test_two_replicas_lake_writes_of_one_kind_take_turns(tmp_path: Path, pg_url: str, wait_for):
    a, b = replica(tmp_path, "a", pg_url), replica(tmp_path, "b", pg_url)
    drop = b.config.inbox("train") / "diabetes.csv"
    shutil.copyfile(SAMPLE, drop)
    taken: list[FileRecord] = []
    observer = StateDB(pg_url)

    def waiting() -> bool:
        with observer.read() as conn:
            return bool(conn.execute(_WAITING).scalar())

    with lake_lock(a.config, "train"):  # replica a is updating the training schema
        taking = threading.Thread(target=lambda: taken.append(b.take(drop, "train")))
        taking.start()
        wait_for(waiting, PATIENCE, 0.05, "b to wait for a's lake lock")
        assert taking.is_alive()
        [row] = b.ledger.list(kind="train")
        assert row.state == RECEIVED  # read, not yet written to the lake
    taking.join(PATIENCE)
    assert not taking.is_alive()
    assert taken[0].state == NORMALIZED, taken[0].error
    assert not waiting()


def claimed_by(intake: Intake, name: str) -> FileRecord:
    """Claim a drop the way ``take`` does, and stop there: its process is still reading it."""
    claimed = intake.config.processing / "score" / ("0" * 32) / name
    claimed.parent.mkdir(parents=True)
    shutil.copyfile(SAMPLE, claimed)
    body = claimed.read_bytes()
    return intake.ledger.receive(
        original_name=name,
        kind="score",
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        processing_path=claimed,
    )


def test_recovery_leaves_a_drop_another_replica_is_still_reading(tmp_path: Path, pg_url: str):
    a, b = replica(tmp_path, "a", pg_url), replica(tmp_path, "b", pg_url)
    record = claimed_by(a, "batch.csv")
    assert b.resume() == []  # b starts up: the drop is a's, its file on a's disk, not vanished
    assert b.ledger.get(record.id).state == RECEIVED
    [done] = a.resume()  # a restarted: its own drop, finished where its file is
    assert (done.id, done.state) == (record.id, NORMALIZED)


def test_a_dead_replicas_drop_is_recovered_once_its_claim_expired(tmp_path: Path, pg_url: str):
    a, b = replica(tmp_path, "a", pg_url), replica(tmp_path, "b", pg_url)
    record = claimed_by(a, "batch.csv")
    shutil.rmtree(tmp_path / "a")  # a's machine is gone, and its disk with it
    assert orphan_rows(b.ledger) == []  # not yet: a live read may take minutes
    assert [r.id for r in orphan_rows(b.ledger, expired_after=0.0)] == [record.id]


def test_recovery_leaves_a_live_replicas_drop_however_long_it_takes(tmp_path: Path, pg_url: str):
    a, b = replica(tmp_path, "a", pg_url), replica(tmp_path, "b", pg_url)
    a.resume()  # a started up: it holds its presence for its life
    record = claimed_by(a, "batch.csv")
    # Older than any expiry (a take waiting its turn for the lake lock), but a is alive.
    assert orphan_rows(b.ledger, expired_after=0.0) == []
    end_lock_session(StateDB(pg_url), presence_name(a.ledger.holder))  # a's process died
    assert [r.id for r in orphan_rows(b.ledger, expired_after=0.0)] == [record.id]


def test_a_row_no_replica_signed_waits_out_the_expiry(tmp_path: Path, pg_url: str):
    b = replica(tmp_path, "b", pg_url)
    record = b.ledger.receive(  # by a replica of the previous release, mid-take: it signed none
        original_name="old.csv",
        kind="score",
        size_bytes=3,
        sha256="0" * 64,
        processing_path=tmp_path / "b" / "processing" / "score" / ("1" * 32) / "old.csv",
    )
    with StateDB(pg_url).write() as conn:
        conn.execute(update(FILES).where(FILES.c.id == record.id).values(claimed_by=None))
    assert orphan_rows(b.ledger) == []  # not b's own: its file is on the other machine's disk
    assert [r.id for r in orphan_rows(b.ledger, expired_after=0.0)] == [record.id]


class BucketReplica:
    """A replica polling the session's bucket, with the shared ledger and claims in PostgreSQL."""

    def __init__(self, folder: Path, storage: dict, url: str) -> None:
        settings = make_settings(
            folder, storage=storage, state={"url": url}, ingest={"stable_seconds": 0.2}
        )
        self.model = open_model(settings)
        self.intake = Intake(ingest_config(settings), self.model.ledger)
        watcher = bucket_watcher(settings, [self.intake], StateDB(url))
        assert watcher is not None
        self.watcher: BucketWatcher = watcher


def test_a_drop_a_dead_replica_was_reading_is_taken_again_not_as_its_duplicate(
    tmp_path: Path, pg_url: str, s3, monkeypatch, wait_for
) -> None:
    storage = storage_settings(s3, monkeypatch, "stranded")
    dead = BucketReplica(tmp_path / "dead", storage, pg_url)
    alive = BucketReplica(tmp_path / "alive", storage, pg_url)
    alive.watcher.claims = BucketClaims(StateDB(pg_url), lease_seconds=1.0)
    body = b"x,y\n1,2\n2,3\n"
    bucket = dead.watcher.bucket
    bucket.client.put_object(
        Bucket=bucket.name, Key=dead.watcher.key("inbox/score/stranded.csv"), Body=body
    )
    [obj] = bucket.list(dead.watcher.key("inbox/score"))
    assert dead.watcher.claims.claim(
        obj.key, obj.etag, obj.size, dead.watcher.who, dead.model.ledger.holder
    )
    stranded = dead.model.ledger.receive(  # downloaded and received: then its machine died
        original_name="stranded.csv",
        kind="score",
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        processing_path=dead.intake.config.processing / "score" / ("0" * 32) / "stranded.csv",
    )
    [record] = wait_for(lambda: alive.watcher.poll(), PATIENCE, 0.1, "the drop taken over")
    assert (record.state, record.duplicate_of, record.rows) == (NORMALIZED, None, 2)
    left = alive.model.ledger.get(stranded.id)
    assert left is not None and left.state == QUARANTINED  # not received for ever
    assert "another replica took the drop again" in left.error["message"]


def test_a_takeover_gives_up_only_the_dead_holders_row_not_a_live_one_of_the_same_bytes(
    tmp_path: Path, pg_url: str, s3, monkeypatch, wait_for
) -> None:
    storage = storage_settings(s3, monkeypatch, "same-bytes")
    live = BucketReplica(tmp_path / "live", storage, pg_url)
    dead = BucketReplica(tmp_path / "dead", storage, pg_url)
    alive = BucketReplica(tmp_path / "alive", storage, pg_url)
    alive.watcher.claims = BucketClaims(StateDB(pg_url), lease_seconds=1.0)
    body = b"x,y\n1,2\n2,3\n"

    def received(replica: BucketReplica, claim: str) -> FileRecord:
        """Download and receive the drop, as a replica's take does, and stop there."""
        return replica.model.ledger.receive(
            original_name="batch.csv",
            kind="score",
            size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            processing_path=replica.intake.config.processing / "score" / claim / "batch.csv",
        )

    # The same name and bytes dropped in another folder, being read by a live replica first.
    reading = received(live, "1" * 32)
    bucket = dead.watcher.bucket
    bucket.client.put_object(
        Bucket=bucket.name, Key=dead.watcher.key("inbox/score/batch.csv"), Body=body
    )
    [obj] = bucket.list(dead.watcher.key("inbox/score"))
    assert dead.watcher.claims.claim(
        obj.key, obj.etag, obj.size, dead.watcher.who, dead.model.ledger.holder
    )
    stranded = received(dead, "2" * 32)  # then its machine died
    assert (stranded.state, stranded.duplicate_of) == (DUPLICATE, reading.id)
    [record] = wait_for(lambda: alive.watcher.poll(), PATIENCE, 0.1, "the drop taken over")
    assert (record.state, record.duplicate_of) == (DUPLICATE, reading.id)  # of the live take
    still = alive.model.ledger.get(reading.id)
    assert still is not None and still.state == RECEIVED  # the live replica's take goes on
